"""Trainers of many small networks at once, and what they share.

Generating a zoo means training thousands of small CNNs, each with its own recipe. Training
them one ``nn.Module`` at a time leaves a CPU idle between tiny kernels, so
:class:`BatchedTrainer` trains a whole chunk at once:

- the forward pass is :func:`weightspace.functional.forward` (one grouped convolution per conv
  layer, one batched matrix product per dense layer) with per-network activations;
- dropout is drawn here, not in ``forward``: :func:`dropout_forward` passes a private hook that
  draws inverted-dropout masks from 8 random bits per entry (:class:`_Dropout`), applies them in
  place with the activation (:class:`_MaskedActivation`) and folds the ``1 / keep`` scale into
  the next layer's weights;
- the update is :class:`weightspace.train.optim.PerNetworkOptimizer` on one ``(B, P)`` tensor.

Devices. The trainer runs where its tensors are (``device=`` moves them). Dropout masks are drawn
on the *generator's* device and copied to the activations' device: with a CPU generator (the
default, and what zoo generation uses) the masks are bit-identical on every device, so a
network's dropout pattern never depends on the GPU's random generator. The price on a GPU is a
CPU draw and a host-to-device copy of one byte per hidden activation per step; a CUDA generator
draws on the GPU instead (faster, but the masks are then those of that device's generator).

:func:`weightspace.train.siren.fit_sirens` is the same idea for SIRENs. Speed figures, and why
steps run in groups of networks, are in BENCHMARKS.md.
"""

from __future__ import annotations

import ctypes
import math
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from weightspace.functional.forward import (
    _CHANNELS_LAST,
    ActivationLike,
    IntOrTuple,
    _forward,
    tanh_,
)
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.symmetry.neurons import generator_device
from weightspace.train.optim import OPTIMIZERS, PerNetworkOptimizer

__all__ = [
    "STEP_GROUP",
    "BatchedTrainer",
    "Recipe",
    "dropout_forward",
    "gather_batches",
    "progress_bar",
    "retain_freed_memory",
    "torch_threads",
]

#: Networks whose forward and backward run together within one training step (see
#: :meth:`BatchedTrainer.step`); bounds the step's largest tensors. Part of the result: the
#: dropout masks are drawn group by group.
STEP_GROUP = 32
# Bound on the first layer's activations of one evaluation batch (floats): 16 MB on the CPU,
# where batches whose tensors stay near the cache's size evaluate faster than 64 MB ones
# (BENCHMARKS.md), and 64 MB elsewhere (fewer launches).
_EVAL_FLOATS_CPU = 2**22
_EVAL_FLOATS = 2**24


# ----------------------------------------------------------------- utilities
def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar; written to a log file (stderr not a terminal) it updates every 30 s, not
    several times a second, so logs of long jobs stay readable."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    return tqdm(**kwargs)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch threads (``None``: unchanged), then restore the count."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
#: The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2).
_MMAP_THRESHOLD = 32 * 2**20
_TRIM_THRESHOLD = 2**30


def retain_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it to the system.

    By default glibc serves blocks above a few MB with fresh ``mmap`` pages and hands them back
    on ``free``, so every large tensor of a training step is first-touched again (page faults and
    zeroing; BENCHMARKS.md has what that cost). Here the main heap serves every block: the mmap
    threshold goes to its maximum (32 MiB) and mmap is switched off for the main heap
    (``M_MMAP_MAX = 0``; without it, blocks above 32 MiB, such as an NF-Layer's features on a
    128-wide MLP, were still mapped and faulted in on every step), and the trim threshold is
    1 GiB, so those blocks are reused. glibc still maps a block that a thread's own arena cannot
    hold. Process-wide and kept for the rest of the process (the memory stays reserved after the
    job, as PyTorch's CUDA caching allocator does); a no-op off glibc, or when the environment
    sets ``WEIGHTSPACE_RETAIN_MEMORY=0``. ``weightspace train``, ``evaluate``, ``zoo`` and
    ``tickets generate`` call it; call it yourself in your own training scripts.

    Returns
    -------
    bool
        Whether the setting took effect.
    """
    if os.environ.get("WEIGHTSPACE_RETAIN_MEMORY", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, …)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(
        bool(mallopt(option, value))
        for option, value in (
            (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
            (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
            (_M_MMAP_MAX, 0),
        )
    )


def gather_batches(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for a ``(B, N)`` index: ``(B, N, *x.shape[1:])``, by whole-row copies.

    ``index_select`` copies whole rows; advanced indexing gathers element by element, which is
    slower on image batches.
    """
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


# ------------------------------------------------------------------- dropout
def dropout_forward(
    features: WeightSpaceFeatures,
    x: Tensor,
    activation: ActivationLike | Sequence[ActivationLike],
    dropout: Tensor,
    *,
    generator: torch.Generator | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
) -> Tensor:
    """:func:`weightspace.functional.forward` in training mode, with per-network dropout.

    Inverted dropout after every hidden activation (every layer but the last), entrywise,
    scaling kept entries by ``1 / (1 - p)``; ``1 - p`` is rounded to a multiple of 2^-8 (masks
    come from 8 random bits per entry, so the rate is within 2^-9 of ``p``). A network with
    p = 0 is left exactly unchanged.

    Parameters
    ----------
    features, x, activation, stride, padding:
        As for :func:`~weightspace.functional.forward`.
    dropout:
        ``(B,)`` drop probabilities in [0, 1), one per network.
    generator:
        Source of the masks (the global generator if ``None``).

    Shapes
    ------
    As :func:`~weightspace.functional.forward`: output ``(B, N, n_L)``.
    """
    hook = _Dropout(dropout, features.batch_size, features, generator)
    return _forward(features, x, activation, stride=stride, padding=padding, hidden=hook)


# Dropout draws 8 random bits per entry: keep probabilities are rounded to multiples of 2^-8.
_KEEP_LEVELS = 2**8


class _Dropout:
    """Per-network inverted dropout: keep probability rounded to ``K / 256``, scale ``256 / K``.

    The hidden hook of :func:`weightspace.functional.forward._forward`. An entry is kept when a
    uniform byte ``v`` in [0, 256) satisfies ``v <= K - 1``, which has probability exactly
    ``K / 256``. A network with p = 0 has ``K = 256``: every entry is kept and scaled by exactly
    1. The bytes come from :func:`_random_bytes`, and the comparison runs on bytes laid out like
    the activations.
    """

    def __init__(
        self,
        dropout: Tensor,
        B: int,
        features: WeightSpaceFeatures,
        generator: torch.Generator | None = None,
    ) -> None:
        if not isinstance(dropout, Tensor) or tuple(dropout.shape) != (B,):
            shape = tuple(dropout.shape) if isinstance(dropout, Tensor) else type(dropout).__name__
            raise ValueError(f"dropout must be a ({B},) tensor, one rate per network, got {shape}")
        if not bool(((dropout >= 0) & (dropout < 1)).all()):
            raise ValueError(
                f"dropout rates must lie in [0, 1), got {dropout.min().item()} .. "
                f"{dropout.max().item()}"
            )
        levels = torch.round((1 - dropout.double()) * _KEEP_LEVELS).clamp(1, _KEEP_LEVELS).long()
        self.generator = generator
        self._set(levels.to(features.device), features.dtype)

    def _set(self, levels: Tensor, dtype: torch.dtype) -> None:
        self.levels = levels
        self.upper = (levels - 1).to(torch.uint8)
        self.scale = (_KEEP_LEVELS / levels.double()).to(dtype)
        self.active = bool((levels < _KEEP_LEVELS).any())

    def select(self, index: slice | Tensor) -> _Dropout:
        """The rates of a subset of the networks (same generator)."""
        sub = object.__new__(_Dropout)
        sub.generator = self.generator
        sub._set(self.levels[index], self.scale.dtype)
        return sub

    def apply(self, t: Tensor, act: Callable[[Tensor], Tensor], axis: int) -> tuple[Tensor, Tensor]:
        """``act(t)`` times a fresh mask (in place for ReLU/tanh), and the scale ``1 / keep``."""
        keep = self.mask(t, axis, self.generator)
        kind = _MASKED_KINDS.get(act)
        if kind is not None:
            return _MaskedActivation.apply(t, keep, kind), self.scale
        return act(t) * keep, self.scale

    def mask(self, t: Tensor, axis: int, generator: torch.Generator | None) -> Tensor:
        """A 0/1 uint8 mask like ``t`` (same layout); kept entries' scaling is :attr:`scale`."""
        n = t.numel()
        bits = _random_bytes(n, t.device, generator)
        # Laid out like t (channels-last included), so that the passes below stream.
        bits = bits.as_strided(t.shape, t.stride()) if _is_dense(t) else bits.view(t.shape)
        return (bits <= _per_network(self.upper, t, axis)).view(torch.uint8)


class _MaskedActivation(torch.autograd.Function):
    """``act(t) * keep`` for ReLU or tanh and a 0/1 ``keep`` (uint8), written over ``t``.

    ``t`` is a fresh layer output that nothing else reads, so the activation and the mask are
    applied in place (no new buffers), and the backward is read off the output alone:

    - ReLU: kept entries are positive exactly where ``t`` is and dropped ones are 0, so the
      gradient passes where the output is positive (one pass, no mask);
    - tanh: with ``y = tanh(t)`` and ``out = y * keep``, ``keep * (1 - y^2) = keep - out^2``
      (``keep`` is 0 or 1).
    """

    @staticmethod
    def forward(ctx: Any, t: Tensor, keep: Tensor, kind: str) -> Tensor:
        ctx.kind = kind
        keep = keep.to(t.dtype)  # a float product is vectorised, a mixed one is not
        if kind == "relu":
            out = t.relu_().mul_(keep)
            ctx.save_for_backward(out)
        else:
            out = tanh_(t).mul_(keep)
            ctx.save_for_backward(out, keep)
        ctx.mark_dirty(t)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        if ctx.kind == "relu":
            (out,) = ctx.saved_tensors
            return torch.ops.aten.threshold_backward(grad, out, 0), None, None
        out, keep = ctx.saved_tensors
        return torch.addcmul(keep, out, out, value=-1).mul_(grad), None, None


#: Activations with an in-place masked form (:class:`_MaskedActivation`).
_MASKED_KINDS: dict[Callable[[Tensor], Tensor], str] = {torch.relu: "relu", torch.tanh: "tanh"}


def _is_dense(t: Tensor) -> bool:
    """Whether ``t`` fills its memory in one of the standard layouts (no gaps, no overlaps)."""
    if t.is_contiguous():
        return True
    fmt = _CHANNELS_LAST.get(t.ndim - 2)
    return fmt is not None and t.is_contiguous(memory_format=fmt)


def _per_network(values: Tensor, t: Tensor, axis: int) -> Tensor:
    """Broadcast ``(B,)`` per-network values against ``t``, whose ``axis`` is network-major.

    ``t.shape[axis]`` is ``B * k`` (k neurons per network, k = 1 for a plain batch axis).
    """
    B = values.shape[0]
    shape = [1] * t.ndim
    shape[axis] = t.shape[axis]
    return values.repeat_interleave(t.shape[axis] // B).reshape(shape)


def _random_bytes(n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """``n`` uniform random bytes on ``device``, drawn on ``generator``'s device (the CPU's
    global generator when ``None``) and copied to ``device``.

    Drawing where the generator lives keeps the bytes those of the generator's stream whatever
    ``device`` is: a CPU generator gives the same masks on the CPU and on a GPU.

    - On a GPU the bytes are 8 per 64-bit word of ``random_`` over the full range.
    - On the CPU, ``generator`` gives one seed per draw, and NumPy's SFC64 fills the words from
      it. torch's CPU ``random_`` (a Mersenne Twister on one core) cost twice as much per word
      alone. Inside a training step it still took twice as long when split over a worker thread:
      the worker shared the second core with a busy-waiting OpenMP thread (BENCHMARKS.md).
    """
    where = generator_device(generator)
    words = -(-n // 8)
    if where.type != "cpu":
        raw = torch.empty(words, dtype=torch.int64, device=where)
        raw.random_(-(2**63), None, generator=generator)
        return raw.view(torch.uint8)[:n].to(device)
    seed = int(torch.empty((), dtype=torch.int64).random_(2**62, generator=generator))
    bytes_ = np.random.SFC64(seed).random_raw(words).view(np.uint8)[:n]
    return torch.from_numpy(bytes_).to(device)


# ------------------------------------------------------------------ the trainer
class Recipe(Protocol):
    """What :class:`BatchedTrainer` reads of one network's recipe (e.g. the zoo's
    :class:`~weightspace.data.zoo.Hyperparameters`)."""

    optimizer: str
    learning_rate: float
    l2: float
    dropout: float
    activation: str


class BatchedTrainer:
    """Train B networks on one weight space at once, each with its own recipe, batches and
    optimizer state.

    The forward pass is :func:`weightspace.functional.forward` with per-network activation and
    (:func:`dropout_forward`) dropout, run over groups of ``step_group`` networks. The update is
    :class:`~weightspace.train.optim.PerNetworkOptimizer`: all parameters live in one ``(B, P)``
    tensor, networks sorted by optimizer, and each rule (SGD, Adam or RMSprop, with per-network
    learning rate and L2) updates its block of rows at once.

    L2 is Keras' ``kernel_regularizer=l2(λ)``: ``λ * Σ W²`` added to the loss for the weights
    (not the biases), so ``g += 2 λ W`` before the optimizer (in torch.optim terms: weight decay
    ``2 λ`` on the weights' parameter group). Dropout is inverted dropout after each hidden
    activation, entrywise, its keep probability rounded to a multiple of 2^-8. Internally
    networks are sorted by activation and optimizer; inputs and outputs keep the caller's order.
    The loss is the cross-entropy of the last layer's outputs (logits).

    Parameters
    ----------
    tensors:
        ``[W1, …, WL, b1, …, bL]``, each ``(B, *shape)`` on ``spec`` (copied).
    hyperparameters:
        B recipes (:class:`Recipe`).
    spec:
        The weight space of every network (conv layers first, as ``forward`` needs).
    stride, padding:
        Of every conv layer.
    generator:
        Source of the dropout masks, drawn on its device and copied to ``device`` (see the
        module docstring): a CPU generator gives the same masks on every device.
    step_group:
        Networks whose forward and backward run together (:data:`STEP_GROUP`); part of the
        result, since masks are drawn group by group.
    optimizer_options:
        Constants of the rules (``adam_betas``, ``adam_eps``, ``rmsprop_alpha``,
        ``rmsprop_eps``), passed to :class:`~weightspace.train.optim.PerNetworkOptimizer`.
    masks:
        ``[M1, …, ML]``, 0/1 tensors shaped like the weights ``(B, *shape)``, or ``None``: sparse
        training (lottery tickets). The weights are multiplied by their masks once, and every
        gradient is masked before the update, so a pruned weight stays exactly 0 under every
        rule (its optimizer state stays 0 too; L2 of a zero weight is 0). Biases are dense.
    device:
        Where the parameters, optimizer state and steps live (``None``: the device of
        ``tensors``). The inputs of :meth:`step` and :meth:`evaluate` must be there too;
        :attr:`tensors` are returned there.

    Shapes
    ------
    - :meth:`step`: ``x`` ``(B, N, n_0, *spatial)`` (one batch per network), ``y`` ``(B, N)``;
      returns the ``(B,)`` training losses before the update.
    - :meth:`evaluate`: ``x`` ``(N, n_0, *spatial)`` shared by all networks, ``y`` ``(N,)``;
      returns per-example losses and correctness, ``(B, N)`` each.
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        hyperparameters: Sequence[Recipe],
        *,
        spec: NetworkSpec,
        stride: IntOrTuple = 1,
        padding: IntOrTuple = 0,
        generator: torch.Generator | None = None,
        step_group: int = STEP_GROUP,
        optimizer_options: dict[str, Any] | None = None,
        masks: Sequence[Tensor] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        B = len(hyperparameters)
        if len(tensors) != len(spec.tensors):
            names = ", ".join(t.name for t in spec.tensors)
            raise ValueError(
                f"BatchedTrainer: expected {len(spec.tensors)} tensors ({names}), got "
                f"{len(tensors)}"
            )
        for t, ts in zip(tensors, spec.tensors):
            if tuple(t.shape) != (B, *ts.shape):
                raise ValueError(
                    f"BatchedTrainer: {ts.name} has shape {tuple(t.shape)}, expected "
                    f"({B}, {', '.join(map(str, ts.shape))}) for {B} networks"
                )
        for n, hp in enumerate(hyperparameters):
            if hp.optimizer not in OPTIMIZERS:
                raise ValueError(
                    f"BatchedTrainer: hyperparameters[{n}].optimizer is {hp.optimizer!r}, "
                    f"expected one of {OPTIMIZERS}"
                )
        self.spec = spec
        self.stride, self.padding = stride, padding
        self.step_group = step_group
        self.batch_size = B
        self.hyperparameters = list(hyperparameters)
        # Internally networks are sorted by activation (each activation then runs on one block of
        # networks) and then by optimizer (each rule updates contiguous rows); inputs and outputs
        # are reordered at the boundary.
        order = sorted(
            range(B), key=lambda b: (hyperparameters[b].activation, hyperparameters[b].optimizer)
        )
        self._identity = order == list(range(B))
        self.device = torch.device(device) if device is not None else tensors[0].device
        self._order = torch.tensor(order, device=self.device)
        self._inverse = torch.argsort(self._order)
        hyperparameters = [hyperparameters[b] for b in order]
        # All of a network's parameters in one row of a (B, P) tensor, so that the update is a
        # few operations on one tensor; the per-layer tensors are views of it, (B, 1, *shape)
        # each (the 1-channel layout of WeightSpaceFeatures). Weights come first, then biases.
        rows = [
            t.detach().to(self.device).index_select(0, self._order).reshape(B, -1) for t in tensors
        ]
        self._flat = torch.cat(rows, dim=1)
        self._sizes = [r.shape[1] for r in rows]
        self._num_weights = sum(self._sizes[: spec.num_layers])
        self._keep: Tensor | None = None
        if masks is not None:
            self._keep = self._mask_rows(masks, tensors)
            self._flat.mul_(self._keep)
        self.params = self._views(self._flat)
        ref = self._flat
        self.activations = [hp.activation for hp in hyperparameters]
        self.generator = generator

        def per_network(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=ref.dtype, device=ref.device)

        self.lr = per_network([hp.learning_rate for hp in hyperparameters])
        self.l2 = per_network([hp.l2 for hp in hyperparameters])
        self.dropout = per_network([hp.dropout for hp in hyperparameters])
        self.optimizer = PerNetworkOptimizer(
            self._flat,
            [hp.optimizer for hp in hyperparameters],
            self.lr,
            weight_decay=2 * self.l2,  # weights carry the L2 penalty, biases do not
            decayed=self._num_weights,
            **(optimizer_options or {}),
        )

    def _mask_rows(self, masks: Sequence[Tensor], tensors: Sequence[Tensor]) -> Tensor:
        """The ``(B, P)`` keep-factors of ``masks`` (internal order; 1 on every bias)."""
        L, B = self.spec.num_layers, self.batch_size
        if len(masks) != L:
            raise ValueError(
                f"BatchedTrainer: expected {L} masks (one per weight tensor), got {len(masks)}"
            )
        rows = []
        for m, t, ts in zip(masks, tensors, self.spec.tensors):
            if tuple(m.shape) != tuple(t.shape):
                raise ValueError(
                    f"BatchedTrainer: mask of {ts.name} has shape {tuple(m.shape)}, expected "
                    f"{tuple(t.shape)}"
                )
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"BatchedTrainer: mask of {ts.name} holds values other than 0/1")
            m = m.detach().to(device=self.device, dtype=self._flat.dtype)
            rows.append(m.index_select(0, self._order).reshape(B, -1))
        ones = self._flat.new_ones(B, self._flat.shape[1] - self._num_weights)
        return torch.cat([*rows, ones], dim=1)

    @property
    def steps(self) -> int:
        """Optimizer steps taken so far."""
        return self.optimizer.steps

    def _views(self, flat: Tensor) -> list[Tensor]:
        """``[W1, …, bL]`` as ``(n, 1, *shape)`` views of the rows of a flat ``(n, P)`` tensor."""
        parts = torch.split(flat, self._sizes, dim=1)
        return [p.view(flat.shape[0], 1, *t.shape) for p, t in zip(parts, self.spec.tensors)]

    @property
    def tensors(self) -> list[Tensor]:
        """Current parameters, ``[W1, …, bL]`` each ``(B, *shape)`` (detached copies)."""
        return [self._outside(p.detach()[:, 0]).clone() for p in self.params]

    def _inside(self, t: Tensor) -> Tensor:
        """Caller's network order → internal order (axis 0)."""
        return t if self._identity else t.index_select(0, self._order)

    def _outside(self, t: Tensor) -> Tensor:
        """Internal network order → caller's order (axis 0)."""
        return t if self._identity else t.index_select(0, self._inverse)

    def features(self) -> WeightSpaceFeatures:
        L = self.spec.num_layers
        return WeightSpaceFeatures(self.params[:L], self.params[L:], self.spec)

    def logits(self, x: Tensor, *, training: bool = False) -> Tensor:
        """``(B, N, n_L)`` outputs; ``x`` is shared ``(N, n_0, …)`` or ``(B, N, n_0, …)``."""
        if x.ndim == len(self.spec.kernel_shapes[0]) + 3:
            x = self._inside(x)
        return self._outside(self._logits(x, training=training))

    def _logits(self, x: Tensor, *, training: bool) -> Tensor:
        return self._forward(self.features(), x, slice(None), training=training)

    def _forward(
        self, features: WeightSpaceFeatures, x: Tensor, group: slice, *, training: bool
    ) -> Tensor:
        """Outputs of the networks ``group`` (internal order) held in ``features``."""
        activations = self.activations[group]
        if not training:
            return _forward(features, x, activations, stride=self.stride, padding=self.padding)
        return dropout_forward(
            features,
            x,
            activations,
            self.dropout[group],
            generator=self.generator,
            stride=self.stride,
            padding=self.padding,
        )

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One optimizer step of every network on its own batch; returns the ``(B,)`` losses.

        Forward and backward run over groups of ``step_group`` networks in turn (networks are
        independent, so each group's gradient is its networks' own), which bounds the size of
        the step's tensors whatever the chunk size. The update then runs on all networks at
        once.
        """
        x, y = self._inside(x), self._inside(y)
        L = self.spec.num_layers
        losses, grads = [], []
        for start in range(0, self.batch_size, self.step_group):
            group = slice(start, start + self.step_group)
            rows = self._flat[group].detach().requires_grad_(True)
            params = self._views(rows)
            features = WeightSpaceFeatures(params[:L], params[L:], self.spec)
            logits = self._forward(features, x[group], group, training=True)
            B, N = logits.shape[:2]
            loss = F.cross_entropy(
                logits.reshape(B * N, -1), y[group].reshape(B * N), reduction="none"
            )
            loss = loss.view(B, N).mean(dim=1)
            (grad,) = torch.autograd.grad(loss.sum(), rows)
            grads.append(grad)
            losses.append(loss.detach())
        grad = torch.cat(grads) if len(grads) > 1 else grads[0]
        if self._keep is not None:
            grad.mul_(self._keep)
        self.optimizer.step(grad)
        return self._outside(torch.cat(losses))

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-example cross-entropy and correctness of every network on shared inputs.

        Returns
        -------
        (loss, correct):
            ``(B, N)`` float losses and ``(B, N)`` bools. Runs in batches bounded in memory.
        """
        N = x.shape[0]
        stride = self.stride if isinstance(self.stride, int) else max(self.stride)
        spatial = math.prod(-(-s // stride) for s in x.shape[2:])  # first conv's output size
        per_image = self.batch_size * self.spec.widths[1] * max(spatial, 1)
        bound = _EVAL_FLOATS_CPU if x.device.type == "cpu" else _EVAL_FLOATS
        step = max(1, bound // per_image)
        losses, correct = [], []
        for start in range(0, N, step):
            xb, yb = x[start : start + step], y[start : start + step]
            logits = self._logits(xb, training=False)  # (B, n, n_L), internal order
            B, n = logits.shape[:2]
            target = yb.expand(B, n)
            loss = F.cross_entropy(
                logits.reshape(B * n, -1), target.reshape(B * n), reduction="none"
            )
            losses.append(loss.view(B, n))
            correct.append(logits.argmax(dim=2) == target)
        return self._outside(torch.cat(losses, dim=1)), self._outside(torch.cat(correct, dim=1))
