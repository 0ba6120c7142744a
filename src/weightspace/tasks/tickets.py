"""Winning tickets from the initialisation: predict the sparse mask pruning would find (paper §4).

A conditional VAE of NF-Layers (:class:`~weightspace.models.MaskVAE`) learns p(mask | init)
from (init, IMP mask) pairs of a ticket set (:mod:`weightspace.data.tickets`). Its encoder
q(z | init, mask) and decoder p(mask | init, z) are NF-Layer stacks (``"np"`` with a sinusoidal
IO encoding, ``"hnp"``, or ``"pt"``: pointwise layers only, the paper's strongest baseline);
the loss is the ELBO (:func:`~weightspace.models.ticket_vae.mask_elbo`). For a new init, z is
drawn from the prior, the logits decoded, and each weight tensor's share of the ``1 - sparsity``
budget filled with its top logits, or drawn (``decoding``).

Validation selects on the IoU of predicted and IMP masks. The test score trains every held-out
init with its predicted mask, with the ticket set's own recipe and each network's own data order
(:func:`~weightspace.data.tickets.train_masked`), exactly as its IMP retrain did, and with the
mask that keeps the largest initial weights (``magnitude``, a rule with nothing learned)::

    RUN/metrics.json        mask / dense / imp / random / magnitude test accuracy (mean, std),
                            iou_with_imp, gap_closed, per-layer kept share, first-layer
                            use (neurons without inputs, inputs used), n_test, times
    RUN/accuracy.png        the five accuracies, mean ± std over the held-out inits
    RUN/layer_sparsity.png  kept share of each weight tensor: predicted, IMP, random, magnitude
    RUN/input_usage.png     kept share of W1 per input pixel (when the inputs form a square image)
    RUN/tickets.csv         one row per held-out init

:func:`predict_mask_file` (``weightspace tickets predict``) gives a user's own init its mask.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from weightspace import viz
from weightspace.data.tickets import (
    TICKET_FILE,
    TicketSet,
    check_mask,
    check_sparsity,
    load_tickets,
    random_mask,
    train_masked,
)
from weightspace.io import write_safetensors
from weightspace.models.nfn import IO_ENCODINGS
from weightspace.models.ticket_vae import (
    MaskVAE,
    allocated_top_k,
    budgeted_mask,
    layer_budgets,
    mask_elbo,
    mask_iou,
    sampled_top_k,
    top_k_mask,
)
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.tasks import base, runner
from weightspace.tasks.base import Items, Task, TaskConfig, option
from weightspace.train.loop import predict, resolve_device, split_batch

__all__ = ["TICKET_MODELS", "TicketTrainConfig", "Tickets", "predict_mask_file"]
__all__ += ["run_tickets"]

TICKET_MODELS: tuple[str, ...] = ("np", "hnp", "pt")
#: The largest mask model :meth:`Tickets.build` makes (parameters).
MAX_PARAMETERS = 50_000_000
#: How logits become a mask: ``"expected"`` splits the kept weights over tensors as the model
#: expects (:func:`~weightspace.models.ticket_vae.allocated_top_k`), ``"global"`` ranks all
#: logits together (:func:`~weightspace.models.ticket_vae.top_k_mask`).
ALLOCATIONS: tuple[str, ...] = ("expected", "global")
#: How logits become a mask within the budgets: the top logits, or a Gumbel-top-k draw.
DECODINGS: tuple[str, ...] = ("top", "sample")
#: ``--io-encoding``: the library's NP IO encodings, or ``auto`` (sinusoidal under NP, none otherwise).
TICKET_IO_ENCODINGS: tuple[str, ...] = ("auto", *IO_ENCODINGS)
#: The accuracies a run reports, in the order of ``accuracy.png``.
KINDS: tuple[str, ...] = ("dense", "imp", "random", "magnitude", "mask")
KIND_NAMES = {
    "dense": "dense",
    "imp": "IMP",
    "random": "random mask",
    "magnitude": "top-|init| per layer",
    "mask": "predicted mask",
}


# ------------------------------------------------------------------ config
@dataclass
class TicketTrainConfig(TaskConfig):
    """One winning-ticket run (the training fields are :class:`TaskConfig`'s).

    ``tickets``: a folder written by ``weightspace tickets generate``; ``model``: one of
    :data:`TICKET_MODELS`; ``out``: the run folder. ``hidden_channels``: the NF-Layers of the
    encoder and of the decoder before their output layer; ``latent_channels``: channels of z;
    ``kl_weight``: the KL term's weight in the ELBO, reached linearly over ``kl_warmup`` epochs;
    ``n_test`` / ``n_val`` / ``split_seed``: the held-out inits (the paper's 50) and the
    validation inits, drawn by a seeded permutation. ``magnitude``: feed the mask model ``|init|``
    beside the init (:class:`~weightspace.models.MaskVAE`). ``decoding``: fill each weight tensor's
    budget with its top logits (``"top"``), or with a seeded draw from the model's probabilities
    (``"sample"``: :func:`~weightspace.models.ticket_vae.sampled_top_k`). ``io_encoding``: how NP
    stacks tell input and output neurons apart: ``"sinusoidal"`` (the default under NP), or
    ``"learned"``, one learned vector per input pixel and per output class, which can learn *where*
    the kept weights lie (RESULTS.md: Fashion-MNIST); PT and HNP take none.
    """

    models = TICKET_MODELS
    nfn_models = TICKET_MODELS
    added_fields = TaskConfig.added_fields + ("magnitude", "decoding", "io_encoding")

    tickets: str
    model: str
    out: str
    epochs: int = option(15, "passes over the training pairs", kw_only=True, type=base.positive_int)
    batch_size: int = option(8, "pairs per step", kw_only=True, type=base.positive_int)
    hidden_channels: tuple[int, ...] = option(
        (8, 8, 8), "NF-Layer channels before each stack's output layer", type=base.int_tuple
    )
    latent_channels: int = option(5, "channels of the latent z", type=base.positive_int)
    kl_weight: float = option(1.0, "weight of the KL term of the ELBO", type=float)
    kl_warmup: int = option(
        5, "epochs over which the KL weight rises linearly to kl_weight", type=base.nonnegative_int
    )
    n_test: int = option(50, "held-out inits (test split)", type=base.positive_int)
    n_val: int = option(25, "validation inits", type=base.positive_int)
    split_seed: int = option(0, "seed of the train/val/test split", type=int)
    allocation: str = option(
        "expected",
        "logits → mask: per-tensor budgets the model expects, or one global top-k",
        choices=ALLOCATIONS,
    )
    magnitude: bool = option(
        False, "also feed the mask model |init| (standardised) as a second init channel"
    )
    decoding: str = option(
        "top",
        "fill each tensor's budget with its top logits, or draw it (Gumbel-top-k, seeded by --seed)",
        choices=DECODINGS,
    )
    io_encoding: str = option(
        "auto",
        "NP stacks' IO encoding: auto (sinusoidal under np, none otherwise), sinusoidal or learned",
        choices=TICKET_IO_ENCODINGS,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        w = self.kl_weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < math.inf:
            self.refuse("kl_weight", "a finite number >= 0")
        if self.decoding == "sample" and self.allocation != "expected":
            self.refuse(
                "decoding", "'top' with allocation 'global' (a draw fills per-tensor budgets)"
            )
        if self.io_encoding != "auto" and self.model != "np":
            self.refuse("io_encoding", f"'auto' for model {self.model!r} (only NP layers take one)")
        for name in ("latent_channels", "n_test", "n_val"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                self.refuse(name, "a positive int")


# ------------------------------------------------------------------ metrics
def _density(masks: WeightSpaceFeatures) -> list[float]:
    """Kept share of each weight tensor, over all networks."""
    return [float(w.mean()) for w in masks.weights]


def _taps(masks: WeightSpaceFeatures) -> Tensor:
    """W_1 of 1-channel masks as ``(B, n_1, n_0, taps)``; one tap for an MLP."""
    w1 = masks.weights[0][:, 0]
    return w1.reshape(*w1.shape[:3], -1)


def first_layer_use(masks: WeightSpaceFeatures) -> dict[str, float]:
    """How a mask uses the first layer, averaged over networks: hidden neurons left without any
    input weight, and inputs (pixels) with at least one kept weight."""
    w1 = _taps(masks).sum(3) > 0  # (B, n_1, n_0): any kernel tap kept
    return {
        "neurons_without_inputs": float((~w1.any(2)).double().sum(1).mean()),
        "inputs_used": float(w1.any(1).double().sum(1).mean()),
    }


def _input_maps(masks: dict[str, WeightSpaceFeatures], n_inputs: int) -> dict[str, Tensor] | None:
    """Each mask's kept share of W_1 per input, as a square image; ``None`` unless the inputs
    are the pixels of a square image (an MLP on flattened images)."""
    side = math.isqrt(n_inputs)
    if side * side != n_inputs or side < 2:
        return None
    return {
        name: _taps(m).double().mean((0, 1, 3)).reshape(side, side) for name, m in masks.items()
    }


def _layer_magnitude(
    inits: WeightSpaceFeatures, density: list[float] | None, sparsity: float
) -> WeightSpaceFeatures:
    """Top-|init| masks with the training masks' kept share per tensor (``density``; a global
    top-|init| when a run predates it), rounded to the set's exact budget."""
    if density is None:
        return top_k_mask(inits.map(torch.abs), sparsity)
    b = inits.batch_size
    sizes = [w[0].numel() for w in inits.weights]
    k = round((1 - sparsity) * sum(sizes))
    shares = torch.tensor(density, dtype=torch.float64).mul(torch.tensor(sizes)).expand(b, -1)
    return budgeted_mask(inits.map(torch.abs), layer_budgets(shares, k, sizes))


def _as_features(masks: list[Tensor], like: WeightSpaceFeatures) -> WeightSpaceFeatures:
    biases = [torch.ones_like(b) for b in like.biases]
    return WeightSpaceFeatures([m[:, None] for m in masks], biases, like.spec)


class _ElboObjective:
    """The ELBO of (init, mask) batches, with the KL weight warmed up over epochs."""

    def __init__(self, kl_weight: float, kl_warmup: int) -> None:
        self.kl_weight, self.kl_warmup = kl_weight, kl_warmup

    def weight(self, epoch: int) -> float:
        if self.kl_warmup <= 0:
            return self.kl_weight
        return self.kl_weight * min(1.0, epoch / self.kl_warmup)

    def __call__(self, model: nn.Module, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        init, mask = split_batch(batch, "tickets")
        logits, mean, logvar = model(init, mask)
        loss, bce, kl = mask_elbo(logits, mask, mean, logvar, kl_weight=self.weight(epoch))
        return loss, {"bce": float(bce.detach()), "kl": float(kl.detach())}


# ------------------------------------------------------------------ task
class Tickets(Task):
    """Predict IMP masks from inits with a conditional VAE; score by training the masks."""

    name, command = "tickets", "tickets"
    help = "learn to predict winning-ticket masks from initialisations (conditional VAE)"
    config_class = TicketTrainConfig
    data_field, noun, unit = "tickets", "ticket set", "networks"
    data_help = "ticket set written by `weightspace tickets generate`"
    cli_fields = ("seed", "epochs", "batch_size", "lr", "warmup_steps", "patience")
    cli_fields += ("hidden_channels", "latent_channels", "kl_weight", "kl_warmup")
    cli_fields += ("n_test", "n_val", "split_seed", "allocation", "magnitude", "decoding")
    cli_fields += ("io_encoding",)
    cli_fields += ("train_limit", "device")
    metric: ClassVar[str] = "iou"
    higher_is_better: ClassVar[bool] = True
    required = ("hidden_channels", "latent_channels", "sparsity")
    eval_batch_size = 16

    def load(self, source: str, *, progress: bool = False) -> TicketSet:
        s = self.settings
        if not (Path(source) / TICKET_FILE).is_file() and not Path(source).is_dir():
            raise ValueError(
                f"ticket set {source!r} does not exist; expected a folder written by "
                "`weightspace tickets generate`"
            )
        return load_tickets(
            source,
            split_seed=int(s.get("split_seed", 0)),
            n_test=int(s.get("n_test", 50)),
            n_val=int(s.get("n_val", 25)),
        )

    def check(self, data: Any, where: str) -> tuple[TicketSet, dict[str, Any]]:
        if not isinstance(data, TicketSet):
            raise ValueError(f"{where}: expected a ticket set, got {type(data).__name__}")
        if data.spec.is_cnn:
            raise ValueError(f"{where}: ticket sets of CNNs are not supported, got {data.spec}")
        return data, {"sparsity": data.sparsity, "dataset": data.info.get("dataset")}

    def summary(self, data: TicketSet, where: str, extra: Any) -> str:
        counts = {n: len(data.part(n)) for n in ("train", "val", "test")}
        acc = {k: round(float(v.mean()), 4) for k, v in data.accuracy.items()}
        return (
            f"{len(data)} tickets in {where} ({counts}); sparsity {data.sparsity}; "
            f"mean test accuracy {acc}"
        )

    def describe(self, data: TicketSet, where: str) -> dict[str, Any]:
        # The training masks' kept share per weight tensor: the budgets of the top-|init|
        # baseline (what a rule with nothing learned but the layer shares would keep).
        train = data.part("train").masks
        density = [float(w.double().mean()) for w in train.weights]
        return {"sparsity": data.sparsity, "dataset": data.info.get("dataset"),
                "train_density": density}  # fmt: skip

    def check_compatible(self, data: TicketSet, where: str, run: Path) -> None:
        sparsity = float(self.settings["sparsity"])
        if not math.isclose(data.sparsity, sparsity):
            raise ValueError(
                f"ticket set {where!r} was pruned to sparsity {data.sparsity}, but the model in "
                f"{str(run)!r} learned masks of sparsity {sparsity}"
            )

    def items(self, part: TicketSet, *, train: bool) -> Items:
        return Items(part.inits, part.masks)

    def build(self, spec: NetworkSpec) -> nn.Module:
        s = self.settings

        def make() -> MaskVAE:
            return MaskVAE(
                spec,
                s["model"],
                hidden_channels=tuple(s["hidden_channels"]),
                latent_channels=int(s["latent_channels"]),
                prior_seed=int(s.get("seed", 0)),
                magnitude=bool(s.get("magnitude", False)),
                io_encoding=s.get("io_encoding", "auto"),
            )

        with torch.device("meta"):  # count first: HNP on wide inputs does not fit in memory
            count = sum(p.numel() for p in make().parameters())
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"a {s['model']!r} mask model with hidden channels {tuple(s['hidden_channels'])} "
                f"on {spec} would hold {count:,} parameters (over {MAX_PARAMETERS:,}): HNP "
                "layers keep every input neuron apart, so they grow with the square of the "
                f"{spec.widths[0]} inputs; use 'np' or 'pt', or fewer channels"
            )
        return make()

    def prepare(self, model: nn.Module, train: TicketSet) -> None:
        model.set_statistics(train.inits)  # type: ignore[operator]
        model.set_mask_prior(train.masks)  # type: ignore[operator]

    def objective(self) -> _ElboObjective:
        s = self.settings
        return _ElboObjective(float(s.get("kl_weight", 1.0)), int(s.get("kl_warmup", 0)))

    def to_mask(
        self, logits: WeightSpaceFeatures, allocation: str | None = None
    ) -> WeightSpaceFeatures:
        """The mask of ``logits`` under the run's (or the given) allocation."""
        rule = allocation or self.settings.get("allocation", "expected")
        sparsity = float(self.settings["sparsity"])
        if rule == "expected" and self.settings.get("decoding", "top") == "sample":
            seed = int(self.settings.get("seed", 0))
            return sampled_top_k(logits.to("cpu"), sparsity, seed=seed)
        decode = allocated_top_k if rule == "expected" else top_k_mask
        return decode(logits.to("cpu"), sparsity)

    def metric_fn(self, outputs: WeightSpaceFeatures, targets: WeightSpaceFeatures) -> float:
        pred = self.to_mask(outputs)
        return float(mask_iou(pred.to("cpu"), targets.to("cpu")).mean())

    # ------------------------------------------------------------------ scoring
    def predict_logits(self, model: nn.Module, inits: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """Logits decoded from the prior (deterministic in eval mode)."""
        logits, _ = predict(model, Items(inits, inits), batch_size=self.eval_batch_size)
        return logits.to("cpu")

    def predict_masks(self, model: nn.Module, inits: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """The masks the model predicts for ``inits`` (the run's allocation)."""
        return self.to_mask(self.predict_logits(model, inits))

    def score(
        self, model: nn.Module, test: TicketSet, title: str, out: Path | None
    ) -> dict[str, Any]:
        """Train every held-out init with its predicted mask (and with the top-|init| mask)."""
        start = time.perf_counter()
        logits = self.predict_logits(model, test.inits)
        pred = self.to_mask(logits)
        predict_s = time.perf_counter() - start
        other = (
            "global" if self.settings.get("allocation", "expected") == "expected" else "expected"
        )
        pred_other = self.to_mask(logits, other)
        spec, sparsity, recipe = test.spec, test.sparsity, test.recipe
        init = [w[:, 0] for w in test.inits.weights] + [b[:, 0] for b in test.inits.biases]
        seeds = test.seeds.tolist()
        images = test.images()
        magnitude = _layer_magnitude(test.inits, self.settings.get("train_density"), sparsity)
        rand = _as_features(random_mask(spec, sparsity, seeds), test.inits)
        accuracy: dict[str, Tensor] = {k: test.accuracy[k] for k in ("dense", "imp", "random")}
        start = time.perf_counter()
        # Retrained where the model is (the data order is the same on every device).
        device = next(model.parameters()).device
        for kind, masks in (("mask", pred), ("magnitude", magnitude)):
            _, accuracy[kind] = train_masked(
                spec,
                init,
                seeds,
                images,
                recipe,
                masks=[w[:, 0] for w in masks.weights],
                device=device,
            )
        train_s = time.perf_counter() - start
        overlap = {
            "mask": mask_iou(pred, test.masks),
            "magnitude": mask_iou(magnitude, test.masks),
            "random": mask_iou(rand, test.masks),
            "other": mask_iou(pred_other, test.masks),
        }
        imp, rnd = float(accuracy["imp"].mean()), float(accuracy["random"].mean())
        mask = float(accuracy["mask"].mean())
        metrics: dict[str, Any] = {f"{k}_test_accuracy": float(accuracy[k].mean()) for k in KINDS}
        metrics |= {f"{k}_test_accuracy_std": float(accuracy[k].std()) for k in KINDS}
        metrics |= {
            "iou_with_imp": float(overlap["mask"].mean()),
            "magnitude_iou_with_imp": float(overlap["magnitude"].mean()),
            "random_iou_with_imp": float(overlap["random"].mean()),
            "gap_closed": (mask - rnd) / (imp - rnd) if imp != rnd else math.nan,
            "allocation": self.settings.get("allocation", "expected"),
            f"{other}_allocation_iou_with_imp": float(overlap["other"].mean()),
            f"{other}_allocation_density": _density(pred_other),
            "sparsity": sparsity,
            "layer_density": {
                "mask": _density(pred),
                "imp": _density(test.masks),
                "random": _density(rand),
                "magnitude": _density(magnitude),
            },
            "first_layer": {
                "mask": first_layer_use(pred),
                "imp": first_layer_use(test.masks),
                "random": first_layer_use(rand),
                "magnitude": first_layer_use(magnitude),
            },
            "n_test": len(test),
            "predict_time_s": predict_s,
            "mask_train_time_s": train_s,
        }
        if out is not None:
            maps = _input_maps(
                {KIND_NAMES[k]: m for k, m in (("imp", test.masks), ("mask", pred),
                                               ("magnitude", magnitude))},
                spec.widths[0],
            )  # fmt: skip
            self._write(out, title, test, accuracy, overlap, metrics, maps)
        return metrics

    def _write(
        self,
        out: Path,
        title: str,
        test: TicketSet,
        accuracy: dict[str, Tensor],
        overlap: dict[str, Tensor],
        metrics: dict[str, Any],
        maps: dict[str, Tensor] | None,
    ) -> None:
        names = [KIND_NAMES[k] for k in KINDS]
        viz.accuracy_bars(
            names,
            [100 * float(accuracy[k].mean()) for k in KINDS],
            [100 * float(accuracy[k].std()) for k in KINDS],
            out / "accuracy.png",
            title=f"{title}\ntest accuracy (%) of {len(test)} held-out inits, sparsity "
            f"{test.sparsity}; IoU with IMP {metrics['iou_with_imp']:.3f}",
        )
        layers = [t.name for t in test.spec.tensors[: test.spec.num_layers]]
        density = metrics["layer_density"]
        viz.layer_sparsity(
            layers,
            {KIND_NAMES[k]: density[k] for k in ("imp", "mask", "magnitude", "random")},
            out / "layer_sparsity.png",
            title=f"{title}\nkept share of each weight tensor",
        )
        if maps is not None:
            used = metrics["first_layer"]
            viz.input_usage(
                maps,
                out / "input_usage.png",
                title=f"{title}\nkept share of W1 per input pixel, {len(test)} held-out inits; "
                f"pixels used: IMP {used['imp']['inputs_used']:.0f}, "
                f"predicted {used['mask']['inputs_used']:.0f}",
            )
        rows = zip(
            test.seeds.tolist(),
            *(accuracy[k].tolist() for k in KINDS),
            overlap["mask"].tolist(),
            overlap["magnitude"].tolist(),
        )
        header = ["seed", *(f"{k}_test_accuracy" for k in KINDS), "iou_with_imp"]
        runner.write_csv([*header, "magnitude_iou_with_imp"], rows, out / "tickets.csv")


def run_tickets(
    config: TicketTrainConfig, *, dataset: TicketSet | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train a mask model on a ticket set's train split, select on validation IoU, then train
    the held-out inits with their predicted masks. Returns ``RUN/metrics.json``."""
    return runner.run(Tickets, config, data=dataset, progress=progress)


# ------------------------------------------------------------------ predict for a user's init
def _read_init(path: Path, spec: NetworkSpec) -> tuple[WeightSpaceFeatures, bool]:
    """An init file as features, and whether it holds a batch: tensors named like the spec
    (``W1`` … ``bL``; one network, or a batch on a leading axis), or the state dict of one
    network's ``nn.Linear`` layers in order (``0.weight``, ``0.bias``, …)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from weightspace.data.zoo_import import layer_order

    if not path.is_file():
        raise ValueError(f"init file {str(path)!r} does not exist")
    try:
        tensors = load_file(path)
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(f"init file {str(path)!r} is not a safetensors file ({err})") from None
    names = [t.name for t in spec.tensors]
    batched = False
    if set(names) <= set(tensors):
        batched = tensors[names[0]].ndim == len(spec.tensors[0].shape) + 1
        parts = []
        for t in spec.tensors:
            x = tensors[t.name]
            x = x if batched else x[None]
            if tuple(x.shape[1:]) != t.shape:
                raise ValueError(
                    f"init file {str(path)!r}: tensor {t.name} has shape "
                    f"{tuple(tensors[t.name].shape)}, the "
                    f"run's networks ({spec}) need {t.shape}"
                )
            parts.append(x.to(torch.float32))
    else:
        try:
            features = WeightSpaceFeatures.from_state_dicts([layer_order(tensors)], spec)
        except ValueError as err:
            raise ValueError(
                f"init file {str(path)!r} is not an init of the run's networks ({spec}): {err}"
            ) from None
        parts = [w[:, 0] for w in features.weights] + [b[:, 0] for b in features.biases]
    for t, x in zip(spec.tensors, parts):
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"init file {str(path)!r}: tensor {t.name} holds NaN or inf values")
    L = spec.num_layers
    weights, biases = [p[:, None] for p in parts[:L]], [p[:, None] for p in parts[L:]]
    return WeightSpaceFeatures(weights, biases, spec), batched


def predict_mask_file(
    run: str | os.PathLike[str],
    init: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    device: str = "auto",
) -> Path:
    """Write the mask the model of ``run`` predicts for the init in ``init`` (safetensors).

    The mask file holds ``W1`` … ``WL`` (0/1, float32, shaped like the init's weights, batched
    if the init was), with the run, model and sparsity in its metadata.

    Raises
    ------
    ValueError
        ``run`` is not a tickets run; the init file is missing, not safetensors, of another
        architecture than the run's (naming the tensor) or holds NaN weights.
    """
    run, init, out = Path(run), Path(init), Path(out)
    task, spec, model = runner.load_trained(Tickets, run)
    features, batched = _read_init(init, spec)
    dev = resolve_device(device)
    model.to(dev)
    mask = task.predict_masks(model, features)
    check_mask([w[:, 0] for w in mask.weights], spec, "predict_mask_file")
    sparsity = check_sparsity(float(task.settings["sparsity"]), str(run))
    tensors = {
        t.name: (w[:, 0] if batched else w[0, 0]).contiguous()
        for t, w in zip(spec.tensors, mask.weights)
    }
    write_safetensors(
        tensors,
        out,
        metadata={"run": os.path.abspath(run), "model": str(task.settings["model"]),
                  "sparsity": str(sparsity)},
    )  # fmt: skip
    return out
