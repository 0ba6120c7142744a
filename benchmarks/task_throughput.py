"""Training throughput of each task's default NFN, against the same model built from the
reference's layers.

For every task we build two models: ours, exactly as the task builds it, and the same
architecture assembled from the public layers of ``nfn==0.1.2`` (the ``bench`` extra; never a
runtime dependency). Both train on the same seeded random batches of the right weight space (the
values do not affect speed): each step is a forward, the task's loss, a backward and an Adam step
(lr 1e-3, the tasks' default). After ``--warmup`` untimed steps per model, the two models take
turns, one block of ``--steps`` steps each, ``--reps`` times (the order alternates, so a busy
machine slows both alike). We report per model the median seconds per step, the networks per
second it trains (batch / median step), and the ratio nfn / weightspace of the step times (above
1: ours is faster). An epoch of N networks takes N / (networks per second).

The cases, with where each default comes from:

``generalization``
    ``build_predictor("hnp", spec)`` of :mod:`weightspace.tasks.generalization` (its
    :class:`GeneralizationConfig` defaults): :class:`~weightspace.models.InvariantNFN` with HNP
    layers of (16, 16, 5) channels, a ReLU after each, no IO encoding, the mean (HNP) pool and a
    (1000,) head with one output; batch 8; binary cross-entropy of the logit against the test
    accuracy (the task's ``objective``, without augmentation: ``augment`` is off by default).
    Weight space: ``weightspace.data.zoo.ZOO_SPEC``, the CNN of every zoo network (``weightspace
    zoo`` and the Small CNN Zoo alike): three 3x3 convs of 16 channels on 1-channel images, then
    a dense layer to 10 classes. Reference:
    ``HNPLinear`` + ``TupleOp(ReLU)`` three times, ``HNPPool``, flatten, the same head.
``inr-classify``
    ``build_classifier("np", SIREN_SPEC, 10, ...)`` of :mod:`weightspace.tasks.inr_classification`
    with :class:`InrClassifyConfig`'s defaults: 64 Gaussian Fourier features of scale 10
    (``fourier_features="auto"``), a sinusoidal IO encoding, NP layers of (32, 32, 32) channels
    with ReLU, no channel dropout, the NP pool, a (256,) head with dropout 0.2, 10 classes, all
    behind the task's per-tensor :class:`~weightspace.models.Standardized`; batch 32 (the
    :class:`TaskConfig` default); cross-entropy. Reference: ``GaussianFourierFeatureTransform``
    (64, scale 10), ``IOSinusoidalEncoding``, ``NPLinear`` + ``TupleOp(ReLU)`` three times,
    ``NPPool``, flatten, the same head, behind the same ``Standardized`` (scalars per tensor; the
    reference has none of its own). The task's sign-flip augmentation is left out on both sides:
    it is drawn per batch outside the model.
``inr-edit``
    ``build_editor("np", SIREN_SPEC)`` of :mod:`weightspace.tasks.inr_editing`
    (:class:`InrEditConfig`'s defaults): a :class:`~weightspace.models.WeightEdit` (``U + γ ⊙ σ ⊙
    NFN((U - μ) / σ)``, γ starting at 0.01) around an :class:`~weightspace.models.EquivariantNFN`
    with a sinusoidal IO encoding, NP layers of (64, 64, 64) channels with ReLU between them and
    a last NP layer to 1 channel; batch 32 (the :class:`TaskConfig` default); the task's loss,
    :func:`~weightspace.tasks.inr_editing.render_mse` of the edited SIRENs rendered on MNIST's
    28 x 28 grid against random target images (rendering is outside the NFN and the same on both
    sides). Reference: ``IOSinusoidalEncoding`` and four ``NPLinear`` with ``TupleOp(ReLU)``
    between them, inside the same ``WeightEdit``.
``tickets``
    ``MaskVAE(spec, "np", hidden_channels=(8, 8, 8), latent_channels=5)`` of
    :mod:`weightspace.tasks.tickets` (:class:`TicketTrainConfig`'s defaults) on the ticket MLPs'
    space ``ticket_spec(784)`` = 784 → 128 → 128 → 10 (MNIST, ``TicketConfig.hidden``); batch 8;
    the ELBO :func:`~weightspace.models.mask_elbo` (BCE + KL, KL weight 1) of the
    reparameterised posterior sample. Encoder: sinusoidal IO encoding, NP layers 2 → 8 → 8 → 8 →
    10 (mean and log-variance of z); decoder: 1 + 5 → 8 → 8 → 8 → 1. Reference: the same
    :class:`~weightspace.models.MaskVAE` whose two stacks are replaced by ``IOSinusoidalEncoding``
    and ``NPLinear`` stacks of the same channels (:class:`ReferenceMaskVAE`), so the
    standardisation, the z flow, the logit offsets and the loss are the same code on both sides.

What differs, and why the parameter counts do (:data:`PARAM_TOLERANCE`; the test checks each
point):

- The IO encodings differ in size. Ours gives inputs and outputs 13 channels each (2 · 13
  added), the reference sums them with a layer encoding into 13 (13 added), so the first NP
  layer of every stack with an IO encoding has 13 fewer input channels on the reference side
  (as in ``benchmarks/inr_classify_ref.py``). That is why its NP cases have fewer parameters:
  inr-classify about 5 % (154 against 141 channels into the first of three 32-channel layers),
  inr-edit about 8 % (27 against 14 into the first of four), tickets about 24 % (28 against 15
  into the encoder's first 8-channel layer, 32 against 19 into the decoder's), and why its
  first layers do that much less work.
- The layers parameterise the same maps differently. Our ``NPLinear`` and ``HNPLinear`` have
  one weight block per index set and one bias per output tensor: exactly as many parameters as
  the dimension of the maps they span. The reference's ``NPLinear`` spans the same maps with a
  few redundant biases (one per sub-map). Its ``HNPLinear`` has redundant parameters too (its
  broadcast terms read the overall means of W_1, W_L and b_L beside the row or column means
  that determine them, and each sub-map has its own bias), and it lacks one term of ours: W_L
  does not read b_{L-1} per neuron, only through means, so it spans ``n_L · C_in · C_out``
  fewer dimensions. Net, the generalization model has about 14 % more parameters on the
  reference side.
- The Fourier matrices are different random draws, and each library initialises its layers its
  own way. Ours fuses each ReLU into its NF-Layer; the reference applies it as a separate
  ``TupleOp``. Heads, pools, activations and dropouts are the same.

    python benchmarks/task_throughput.py [--cases generalization inr-classify inr-edit tickets]
        [--steps 20] [--warmup 5] [--reps 7] [--batch-size B] [--seed 0] [--threads 1]
        [--device cpu|cuda] [--json out.json]

``--batch-size`` replaces every task's default batch (for quick checks); by default each case
uses its task's. On CUDA each block is timed between two ``torch.cuda.synchronize`` calls.
:func:`~weightspace.train.batched.retain_freed_memory` is called once at the start, as
``weightspace train`` does, so both sides run under the same allocator settings.
"""

from __future__ import annotations

import argparse
import itertools
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from _machine import machine_info, machine_line, sync
from torch import Tensor, nn

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.inr import SIREN_SPEC
from weightspace.data.tickets import ticket_spec
from weightspace.data.zoo import ZOO_SPEC
from weightspace.io import write_json
from weightspace.models import MaskVAE, WeightEdit, mask_elbo
from weightspace.models.standardize import Standardized
from weightspace.tasks.generalization import build_predictor
from weightspace.tasks.inr_classification import NFN_FOURIER_FEATURES, build_classifier
from weightspace.tasks.inr_editing import build_editor, render_mse
from weightspace.testing import random_features
from weightspace.train.batched import retain_freed_memory
from weightspace.train.loop import resolve_device

try:
    import nfn
    from nfn.common import NetworkSpec as RefSpec
    from nfn.common import WeightSpaceFeatures as RefFeatures
    from nfn.common import network_spec_from_wsfeat
except ImportError as exc:  # pragma: no cover - benchmark-only extra
    raise SystemExit(
        "benchmarks/task_throughput.py needs the reference: pip install -e '.[bench]'"
    ) from exc

MODELS = ("weightspace", "nfn")
#: Adam's learning rate, every task's default (``TaskConfig.lr``).
LR = 1e-3
#: Distinct random batches per case, cycled through by both models.
BATCHES = 4
#: The image grid of the editing loss: MNIST's, the paper's editing images.
EDIT_IMAGE = (28, 28)
#: Classes of the INR classifier (MNIST).
NUM_CLASSES = 10
#: The ticket task's defaults (:class:`~weightspace.tasks.tickets.TicketTrainConfig`).
TICKET_HIDDEN = (8, 8, 8)
TICKET_LATENT = 5
#: Largest relative difference of the parameter counts, ``|nfn - ours| / ours``, per case: what
#: the reference's smaller IO encoding removes from each stack's first NP layer, and what its
#: HNP layers' redundant parameters add (see the module docstring).
PARAM_TOLERANCE = {
    "generalization": 0.15,
    "inr-classify": 0.06,
    "inr-edit": 0.09,
    "tickets": 0.25,
}


# ------------------------------------------------------------------ the reference's models
def to_reference(x: WeightSpaceFeatures) -> RefFeatures:
    """The reference's features on the same tensors (no copy): W_i ``(B, C, n_i, n_{i-1}, ...)``."""
    return RefFeatures(list(x.weights), list(x.biases))


def reference_spec(spec: NetworkSpec) -> RefSpec:
    """The reference's network spec of ``spec`` (read from example features, its only way)."""
    example = RefFeatures(
        [torch.zeros(1, 1, *s) for s in spec.weight_shapes],
        [torch.zeros(1, 1, *s) for s in spec.bias_shapes],
    )
    return network_spec_from_wsfeat(example)


def _reference_stack(
    ref_spec: RefSpec,
    layer: type[nn.Module],
    widths: Sequence[int],
    activate_last: bool,
) -> list[nn.Module]:
    """``layer``s mapping ``widths[0]`` channels through ``widths[1:]``, a ReLU after each one
    but (unless ``activate_last``) the last."""
    mods: list[nn.Module] = []
    for n, (c_in, c_out) in enumerate(itertools.pairwise(widths), start=1):
        mods.append(layer(ref_spec, c_in, c_out))
        if activate_last or n < len(widths) - 1:
            mods.append(nfn.layers.TupleOp(nn.ReLU()))
    return mods


class ReferenceInvariant(nn.Module):
    """An invariant NFN built only from ``nfn``'s public layers: [Fourier features] → [IO
    encoding] → NF-Layers with ReLU → pool → flatten → MLP head.

    Takes our :class:`WeightSpaceFeatures` and hands the same tensors to ``nfn`` (a tuple of
    views, free), so both libraries' models run in one training loop and one test kit.

    Parameters
    ----------
    spec:
        The weight space of the input networks.
    mode:
        ``"hnp"`` (``HNPLinear``, ``HNPPool``) or ``"np"`` (``NPLinear``, ``NPPool``).
    hidden_channels, head_hidden, out_features:
        NF-Layer channels, hidden widths of the head (``Linear → ReLU → Dropout`` each, as
        :class:`~weightspace.models.MLPHead`), output width.
    fourier_features, fourier_scale:
        ``GaussianFourierFeatureTransform`` of that mapping size and scale first (``None``: none).
    io_encoding:
        Whether an ``IOSinusoidalEncoding`` follows (NP only).
    dropout:
        The head's dropout (no module when 0, as in ours).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: ``(B, out_features)``
    """

    def __init__(
        self,
        spec: NetworkSpec,
        mode: str,
        hidden_channels: Sequence[int],
        head_hidden: Sequence[int],
        out_features: int,
        *,
        fourier_features: int | None = None,
        fourier_scale: float = 10.0,
        io_encoding: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in ("np", "hnp"):
            raise ValueError(f"ReferenceInvariant: mode must be 'np' or 'hnp', got {mode!r}")
        if io_encoding and mode != "np":
            raise ValueError("ReferenceInvariant: io_encoding=True needs mode 'np'")
        layers = nfn.layers
        ref_spec = reference_spec(spec)
        mods: list[nn.Module] = []
        width = 1
        if fourier_features is not None:
            fourier = layers.GaussianFourierFeatureTransform(
                ref_spec, width, mapping_size=fourier_features, scale=fourier_scale
            )
            mods.append(fourier)
            width = fourier.out_channels
        if io_encoding:
            io = layers.IOSinusoidalEncoding(ref_spec)
            mods.append(io)
            width = io.num_out_chan(width)
        layer = layers.NPLinear if mode == "np" else layers.HNPLinear
        mods += _reference_stack(ref_spec, layer, [width, *hidden_channels], activate_last=True)
        pool = layers.NPPool if mode == "np" else layers.HNPPool
        # The pools give (B, C, pooled per channel); the head gets it flat.
        mods += [pool(ref_spec), nn.Flatten(start_dim=1)]
        width = hidden_channels[-1] * pool.get_num_outs(ref_spec)
        for h in head_hidden:
            mods += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                mods.append(nn.Dropout(dropout))
            width = h
        mods.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*mods)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        return self.net(to_reference(x))


class ReferenceEquivariant(nn.Module):
    """An equivariant NP stack built only from ``nfn``'s public layers: ``IOSinusoidalEncoding``,
    then ``NPLinear`` layers ``in → hidden... → out`` with ``TupleOp(ReLU)`` between them.

    Takes and returns our :class:`WeightSpaceFeatures` (the same tensors, no copy).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with ``in_channels`` channels
    - output: the same shapes with ``out_channels`` channels
    """

    def __init__(
        self,
        spec: NetworkSpec,
        hidden_channels: Sequence[int],
        in_channels: int = 1,
        out_channels: int = 1,
    ) -> None:
        super().__init__()
        self.spec = spec
        ref_spec = reference_spec(spec)
        io = nfn.layers.IOSinusoidalEncoding(ref_spec)
        widths = [io.num_out_chan(in_channels), *hidden_channels, out_channels]
        stack = _reference_stack(ref_spec, nfn.layers.NPLinear, widths, activate_last=False)
        self.net = nn.Sequential(io, *stack)

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        out = self.net(to_reference(x))
        return WeightSpaceFeatures(list(out.weights), list(out.biases), self.spec)


class ReferenceMaskVAE(MaskVAE):
    """:class:`~weightspace.models.MaskVAE` (NP) with both stacks replaced by
    :class:`ReferenceEquivariant` stacks of the same channels.

    Everything around the stacks (standardisation of the init, the channels fed to each stack,
    the split into mean and log-variance, the reparameterised sample, the logit offsets) is
    MaskVAE's own code, so the two sides differ only in their NF-Layers and IO encodings.
    """

    def __init__(
        self,
        spec: NetworkSpec,
        hidden_channels: Sequence[int] = TICKET_HIDDEN,
        latent_channels: int = TICKET_LATENT,
        prior_seed: int | None = 0,
    ) -> None:
        super().__init__(spec, "np", hidden_channels, latent_channels, prior_seed=prior_seed)
        self.encoder = ReferenceEquivariant(spec, hidden_channels, 2, 2 * latent_channels)
        self.decoder = ReferenceEquivariant(spec, hidden_channels, 1 + latent_channels, 1)


# ------------------------------------------------------------------ cases
Batch = tuple[Any, ...]


@dataclass(frozen=True)
class Case:
    """One task's default NFN: its weight space, batch, both models, inputs and loss.

    ``ours``/``reference`` build the model (the caller seeds); ``draw`` makes one batch of
    ``batch_size`` networks (and targets) from a generator; ``loss`` is the task's loss of a
    model on a batch; ``prepare`` sets training statistics as the task's ``prepare`` does.
    """

    name: str
    spec: NetworkSpec
    batch_size: int
    ours: Callable[[], nn.Module]
    reference: Callable[[], nn.Module]
    draw: Callable[[int, torch.Generator], Batch]
    loss: Callable[[nn.Module, Batch], Tensor]
    prepare: Callable[[nn.Module, Batch], None] | None = None


def _features(spec: NetworkSpec, n: int, gen: torch.Generator) -> WeightSpaceFeatures:
    return random_features(spec, n, dtype=torch.float32, generator=gen)


def _generalization() -> Case:
    def draw(n: int, gen: torch.Generator) -> Batch:
        return _features(ZOO_SPEC, n, gen), torch.rand(n, generator=gen)

    def loss(model: nn.Module, batch: Batch) -> Tensor:
        x, accuracy = batch
        return F.binary_cross_entropy_with_logits(model(x).reshape(-1), accuracy)

    return Case(
        "generalization",
        ZOO_SPEC,
        8,
        lambda: build_predictor("hnp", ZOO_SPEC),
        lambda: ReferenceInvariant(ZOO_SPEC, "hnp", (16, 16, 5), (1000,), 1),
        draw,
        loss,
    )


def _inr_classify() -> Case:
    def draw(n: int, gen: torch.Generator) -> Batch:
        return _features(SIREN_SPEC, n, gen), torch.randint(NUM_CLASSES, (n,), generator=gen)

    def loss(model: nn.Module, batch: Batch) -> Tensor:
        x, labels = batch
        return F.cross_entropy(model(x), labels)

    def reference() -> nn.Module:
        net = ReferenceInvariant(
            SIREN_SPEC,
            "np",
            (32, 32, 32),
            (256,),
            NUM_CLASSES,
            fourier_features=NFN_FOURIER_FEATURES,
            fourier_scale=10.0,
            io_encoding=True,
            dropout=0.2,
        )
        return Standardized(net, SIREN_SPEC)

    return Case(
        "inr-classify",
        SIREN_SPEC,
        32,
        lambda: build_classifier(
            "np", SIREN_SPEC, NUM_CLASSES, fourier_features=NFN_FOURIER_FEATURES
        ),
        reference,
        draw,
        loss,
        lambda model, batch: model.set_statistics(batch[0]),
    )


def _inr_edit() -> Case:
    def draw(n: int, gen: torch.Generator) -> Batch:
        targets = torch.rand(n, 1, *EDIT_IMAGE, generator=gen) * 2 - 1
        return _features(SIREN_SPEC, n, gen), targets

    def loss(model: nn.Module, batch: Batch) -> Tensor:
        x, targets = batch
        return render_mse(model(x), targets)

    return Case(
        "inr-edit",
        SIREN_SPEC,
        32,
        lambda: build_editor("np", SIREN_SPEC),
        lambda: WeightEdit(ReferenceEquivariant(SIREN_SPEC, (64, 64, 64)), SIREN_SPEC, 0.01),
        draw,
        loss,
        lambda model, batch: model.set_statistics(batch[0]),
    )


def _tickets() -> Case:
    spec = ticket_spec(784)

    def draw(n: int, gen: torch.Generator) -> Batch:
        init = _features(spec, n, gen)
        kept = [(torch.rand(n, 1, *s, generator=gen) < 0.2).float() for s in spec.weight_shapes]
        mask = WeightSpaceFeatures(kept, [torch.ones_like(b) for b in init.biases], spec)
        return init, mask

    def loss(model: nn.Module, batch: Batch) -> Tensor:
        init, mask = batch
        logits, mean, logvar = model(init, mask)
        return mask_elbo(logits, mask, mean, logvar, kl_weight=1.0)[0]

    def prepare(model: nn.Module, batch: Batch) -> None:
        model.set_statistics(batch[0])
        model.set_mask_prior(batch[1])

    return Case(
        "tickets",
        spec,
        8,
        lambda: MaskVAE(spec, "np", TICKET_HIDDEN, TICKET_LATENT),
        lambda: ReferenceMaskVAE(spec, TICKET_HIDDEN, TICKET_LATENT),
        draw,
        loss,
        prepare,
    )


CASES: dict[str, Callable[[], Case]] = {
    "generalization": _generalization,
    "inr-classify": _inr_classify,
    "inr-edit": _inr_edit,
    "tickets": _tickets,
}


def get_case(name: str) -> Case:
    """The case named ``name`` (one of :data:`CASES`)."""
    if name not in CASES:
        raise ValueError(f"unknown case {name!r}; expected one of {tuple(CASES)}")
    return CASES[name]()


def build(case: Case, name: str, seed: int = 0) -> nn.Module:
    """Model ``name`` (one of :data:`MODELS`) of ``case``, initialised from ``seed``."""
    torch.manual_seed(seed)
    if name == "weightspace":
        return case.ours()
    if name == "nfn":
        return case.reference()
    raise ValueError(f"build: unknown model {name!r}; expected one of {MODELS}")


def num_params(model: nn.Module) -> int:
    """Trainable and frozen parameters of ``model`` (buffers not counted)."""
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------ timing
def _to(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device) for t in batch)


def train_block(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    case: Case,
    batches: Sequence[Batch],
    steps: int,
    device: torch.device,
) -> tuple[float, float]:
    """``steps`` training steps (forward, loss, backward, Adam step) through ``batches`` in
    turn; returns (seconds, the last step's loss)."""
    model.train()
    loss = torch.zeros(())
    sync(device)
    start = time.perf_counter()
    for k in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss = case.loss(model, batches[k % len(batches)])
        loss.backward()
        optimizer.step()
    sync(device)
    return time.perf_counter() - start, float(loss.detach())


def run_case(
    case: Case,
    *,
    steps: int = 20,
    warmup: int = 5,
    reps: int = 7,
    batch_size: int | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Time both models of ``case``, interleaved block by block; returns per-model results and
    the ratio ``nfn / weightspace`` of the median step times."""
    if steps < 1 or reps < 1 or warmup < 0:
        raise ValueError(
            f"run_case: need steps >= 1, reps >= 1 and warmup >= 0, got {steps}, {reps}, {warmup}"
        )
    device = torch.device(device)
    n = case.batch_size if batch_size is None else batch_size
    gen = torch.Generator().manual_seed(seed)
    batches = [_to(case.draw(n, gen), device) for _ in range(BATCHES)]
    models = {name: build(case, name, seed) for name in MODELS}
    for model in models.values():
        if case.prepare is not None:
            case.prepare(model, batches[0])
        model.to(device)
    optims = {name: torch.optim.Adam(m.parameters(), lr=LR) for name, m in models.items()}
    if warmup:
        for name in MODELS:
            train_block(models[name], optims[name], case, batches, warmup, device)
    step_s: dict[str, list[float]] = {name: [] for name in MODELS}
    losses: dict[str, float] = {}
    for r in range(reps):
        for name in MODELS if r % 2 == 0 else MODELS[::-1]:
            # Dropout and the VAE's noise are seeded per block, whatever the interleaving.
            torch.manual_seed(1_000_003 * seed + 7919 * r + MODELS.index(name) + 1)
            seconds, losses[name] = train_block(
                models[name], optims[name], case, batches, steps, device
            )
            step_s[name].append(seconds / steps)
    results = {}
    for name, model in models.items():
        median = statistics.median(step_s[name])
        results[name] = {
            "params": num_params(model),
            "median_step_s": median,
            "networks_per_s": n / median if median > 0 else math.nan,
            "step_s": step_s[name],
            "final_loss": losses[name],
        }
    ours_s, ref_s = results["weightspace"]["median_step_s"], results["nfn"]["median_step_s"]
    return {
        "case": case.name,
        "spec": str(case.spec),
        "batch_size": n,
        "models": results,
        "ratio": ref_s / ours_s if ours_s > 0 else math.nan,
    }


def table(results: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown rows: one per case."""
    ref = f"nfn {getattr(nfn, '__version__', '0.1.2')}"
    rows = [
        f"| case | batch | parameters weightspace / {ref} | weightspace s / step | {ref} s / step "
        f"| weightspace networks / s | {ref} networks / s | ratio nfn / weightspace |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        ours, theirs = res["models"]["weightspace"], res["models"]["nfn"]
        rows.append(
            f"| {res['case']} | {res['batch_size']} | {ours['params']:,} / {theirs['params']:,} "
            f"| {ours['median_step_s']:.4f} | {theirs['median_step_s']:.4f} "
            f"| {ours['networks_per_s']:.1f} | {theirs['networks_per_s']:.1f} "
            f"| {res['ratio']:.2f}x |"
        )
    return rows


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the command line ``argv`` (``sys.argv[1:]`` when ``None``); returns what
    ``--json`` writes: ``command``, ``machine``, ``args`` and one result per case."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), default=list(CASES))
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed block")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per model first")
    parser.add_argument("--reps", type=int, default=7, help="timed blocks per model")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="replace every task's batch (default: its own)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.reps < 1 or args.threads < 1 or args.warmup < 0:
        parser.error("--steps, --reps and --threads must be positive and --warmup >= 0")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be positive, got {args.batch_size}")
    try:
        device = resolve_device(args.device, who="--device")
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    retained = retain_freed_memory()
    command = "python benchmarks/task_throughput.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    machine = machine_info(
        device, nfn=getattr(nfn, "__version__", "0.1.2"), retain_freed_memory=retained
    )
    print(f"$ {command}")
    print(
        f"# {machine_line(machine)}, retain_freed_memory: {retained}; medians of {args.reps} "
        f"interleaved blocks of {args.steps} steps after {args.warmup} warm-up steps",
        flush=True,
    )
    results = []
    for name in dict.fromkeys(args.cases):  # in order, once each
        res = run_case(
            get_case(name),
            steps=args.steps,
            warmup=args.warmup,
            reps=args.reps,
            batch_size=args.batch_size,
            seed=args.seed,
            device=device,
        )
        results.append(res)
        ours, theirs = res["models"]["weightspace"], res["models"]["nfn"]
        print(
            f"# {name}: weightspace {ours['median_step_s']:.4f} s / step, nfn "
            f"{theirs['median_step_s']:.4f} s / step, ratio {res['ratio']:.2f}x",
            flush=True,
        )
    print("\n".join(["", *table(results)]))
    out = {"command": command, "machine": machine, "args": vars(args), "results": results}
    if args.json:
        write_json(out, args.json)
    return out


if __name__ == "__main__":
    main()
