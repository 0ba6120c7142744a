"""Predicting generalization: regress a CNN's test accuracy from its weights (paper §4).

A predictor (NFN_HNP, NFN_NP, StatNN, a flat MLP, or a probe model that runs each CNN on learned
images, alone or beside NFN_HNP) reads each network's weights and outputs one logit;
``sigmoid(logit)`` is the predicted test accuracy, trained with binary cross-entropy against the
true accuracy. The model with the best validation Kendall τ is kept and scored on
the zoo's test split (see :mod:`weightspace.tasks.runner` for the run folder)::

    RUN/metrics.json      test kendall_tau, r2, mae, n_test, dropped, model, seed, …
    RUN/scatter.png       predicted against actual test accuracy
    RUN/predictions.csv   one row per test network: actual, predicted

:func:`evaluate` rebuilds the predictor from ``config.json`` and ``best.pt`` and scores it on the
test split of any zoo of the same architecture, into ``RUN/eval/<zoo name>/``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace import viz
from weightspace.data.container import Zoo
from weightspace.data.images import IMAGE_SHAPES
from weightspace.data.zoo import CHECKPOINTS, PADDING, STRIDE, ZOO_FORMAT
from weightspace.data.zoo_import import IMPORT_SOURCE
from weightspace.models.nfn import POOLS
from weightspace.models.probe import HybridModel, ProbeModel
from weightspace.models.standardize import Standardized
from weightspace.nn.activation import get_activation
from weightspace.nn.probe import PROBE_GENERATORS
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.tasks import runner
from weightspace.tasks.base import (
    Items,
    Task,
    TaskConfig,
    count_or_none,
    int_tuple,
    invariant_model,
    on_off,
    option,
    positive_int,
)
from weightspace.tasks.inputs import AugmentedLoss, SymmetryAugmentation
from weightspace.tasks.metrics import kendall_tau, regression_metrics
from weightspace.tasks.sources import ZOO_KINDS, detect_zoo_kind, load_any_zoo
from weightspace.train.loop import predict

__all__ = [
    "MODELS",
    "ZOO_KINDS",
    "Generalization",
    "GeneralizationConfig",
    "build_predictor",
    "detect_zoo_kind",
    "evaluate",
    "load_any_zoo",
    "network_activation",
    "run_generalization",
]

#: Predictor names: NFN under hidden-neuron permutations, NFN under all neuron permutations
#: with a sinusoidal IO encoding, the StatNN baseline and an MLP on flattened weights.
MODELS: tuple[str, ...] = ("hnp", "np", "statnet", "mlp", "probe", "hnp-probe")
#: Models that run the networks on learned probe images (:mod:`weightspace.models.probe`).
PROBE_MODELS: tuple[str, ...] = ("probe", "hnp-probe")
#: Image side of each Small CNN Zoo dataset (its ``config.dataset``), for the probes.
SMALL_CNN_ZOO_SIDES = {"cifar10": 32, "svhn_cropped": 32, "mnist": 28, "fashion_mnist": 28}
#: Activations with an exact neuron-wise symmetry beyond permutations (see
#: :mod:`weightspace.symmetry.neurons`): sign flips for odd ones, positive rescaling for ReLU.
ODD_ACTIVATIONS = ("tanh", "sin")
HOMOGENEOUS_ACTIVATIONS = ("relu",)


@dataclass
class GeneralizationConfig(TaskConfig):
    """One generalization-prediction run (the training fields are :class:`TaskConfig`'s).

    Attributes
    ----------
    zoo, model, out:
        Folder of the zoo (see :func:`load_any_zoo`), one of :data:`MODELS`, run folder.
    hidden_channels:
        NF-Layer channels (NFNs only).
    head_hidden:
        Hidden widths of the MLP head (every model).
    zoo_kind:
        ``"weightspace"``, ``"small-cnn-zoo"``, or ``"auto"`` to tell from the files present.
    epoch:
        Which checkpoint of each network to read: the epoch of a generated zoo or the step of
        the Small CNN Zoo; ``None`` is the last.
    checkpoints:
        ``"final"``: one checkpoint per network (``epoch``). ``"all"``: the training split has
        every saved checkpoint of its networks; validation and test keep the final one; the
        split is by network (:func:`load_any_zoo`).
    split_seed:
        Seed of the zoo's train/val/test split.
    augment:
        Train on random function-preserving copies of each network: sign flips of tanh
        networks' hidden neurons, positive rescalings of ReLU networks' ones
        (:mod:`weightspace.tasks.inputs`).
    normalize:
        Standardise each weight and bias tensor by one shift and one scale measured on the
        training split (:class:`~weightspace.models.Standardized`), for ``hnp``, ``np``,
        ``statnet`` and ``mlp``. ``hnp-probe`` always standardises its NFN branch, and its
        probes run the networks as they are, so it takes no such option.
    dropout:
        Dropout in the MLP head (every model).

    The defaults are the paper's: 50 epochs of batch 8 at lr 1e-3.
    """

    models = MODELS
    nfn_models = ("hnp", "np", "hnp-probe")
    added_fields = TaskConfig.added_fields + ("probes", "probe_generator", "pool", "checkpoints")
    added_fields += ("normalize", "dropout", "fourier_features", "fourier_scale")

    zoo: str
    model: str
    out: str
    epochs: int = option(50, "passes over the training split", kw_only=True, type=positive_int)
    batch_size: int = option(8, "networks per step", kw_only=True, type=positive_int)
    hidden_channels: tuple[int, ...] = option(
        (16, 16, 5), "NF-Layer channels, comma-separated", type=int_tuple
    )
    head_hidden: tuple[int, ...] = option((1000,), "head widths, comma-separated", type=int_tuple)
    zoo_kind: str = option("auto", "which kind of zoo --zoo is", choices=ZOO_KINDS)
    epoch: int | None = None
    checkpoints: str = option(
        "final",
        "train on each network's final checkpoint, or on all saved ones (val/test: final)",
        choices=CHECKPOINTS,
    )
    split_seed: int = 0
    augment: bool = option(
        False, "train on random same-function copies (tanh: sign flips, ReLU: rescaled neurons)"
    )
    probes: int = option(64, "probe images of the probe models", type=positive_int)
    probe_generator: str = option(
        "deep-linear", "how probes are parameterised (probe models)", choices=PROBE_GENERATORS
    )
    pool: str = option(
        "mean", "the NFNs' invariant read-out: means, or mean/std/quantiles (stats)", choices=POOLS
    )
    normalize: bool = option(
        False, "standardise each tensor by training statistics (hnp, np, statnet, mlp)",
        type=on_off,
    )  # fmt: skip
    dropout: float = option(0.0, "dropout in the MLP head", type=float)
    fourier_features: int | None = option(
        None, "Gaussian Fourier features of each weight (hnp, np); 0 for none", type=count_or_none
    )
    fourier_scale: float = option(1.0, "frequency scale of the Fourier features", type=float)

    def __post_init__(self) -> None:
        super().__post_init__()
        ff, fs = self.fourier_features, self.fourier_scale
        if ff is not None and (isinstance(ff, bool) or not isinstance(ff, int) or ff < 1):
            self.refuse("fourier_features", "a positive int or None")
        if ff is not None and self.model not in ("hnp", "np"):
            self.refuse("fourier_features", "None: it applies to hnp and np")
        if isinstance(fs, bool) or not isinstance(fs, int | float) or not 0 < fs < math.inf:
            self.refuse("fourier_scale", "a positive number")
        if self.normalize and self.model in PROBE_MODELS:
            raise ValueError(
                f"GeneralizationConfig: normalize applies to hnp, np, statnet and mlp, not "
                f"{self.model!r} (its NFN branch is always standardised; its probes run the "
                "networks as they are)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GeneralizationConfig: dropout must be in [0, 1), got {self.dropout}")
        if self.checkpoints == "all" and self.train_limit is not None:
            raise ValueError(
                f"GeneralizationConfig: train_limit={self.train_limit} counts networks of one "
                "checkpoint each; it cannot be combined with checkpoints='all'"
            )


def network_activation(row: dict[str, Any]) -> str | None:
    """A zoo network's activation from its metadata row (``activation`` for generated zoos,
    ``config.activation`` for the Small CNN Zoo), or ``None`` when it is not recorded."""
    value = row.get("activation", row.get("config.activation"))
    return str(value) if value is not None else None


def build_predictor(
    model: str,
    spec: NetworkSpec,
    hidden_channels: tuple[int, ...] = (16, 16, 5),
    head_hidden: tuple[int, ...] = (1000,),
    *,
    probe: dict[str, Any] | None = None,
    pool: str = "mean",
    normalize: bool = False,
    dropout: float = 0.0,
    fourier_features: int | None = None,
    fourier_scale: float = 1.0,
) -> nn.Module:
    """The predictor named ``model`` for networks on ``spec``, with one output (a logit).

    ``"hnp"``: :class:`InvariantNFN` with HNP layers and no IO encoding; ``"np"``: NP layers with
    a sinusoidal IO encoding; ``"statnet"``: :class:`StatNet`; ``"mlp"``: :class:`FlatMLP`;
    ``"probe"``: a :class:`~weightspace.models.ProbeModel` and ``"hnp-probe"`` a
    :class:`~weightspace.models.HybridModel` with an HNP branch, both with the
    :class:`~weightspace.nn.ProbeFeatures` options ``probe`` (``input_shape``, ``stride``,
    ``padding``, ``num_probes``, ``generator``) and taking ``(features, activation index)``
    inputs (:class:`ByActivation`). ``normalize`` puts the model (not a probe model) behind a
    :class:`~weightspace.models.Standardized`, whose statistics ``set_statistics`` measures;
    ``dropout`` is the head's; ``fourier_features`` and ``fourier_scale`` give ``hnp`` and ``np``
    Gaussian Fourier features of each (standardised, with ``normalize``) weight.
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    if normalize and model in PROBE_MODELS:
        raise ValueError(f"normalize applies to hnp, np, statnet and mlp, not {model!r}")
    if model not in ("hnp", "np", "hnp-probe") and pool != "mean":
        raise ValueError(f"pool {pool!r} applies to the NFNs (hnp, np, hnp-probe), not {model!r}")
    if model not in PROBE_MODELS:
        fourier = {"fourier_features": fourier_features, "fourier_scale": fourier_scale}
        net = invariant_model(
            model, spec, hidden_channels, head_hidden, 1, pool=pool, dropout=dropout,
            **(fourier if fourier_features is not None else {}),
        )  # fmt: skip
        return Standardized(net, spec) if normalize else net
    options = dict(probe or {})
    names = tuple(options.pop("activations", ("relu",)))
    options.setdefault("init", "normal")
    if model == "probe":
        net = ProbeModel(spec, head_hidden, 1, dropout, activation=names[0], **options)
    else:
        net = HybridModel(
            spec, "hnp", hidden_channels, head_hidden, 1, dropout, io_encoding=None, pool=pool,
            activation=names[0], **options,
        )  # fmt: skip
    return ByActivation(net, names)


class ByActivation(nn.Module):
    """A probe model for a zoo of mixed activations: input ``(features, index)``, where
    ``index[b]`` names network b's activation in ``names``; each network runs with its own.

    Shapes
    ------
    - input: ``(WeightSpaceFeatures with B networks, (B,) int64)``
    - output: what the wrapped model returns
    """

    def __init__(self, net: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.net, self.names = net, tuple(names)

    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        if hasattr(self.net, "set_statistics"):
            self.net.set_statistics(features)

    def forward(self, x: tuple[WeightSpaceFeatures, Tensor]) -> Tensor:
        features, index = x
        return self.net(features, [self.names[int(k)] for k in index.tolist()])

    def extra_repr(self) -> str:
        return f"activations={self.names}"


class _Inputs:
    """``(features[i], index[i])`` pairs for :class:`ByActivation`."""

    def __init__(self, features: WeightSpaceFeatures, index: Tensor) -> None:
        self.features, self.index = features, index

    def __getitem__(self, i: int) -> tuple[WeightSpaceFeatures, Tensor]:
        return self.features[i], self.index[i]


def _bce_loss(logits: Tensor, accuracy: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits.reshape(-1), accuracy.reshape(-1).float())


class Generalization(Task):
    """Regress each network's test accuracy from its weights; select on val Kendall τ."""

    name = command = "generalization"
    help = "predict each network's test accuracy from its weights"
    config_class = GeneralizationConfig
    data_field, noun, unit = "zoo", "zoo", "networks"
    data_help = "zoo folder (generated, imported, or the Small CNN Zoo)"
    cli_fields = ("seed", "epochs", "batch_size", "lr", "patience", "warmup_steps", "lr_decay")
    cli_fields += ("train_limit",)
    cli_fields += ("augment", "normalize", "dropout", "weight_decay", "hidden_channels")
    cli_fields += ("head_hidden", "fourier_features", "fourier_scale")
    cli_fields += ("probes", "probe_generator", "pool", "checkpoints", "zoo_kind", "device")
    metric, higher_is_better, min_split = "kendall_tau", True, 2
    required = ("hidden_channels", "head_hidden")
    # Test items are final checkpoints either way; reading the others would be wasted.
    eval_overrides: ClassVar[dict[str, Any]] = {"zoo_kind": "auto", "checkpoints": "final"}

    def load(self, source: str, *, progress: bool = False) -> Zoo:
        s = self.settings
        return load_any_zoo(
            source,
            kind=s.get("zoo_kind", "auto"),
            epoch=s.get("epoch"),
            split_seed=s.get("split_seed", 0),
            checkpoints=s.get("checkpoints", "final"),
        )

    def check(self, data: Zoo, where: str) -> tuple[Zoo, dict[str, Any]]:
        finite, dropped = data.finite()
        return finite, {"dropped": dropped}

    def summary(self, data: Zoo, where: str, extra: dict[str, Any]) -> str:
        return (
            f"{where}: {len(data)} networks on {data.spec}; dropped {extra['dropped']} diverged "
            "(non-finite weights or accuracy)"
        )

    def split_hint(self, data: Zoo, extra: dict[str, Any]) -> str:
        return f" after dropping {extra['dropped']} diverged ones"

    def describe(self, data: Zoo, where: str) -> dict[str, Any]:
        if self.settings["model"] not in PROBE_MODELS:
            return {}
        acts = [network_activation(row) for row in data.metadata]
        if any(a is None for a in acts):
            raise ValueError(
                f"zoo {where!r}: a probe model runs the networks, but some rows record no "
                "activation ('activation' or 'config.activation')"
            )
        names = sorted({str(a) for a in acts})
        for name in names:
            try:
                get_activation(name)
            except ValueError:
                first = next(r for r in data.metadata if network_activation(r) == name)
                raise ValueError(
                    f"zoo {where!r}: network {first.get('index', '?')} has activation {name!r}, "
                    "which a probe model cannot run (known: relu, tanh, gelu, sigmoid, silu, sin)"
                ) from None
        return {"activations": names, "probe_input": _probe_input(data, where)}

    def check_compatible(self, data: Zoo, where: str, run: Path) -> None:
        if self.settings["model"] in PROBE_MODELS:
            known = set(self.settings["activations"])
            new = {network_activation(row) for row in data.metadata} - known
            if new:
                raise ValueError(
                    f"zoo {where!r} holds networks with activations {sorted(map(str, new))}; "
                    f"the probe model in {str(run)!r} knows {sorted(known)}"
                )

    def inputs(self, part: Zoo) -> Any:
        """What the model reads: the weights, with each network's activation for probe models."""
        if self.settings["model"] not in PROBE_MODELS:
            return part.features
        names = list(self.settings["activations"])
        index = [names.index(str(network_activation(row))) for row in part.metadata]
        return _Inputs(part.features, torch.tensor(index, dtype=torch.long))

    def items(self, part: Zoo, *, train: bool) -> Items:
        odd = None
        if train and self.settings.get("augment"):
            acts = [network_activation(row) for row in part.metadata]
            for i, act in enumerate(acts):
                if act not in ODD_ACTIVATIONS + HOMOGENEOUS_ACTIVATIONS:
                    index = part.metadata[i].get("index", i)
                    raise ValueError(
                        f"augment: network {index} has activation {act!r}; symmetry "
                        f"augmentation needs one of {ODD_ACTIVATIONS + HOMOGENEOUS_ACTIVATIONS}"
                    )
            odd = torch.tensor([act in ODD_ACTIVATIONS for act in acts])
        return Items(self.inputs(part), part.test_accuracy.float(), odd)

    def build(self, spec: NetworkSpec) -> nn.Module:
        s = self.settings
        probe = None
        if s["model"] in PROBE_MODELS:
            geometry = s["probe_input"]
            probe = {
                "activations": s["activations"],
                "input_shape": tuple(geometry["shape"]),
                "stride": geometry["stride"],
                "padding": geometry["padding"],
                "num_probes": int(s.get("probes", 64)),
                "generator": s.get("probe_generator", "deep-linear"),
            }
        return build_predictor(
            s["model"],
            spec,
            tuple(s["hidden_channels"]),
            tuple(s["head_hidden"]),
            probe=probe,
            pool=s.get("pool", "mean"),
            normalize=bool(s.get("normalize", False)),
            dropout=float(s.get("dropout", 0.0)),
            fourier_features=s.get("fourier_features"),
            fourier_scale=float(s.get("fourier_scale", 1.0)),
        )

    def prepare(self, model: nn.Module, train: Zoo) -> None:
        if hasattr(model, "set_statistics"):
            model.set_statistics(train.features)

    def objective(self) -> AugmentedLoss:
        spec = NetworkSpec.from_dict(self.settings["spec"])
        augment = bool(self.settings.get("augment"))
        return AugmentedLoss(_bce_loss, SymmetryAugmentation(spec, signs=augment, scales=augment))

    def metric_fn(self, logits: Tensor, accuracy: Tensor) -> float:
        return kendall_tau(torch.sigmoid(logits.reshape(-1)), accuracy)

    def score(self, model: nn.Module, test: Zoo, title: str, out: Path | None) -> dict[str, Any]:
        items = Items(self.inputs(test), test.test_accuracy.float())
        logits, actual = predict(model, items, batch_size=self.eval_batch_size)
        predicted, actual = torch.sigmoid(logits.reshape(-1)).cpu(), actual.cpu()
        metrics: dict[str, Any] = {**regression_metrics(predicted, actual), "n_test": len(test)}
        if out is not None:
            tau = f"Kendall τ = {metrics['kendall_tau']:.3f}, n = {len(test)}"
            target = str(test.info.get("target") or "test accuracy")  # an imported zoo's column
            labels = {"xlabel": f"actual {target}", "ylabel": f"predicted {target}"}
            viz.scatter(predicted, actual, out / "scatter.png", title=f"{title}\n{tau}", **labels)
            rows = zip(actual.tolist(), predicted.tolist())
            runner.write_csv(["actual", "predicted"], rows, out / "predictions.csv")
        return metrics


def _probe_input(data: Zoo, where: str) -> dict[str, Any]:
    """The probe images' shape and the convs' stride and padding of the zoo's networks."""
    source, dataset = data.info.get("source"), data.info.get("dataset")
    if source == IMPORT_SOURCE and not data.spec.is_cnn:  # an MLP's input is its n_0 features
        return {"shape": [], "stride": 1, "padding": 0}
    if source == ZOO_FORMAT and dataset in IMAGE_SHAPES:
        return {"shape": list(IMAGE_SHAPES[dataset][1:]), "stride": STRIDE, "padding": PADDING}
    if source == "small-cnn-zoo" and dataset in SMALL_CNN_ZOO_SIDES:
        side = SMALL_CNN_ZOO_SIDES[str(dataset)]
        return {"shape": [side, side], "stride": 2, "padding": 0}
    if source == IMPORT_SOURCE:
        raise ValueError(
            f"zoo {where!r}: a probe model needs the input size of the imported CNNs, which the "
            "zoo does not record; use hnp, np, statnet or mlp"
        )
    raise ValueError(
        f"zoo {where!r}: a probe model needs the networks' input size, unknown for a "
        f"{source!r} zoo of dataset {dataset!r}"
    )


def run_generalization(
    config: GeneralizationConfig, *, zoo: Zoo | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train a predictor on a zoo's train split, select on val Kendall τ, score on test.

    Resumes when ``config.out`` already holds this run (a finished run is only re-scored);
    ``zoo`` is an in-memory zoo to use instead of loading ``config.zoo``.

    Returns
    -------
    The contents of ``RUN/metrics.json``: ``kendall_tau``, ``r2``, ``mae``, ``n_test``,
    ``dropped``, ``model``, ``seed``, ``zoo``, ``n_train``, ``n_val``, ``best_epoch``,
    ``best_val_kendall_tau``, ``epochs_run``, ``stopped_early``, ``train_time_s``.
    """
    return runner.run(Generalization, config, data=zoo, progress=progress)


def evaluate(
    run: str | os.PathLike[str],
    zoo: Zoo | str | os.PathLike[str],
    *,
    zoo_kind: str = "auto",
    epoch: int | None = None,
    split_seed: int | None = None,
    device: str = "auto",
) -> dict[str, Any]:
    """Score a trained predictor on a zoo's test split; writes ``RUN/eval/<zoo name>/``.

    ``epoch`` and ``split_seed`` of the zoo default to the run's own. Returns ``kendall_tau``,
    ``r2``, ``mae``, ``n_test``, ``dropped``, ``model``, ``seed``, ``zoo``, ``run``, ``out``;
    see :func:`weightspace.tasks.runner.evaluate` for the errors.
    """
    overrides: dict[str, Any] = {"zoo_kind": zoo_kind}  # the run's own epoch and split seed
    if epoch is not None:
        overrides["epoch"] = epoch
    if split_seed is not None:
        overrides["split_seed"] = split_seed
    return runner.evaluate(Generalization, run, zoo, device=device, overrides=overrides)
