"""Generate model zoos of small CNNs (the Small CNN Zoo recipe), many networks at a time.

A zoo is a folder::

    OUT/zoo.json                        format, spec, dataset, seed, save epochs, the ZooConfig
    OUT/chunks/chunk-00000.safetensors  "epoch{e}.W1" … "epoch{e}.b4", each (n_chunk, *shape)
    OUT/chunks/chunk-00000.json         one row per network: hyperparameters, metrics, diverged

Networks follow Unterthiner et al. (2020): three 3x3 stride-2 convolutions with 16 channels,
global average pooling and a dense layer to 10 classes (4970 parameters), with the optimizer,
learning rate, L2, dropout, initialisation, train fraction and activation drawn per network.
Here the convolutions pad by 1 (the released zoo used Keras' ``'valid'`` padding), so that 8x8
images survive three stride-2 layers.

:func:`generate_zoo` trains ``chunk_size`` networks at once (:class:`BatchedTrainer`: one grouped
convolution per layer, optimizers vectorised over networks), writes each finished chunk
atomically, resumes after an interruption and splits chunks across ``torchrun`` processes.
:func:`load_zoo` reads a finished zoo back as a :class:`~weightspace.data.container.Zoo`.
Nothing is pickled: tensors are safetensors, everything else JSON.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from weightspace.data._store import (
    CHUNKS_DIR,
    atomic_write_json,
    atomic_write_safetensors,
    chunk_stem,
    env_int,
    finite_or_none,
    progress_bar,
    read_json,
    require_chunks,
    retain_freed_memory,
    torch_threads,
)
from weightspace.data.container import Zoo, fixed_split
from weightspace.data.images import DATASETS, ImageData, load_images
from weightspace.functional.forward import forward
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

__all__ = [
    "ACTIVATIONS",
    "DATASETS",
    "INITS",
    "OPTIMIZERS",
    "TRAIN_FRACTIONS",
    "ZOO_SPEC",
    "BatchedTrainer",
    "Hyperparameters",
    "ZooConfig",
    "gather_batches",
    "generate_zoo",
    "init_network",
    "load_zoo",
    "network_seed",
    "sample_hyperparameters",
    "zoo_module",
]

ZOO_FORMAT = "weightspace-zoo"
ZOO_VERSION = 1
ZOO_FILE = "zoo.json"

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "rmsprop")
INITS: tuple[str, ...] = ("he_normal", "orthogonal", "glorot_normal", "normal", "truncated_normal")
#: Init families whose scale is the sampled ``init_std``; the others derive it from fan-in/out.
STD_INITS: tuple[str, ...] = ("normal", "truncated_normal")
TRAIN_FRACTIONS: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh")
LEARNING_RATE_RANGE = (5e-4, 5e-2)
L2_RANGE = (1e-8, 1e-2)
DROPOUT_RANGE = (0.0, 0.7)
INIT_STD_RANGE = (1e-3, 0.5)

#: The weight space of every zoo network: 1 → 16 → 16 → 16 channels of 3x3 convs, then 16 → 10.
ZOO_SPEC = NetworkSpec((1, 16, 16, 16, 10), ((3, 3), (3, 3), (3, 3), ()))
STRIDE = 2
PADDING = 1

# Optimizer constants: Keras' defaults (the zoo was trained with Keras) in PyTorch's update rules.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-7
RMSPROP_ALPHA = 0.9
RMSPROP_EPS = 1e-7

# Std of a standard normal truncated to [-2, 2]: Keras divides by it so truncated variance
# scaling keeps the intended variance.
_TRUNCATED_STD = 0.87962566103423978
#: Networks whose forward and backward run together within one training step (see
#: :meth:`BatchedTrainer.step`); bounds the step's largest tensors. Part of the result: the
#: dropout masks are drawn group by group.
STEP_GROUP = 32
# Bound on the activations of one evaluation batch (floats), to keep memory near 64 MB.
_EVAL_FLOATS = 2**24


# ----------------------------------------------------------------- architecture
def zoo_module(activation: str = "relu") -> nn.Sequential:
    """One zoo network as a PyTorch module (dropout left out: it is the identity at test time).

    ``Conv2d(1, 16, 3, 2, 1) → act → Conv2d(16, 16, 3, 2, 1) → act → Conv2d(16, 16, 3, 2, 1) →
    act → AdaptiveAvgPool2d(1) → Flatten → Linear(16, 10)``; its weight space is
    :data:`ZOO_SPEC` (4970 parameters). Load stored weights with
    ``zoo.features.load_into(zoo_module(act), i)``.

    Shapes
    ------
    Input ``(N, 1, H, W)`` images (28x28 and 8x8 both work), output ``(N, 10)`` logits.
    """
    act = _activation_module(activation)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, stride=STRIDE, padding=PADDING),
        act(),
        nn.Conv2d(16, 16, 3, stride=STRIDE, padding=PADDING),
        act(),
        nn.Conv2d(16, 16, 3, stride=STRIDE, padding=PADDING),
        act(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def _activation_module(activation: str) -> type[nn.Module]:
    if activation == "relu":
        return nn.ReLU
    if activation == "tanh":
        return nn.Tanh
    raise ValueError(
        f"zoo_module: unknown activation {activation!r}; expected one of {ACTIVATIONS}"
    )


# --------------------------------------------------------------------- config
@dataclass
class ZooConfig:
    """What :func:`generate_zoo` builds; stored in ``zoo.json`` and checked on resume.

    Attributes
    ----------
    dataset:
        One of :data:`DATASETS` (those of :func:`weightspace.data.images.load_images`).
    networks:
        Number of networks in the zoo.
    out:
        Output folder (not stored: the zoo may move).
    seed:
        Zoo seed (non-negative). Network i depends only on ``(seed, i)`` and its chunk.
    epochs:
        Training epochs. One epoch is ``ceil(n_train / batch_size)`` steps for every network,
        whatever its train fraction (a network on 10 % of the data passes over it ~10 times).
    batch_size:
        Images per step per network.
    chunk_size:
        Networks trained at once and stored per file; chunk k holds networks
        ``[k * chunk_size, (k + 1) * chunk_size)``.
    save_epochs:
        Epochs whose weights and metrics are stored (0 is the initialisation). ``None``: about
        three spread out, always including the last (:attr:`saved_epochs`).
    limit_train, limit_test:
        Use only the first k images of each split (``load_images``' limits).
    """

    dataset: str
    networks: int
    out: str
    seed: int = 0
    epochs: int = 6
    batch_size: int = 32
    chunk_size: int = 64
    save_epochs: tuple[int, ...] | None = None
    limit_train: int | None = None
    limit_test: int | None = None

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"ZooConfig.dataset: unknown dataset {self.dataset!r}; expected one of {DATASETS}"
            )
        self.out = os.fspath(self.out)
        for name, low in (
            ("networks", 1),
            ("seed", 0),
            ("epochs", 1),
            ("batch_size", 1),
            ("chunk_size", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"ZooConfig.{name} must be an int >= {low}, got {value!r}")
        for name in ("limit_train", "limit_test"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"ZooConfig.{name} must be a positive int or None, got {value!r}")
        if self.save_epochs is not None:
            epochs = tuple(self.save_epochs)
            if (
                not epochs
                or any(isinstance(e, bool) or not isinstance(e, int) for e in epochs)
                or list(epochs) != sorted(set(epochs))
                or epochs[0] < 0
                or epochs[-1] > self.epochs
            ):
                raise ValueError(
                    f"ZooConfig.save_epochs must be increasing ints in 0..{self.epochs} (epochs), "
                    f"got {self.save_epochs!r}"
                )
            self.save_epochs = epochs

    @property
    def saved_epochs(self) -> tuple[int, ...]:
        """``save_epochs``, or by default about three epochs spread out, ending at the last."""
        if self.save_epochs is not None:
            return self.save_epochs
        return tuple(sorted({max(1, round(self.epochs * k / 3)) for k in (1, 2, 3)}))

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.networks / self.chunk_size)

    def chunk_range(self, k: int) -> range:
        """Indices of the networks of chunk ``k``."""
        return range(k * self.chunk_size, min((k + 1) * self.chunk_size, self.networks))

    def to_json(self) -> dict[str, Any]:
        """The config as stored in ``zoo.json`` (everything but ``out``)."""
        d = asdict(self)
        del d["out"]
        d["save_epochs"] = None if self.save_epochs is None else list(self.save_epochs)
        return d


# ------------------------------------------------------------ hyperparameters
@dataclass(frozen=True)
class Hyperparameters:
    """The training recipe of one network, drawn by :func:`sample_hyperparameters`.

    ``init_std`` is ``None`` for init families that set their own scale (he/glorot/orthogonal).
    """

    optimizer: str
    learning_rate: float
    l2: float
    dropout: float
    init: str
    init_std: float | None
    train_fraction: float
    activation: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def network_seed(seed: int, index: int) -> int:
    """The 63-bit seed of network ``index`` of a zoo with ``seed``; everything it draws uses it."""
    state = np.random.SeedSequence([seed, index, 0]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _chunk_seed(seed: int, chunk: int) -> int:
    """Seed of the chunk-level randomness (dropout masks)."""
    state = np.random.SeedSequence([seed, chunk, 1]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _draw(seed: int) -> tuple[Hyperparameters, int, int]:
    """Hyperparameters, init seed and data seed of the network whose seed is ``seed``."""
    rng = np.random.default_rng(seed)
    optimizer = OPTIMIZERS[rng.integers(len(OPTIMIZERS))]
    learning_rate = _log_uniform(rng, *LEARNING_RATE_RANGE)
    l2 = _log_uniform(rng, *L2_RANGE)
    dropout = float(rng.uniform(*DROPOUT_RANGE))
    init = INITS[rng.integers(len(INITS))]
    # Always drawn, so every later draw is the same whichever family came up.
    init_std = _log_uniform(rng, *INIT_STD_RANGE)
    train_fraction = TRAIN_FRACTIONS[rng.integers(len(TRAIN_FRACTIONS))]
    activation = ACTIVATIONS[rng.integers(len(ACTIVATIONS))]
    hp = Hyperparameters(
        optimizer=optimizer,
        learning_rate=learning_rate,
        l2=l2,
        dropout=dropout,
        init=init,
        init_std=init_std if init in STD_INITS else None,
        train_fraction=float(train_fraction),
        activation=activation,
    )
    init_seed, data_seed = (int(s) for s in rng.integers(0, 2**63 - 1, size=2))
    return hp, init_seed, data_seed


def sample_hyperparameters(seed: int, index: int) -> Hyperparameters:
    """The hyperparameters of network ``index`` of the zoo with ``seed``.

    Drawn as in the Small CNN Zoo: optimizer uniform over :data:`OPTIMIZERS`; learning rate
    log-uniform in [5e-4, 5e-2]; L2 log-uniform in [1e-8, 1e-2]; dropout uniform in [0, 0.7];
    init family uniform over :data:`INITS`, with a std log-uniform in [1e-3, 0.5] for
    ``normal`` and ``truncated_normal``; train fraction uniform over :data:`TRAIN_FRACTIONS`;
    activation uniform over :data:`ACTIVATIONS`.
    """
    return _draw(network_seed(seed, index))[0]


def init_network(hp: Hyperparameters, generator: torch.Generator) -> list[Tensor]:
    """Initial weights of one network: ``[W1, W2, W3, W4, b1, b2, b3, b4]`` (float32).

    Keras semantics: ``he_normal`` and ``glorot_normal`` are normals truncated at 2 std with the
    variance-scaling std (``sqrt(2 / fan_in)``, ``sqrt(2 / (fan_in + fan_out))``) corrected for
    the truncation; ``orthogonal`` is a QR-orthogonal ``(out, in * k * k)`` matrix (gain 1);
    ``normal`` and ``truncated_normal`` (cut at 2 std) use ``hp.init_std``. Biases are zero.
    Fans of a conv count its kernel: ``fan_in = in * 9``, ``fan_out = out * 9``.
    """
    weights = [
        _init_weight(t.shape, t.kernel_size, hp, generator) for t in ZOO_SPEC.tensors if t.is_weight
    ]
    biases = [torch.zeros(t.shape) for t in ZOO_SPEC.tensors if not t.is_weight]
    return weights + biases


def _init_weight(
    shape: tuple[int, ...], kernel: int, hp: Hyperparameters, g: torch.Generator
) -> Tensor:
    fan_in, fan_out = shape[1] * kernel, shape[0] * kernel
    w = torch.empty(shape)
    if hp.init == "he_normal":
        std = math.sqrt(2.0 / fan_in) / _TRUNCATED_STD
        return nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std, generator=g)
    if hp.init == "glorot_normal":
        std = math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_STD
        return nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std, generator=g)
    if hp.init == "normal":
        return w.normal_(0.0, hp.init_std, generator=g)
    if hp.init == "truncated_normal":
        std = hp.init_std
        return nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std, generator=g)
    if hp.init == "orthogonal":
        rows, cols = shape[0], fan_in
        a = torch.randn(max(rows, cols), min(rows, cols), generator=g, dtype=torch.float64)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))  # unique Q: a Haar-distributed orthogonal matrix
        q = q if rows >= cols else q.T
        return q.to(torch.float32).reshape(shape).contiguous()
    raise ValueError(f"init_network: unknown init family {hp.init!r}; expected one of {INITS}")


# ------------------------------------------------------------- batched training
class BatchedTrainer:
    """Train B zoo networks at once, each with its own recipe, batches and optimizer state.

    The forward pass is :func:`weightspace.functional.forward` (one grouped convolution per
    layer and activation), with per-network activation and dropout, run over groups of
    :data:`STEP_GROUP` networks. The update is vectorised: all weights live in one ``(B, P)``
    tensor, networks sorted by optimizer, and each rule (SGD, Adam or RMSprop, with per-network
    learning rate and L2) updates its block of rows at once.

    Optimizers, with PyTorch's update rules and Keras' default constants:

    - ``sgd``: plain SGD, ``p -= lr * g`` (no momentum; Keras' default).
    - ``adam``: ``torch.optim.Adam`` with betas (0.9, 0.999), eps 1e-7.
    - ``rmsprop``: ``torch.optim.RMSprop`` with alpha 0.9, eps 1e-7, no momentum.

    L2 is Keras' ``kernel_regularizer=l2(λ)``: ``λ * Σ W²`` added to the loss for the weights
    (not the biases), so ``g += 2 λ W`` before the optimizer (in torch.optim terms: weight decay
    ``2 λ`` on the weights' parameter group). Dropout is inverted dropout after each of the three
    hidden activations (before pooling), entrywise, its keep probability rounded to a multiple of
    2^-8. Internally networks are sorted by activation and optimizer; inputs and outputs keep the
    caller's order.

    Parameters
    ----------
    tensors:
        ``[W1, …, W4, b1, …, b4]``, each ``(B, *shape)`` on :data:`ZOO_SPEC` (copied).
    hyperparameters:
        B recipes.
    generator:
        Source of the dropout masks.

    Shapes
    ------
    - :meth:`step`: ``x`` ``(B, N, 1, H, W)`` (one batch per network), ``y`` ``(B, N)``;
      returns the ``(B,)`` training losses before the update.
    - :meth:`evaluate`: ``x`` ``(N, 1, H, W)`` shared by all networks, ``y`` ``(N,)``; returns
      per-example losses and correctness, ``(B, N)`` each.
    """

    def __init__(
        self,
        tensors: Sequence[Tensor],
        hyperparameters: Sequence[Hyperparameters],
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        B = len(hyperparameters)
        if len(tensors) != len(ZOO_SPEC.tensors):
            raise ValueError(
                f"BatchedTrainer: expected {len(ZOO_SPEC.tensors)} tensors (W1..W4, b1..b4), got "
                f"{len(tensors)}"
            )
        for t, spec in zip(tensors, ZOO_SPEC.tensors):
            if tuple(t.shape) != (B, *spec.shape):
                raise ValueError(
                    f"BatchedTrainer: {spec.name} has shape {tuple(t.shape)}, expected "
                    f"({B}, {', '.join(map(str, spec.shape))}) for {B} networks"
                )
        for n, hp in enumerate(hyperparameters):
            if hp.optimizer not in OPTIMIZERS:
                raise ValueError(
                    f"BatchedTrainer: hyperparameters[{n}].optimizer is {hp.optimizer!r}, "
                    f"expected one of {OPTIMIZERS}"
                )
        self.batch_size = B
        self.hyperparameters = list(hyperparameters)
        # Internally networks are sorted by activation (each activation then runs on one block of
        # networks) and then by optimizer (each rule updates contiguous rows); inputs and outputs
        # are reordered at the boundary.
        order = sorted(
            range(B), key=lambda b: (hyperparameters[b].activation, hyperparameters[b].optimizer)
        )
        self._identity = order == list(range(B))
        self._order = torch.tensor(order, device=tensors[0].device)
        self._inverse = torch.argsort(self._order)
        hyperparameters = [hyperparameters[b] for b in order]
        # All of a network's weights in one row of a (B, P) tensor, so that the update is a few
        # operations on one tensor; the per-layer tensors are views of it, (B, 1, *shape) each
        # (the 1-channel layout of WeightSpaceFeatures). Weights come first, then biases.
        rows = [t.detach().index_select(0, self._order).reshape(B, -1) for t in tensors]
        self._flat = torch.cat(rows, dim=1)
        self._sizes = [r.shape[1] for r in rows]
        self._num_weights = sum(self._sizes[: ZOO_SPEC.num_layers])
        self.params = self._views(self._flat)
        ref = self._flat
        self.activations = [hp.activation for hp in hyperparameters]
        self.generator = generator

        def per_network(values: list[float]) -> Tensor:
            return torch.tensor(values, dtype=ref.dtype, device=ref.device)

        self.lr = per_network([hp.learning_rate for hp in hyperparameters])
        self.l2 = per_network([hp.l2 for hp in hyperparameters])
        self.dropout = per_network([hp.dropout for hp in hyperparameters])
        # Runs of consecutive networks sharing an optimizer: (optimizer, rows).
        self._runs: list[tuple[str, slice]] = []
        for b, hp in enumerate(hyperparameters):
            if self._runs and self._runs[-1][0] == hp.optimizer:
                self._runs[-1] = (hp.optimizer, slice(self._runs[-1][1].start, b + 1))
            else:
                self._runs.append((hp.optimizer, slice(b, b + 1)))
        kinds = {hp.optimizer for hp in hyperparameters}
        self._m = torch.zeros_like(ref) if "adam" in kinds else None
        self._v = torch.zeros_like(ref) if "adam" in kinds else None
        self._s = torch.zeros_like(ref) if "rmsprop" in kinds else None
        self.steps = 0

    def _views(self, flat: Tensor) -> list[Tensor]:
        """``[W1, …, b4]`` as ``(n, 1, *shape)`` views of the rows of a flat ``(n, P)`` tensor."""
        parts = torch.split(flat, self._sizes, dim=1)
        return [p.view(flat.shape[0], 1, *t.shape) for p, t in zip(parts, ZOO_SPEC.tensors)]

    @property
    def tensors(self) -> list[Tensor]:
        """Current weights, ``[W1, …, b4]`` each ``(B, *shape)`` (detached copies)."""
        return [self._outside(p.detach()[:, 0]).clone() for p in self.params]

    def _inside(self, t: Tensor) -> Tensor:
        """Caller's network order → internal order (axis 0)."""
        return t if self._identity else t.index_select(0, self._order)

    def _outside(self, t: Tensor) -> Tensor:
        """Internal network order → caller's order (axis 0)."""
        return t if self._identity else t.index_select(0, self._inverse)

    def features(self) -> WeightSpaceFeatures:
        return WeightSpaceFeatures(self.params[:4], self.params[4:], ZOO_SPEC)

    def logits(self, x: Tensor, *, training: bool = False) -> Tensor:
        """``(B, N, 10)`` logits; ``x`` is ``(N, 1, H, W)`` (shared) or ``(B, N, 1, H, W)``."""
        if x.ndim == 5:
            x = self._inside(x)
        return self._outside(self._logits(x, training=training))

    def _logits(self, x: Tensor, *, training: bool) -> Tensor:
        return self._forward(self.features(), x, slice(None), training=training)

    def _forward(
        self, features: WeightSpaceFeatures, x: Tensor, group: slice, *, training: bool
    ) -> Tensor:
        """Logits of the networks ``group`` (internal order) held in ``features``."""
        return forward(
            features,
            x,
            self.activations[group],
            stride=STRIDE,
            padding=PADDING,
            dropout=self.dropout[group],
            training=training,
            generator=self.generator,
        )

    def step(self, x: Tensor, y: Tensor) -> Tensor:
        """One optimizer step of every network on its own batch; returns the ``(B,)`` losses.

        Forward and backward run over groups of :data:`STEP_GROUP` networks in turn (networks
        are independent, so each group's gradient is its networks' own), which bounds the size
        of the step's tensors whatever the chunk size (12.8 MB activations for 28x28 images,
        under glibc's 32 MiB mmap threshold); on 64 networks it measured as fast as one pass.
        The update then runs on all networks at once.
        """
        x, y = self._inside(x), self._inside(y)
        losses, grads = [], []
        for start in range(0, self.batch_size, STEP_GROUP):
            group = slice(start, start + STEP_GROUP)
            rows = self._flat[group].detach().requires_grad_(True)
            params = self._views(rows)
            features = WeightSpaceFeatures(params[:4], params[4:], ZOO_SPEC)
            logits = self._forward(features, x[group], group, training=True)
            B, N = logits.shape[:2]
            loss = F.cross_entropy(
                logits.reshape(B * N, -1), y[group].reshape(B * N), reduction="none"
            )
            loss = loss.view(B, N).mean(dim=1)
            (grad,) = torch.autograd.grad(loss.sum(), rows)
            grads.append(grad)
            losses.append(loss.detach())
        self._update(torch.cat(grads) if len(grads) > 1 else grads[0])
        return self._outside(torch.cat(losses))

    @torch.no_grad()
    def _update(self, g: Tensor) -> None:
        """One step of every network's optimizer; ``g`` is the ``(B, P)`` gradient (consumed)."""
        self.steps += 1
        t = self.steps
        b1, b2 = ADAM_BETAS
        p = self._flat
        w = slice(0, self._num_weights)  # weights carry the L2 penalty, biases do not
        g[:, w].addcmul_(2 * self.l2[:, None], p[:, w])
        for kind, rows in self._runs:
            gk, lr = g[rows], self.lr[rows, None]
            if kind == "sgd":
                direction = gk
            elif kind == "adam":
                assert self._m is not None and self._v is not None
                m, v = self._m[rows], self._v[rows]
                m.mul_(b1).add_(gk, alpha=1 - b1)
                v.mul_(b2).addcmul_(gk, gk, value=1 - b2)
                # torch.optim.Adam: (m / (1 - b1^t)) / (sqrt(v) / sqrt(1 - b2^t) + eps)
                direction = (m / (1 - b1**t)) / (v.sqrt() / math.sqrt(1 - b2**t) + ADAM_EPS)
            else:
                assert self._s is not None
                s = self._s[rows]
                s.mul_(RMSPROP_ALPHA).addcmul_(gk, gk, value=1 - RMSPROP_ALPHA)
                direction = gk / (s.sqrt() + RMSPROP_EPS)
            p[rows].sub_(lr * direction)

    @torch.no_grad()
    def evaluate(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-example cross-entropy and correctness of every network on shared inputs.

        Returns
        -------
        (loss, correct):
            ``(B, N)`` float losses and ``(B, N)`` bools. Runs in batches bounded in memory.
        """
        N = x.shape[0]
        spatial = math.prod(-(-s // STRIDE) for s in x.shape[2:])  # first conv's output size
        per_image = self.batch_size * ZOO_SPEC.widths[1] * max(spatial, 1)
        step = max(1, _EVAL_FLOATS // per_image)
        losses, correct = [], []
        for start in range(0, N, step):
            xb, yb = x[start : start + step], y[start : start + step]
            logits = self._logits(xb, training=False)  # (B, n, 10), internal order
            B, n = logits.shape[:2]
            target = yb.expand(B, n)
            loss = F.cross_entropy(
                logits.reshape(B * n, -1), target.reshape(B * n), reduction="none"
            )
            losses.append(loss.view(B, n))
            correct.append(logits.argmax(dim=2) == target)
        return self._outside(torch.cat(losses, dim=1)), self._outside(torch.cat(correct, dim=1))


def gather_batches(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` for a ``(B, N)`` index: ``(B, N, *x.shape[1:])``, by whole-row copies.

    ``index_select`` copies rows; advanced indexing gathers element by element, several times
    slower on image batches.
    """
    return x.index_select(0, index.reshape(-1)).view(*index.shape, *x.shape[1:])


class _BatchStream:
    """Minibatch indices of one network: its subset, reshuffled on every pass, without gaps."""

    def __init__(self, subset: Tensor, generator: torch.Generator) -> None:
        self.subset = subset
        self.generator = generator
        self.order = subset[:0]

    def take(self, n: int) -> Tensor:
        while self.order.numel() < n:
            perm = torch.randperm(self.subset.numel(), generator=self.generator)
            self.order = torch.cat([self.order, self.subset[perm]])
        out, self.order = self.order[:n], self.order[n:]
        return out


# ----------------------------------------------------------------- generation
@dataclass
class _Network:
    index: int
    seed: int
    hp: Hyperparameters
    init: list[Tensor]
    subset: Tensor
    stream: _BatchStream


def _make_network(seed: int, index: int, n_train: int) -> _Network:
    s = network_seed(seed, index)
    hp, init_seed, data_seed = _draw(s)
    init = init_network(hp, torch.Generator().manual_seed(init_seed))
    g = torch.Generator().manual_seed(data_seed)
    size = max(1, round(hp.train_fraction * n_train))
    subset = torch.randperm(n_train, generator=g)[:size].sort().values
    return _Network(index, s, hp, init, subset, _BatchStream(subset, g))


def _train_chunk(
    config: ZooConfig, k: int, data: ImageData, *, progress: bool, position: int = 0
) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Train chunk ``k``; return its safetensors dict and its JSON rows."""
    n_train = data.train_x.shape[0]
    nets = [_make_network(config.seed, i, n_train) for i in config.chunk_range(k)]
    B = len(nets)
    stacked = [torch.stack([net.init[j] for net in nets]) for j in range(len(ZOO_SPEC.tensors))]
    trainer = BatchedTrainer(
        stacked,
        [net.hp for net in nets],
        generator=torch.Generator().manual_seed(_chunk_seed(config.seed, k)),
    )
    steps = math.ceil(n_train / config.batch_size)
    save = config.saved_epochs
    # Train metrics use each network's own subset: evaluate on the whole split, then mask.
    in_subset = torch.zeros(B, n_train, dtype=torch.bool)
    for b, net in enumerate(nets):
        in_subset[b, net.subset] = True
    diverged_step: list[int | None] = [None] * B
    tensors: dict[str, Tensor] = {}
    metrics: list[list[dict[str, Any]]] = [[] for _ in range(B)]

    def snapshot(epoch: int) -> None:
        current = trainer.tensors
        finite = torch.ones(B, dtype=torch.bool)
        for spec, t in zip(ZOO_SPEC.tensors, current):
            tensors[f"epoch{epoch}.{spec.name}"] = t.to(torch.float32).contiguous()
            finite &= torch.isfinite(t.reshape(B, -1)).all(dim=1)
        tr_loss, tr_ok = trainer.evaluate(data.train_x, data.train_y)
        te_loss, te_ok = trainer.evaluate(data.test_x, data.test_y)
        mask = in_subset.to(tr_loss.dtype)
        tr_loss = (tr_loss * mask).sum(1) / mask.sum(1)
        tr_acc = (tr_ok & in_subset).sum(1) / in_subset.sum(1)
        for b in range(B):
            if not bool(finite[b]) and diverged_step[b] is None:
                diverged_step[b] = trainer.steps
            bad = diverged_step[b] is not None
            metrics[b].append(
                {
                    "epoch": epoch,
                    "train_accuracy": None if bad else float(tr_acc[b]),
                    "train_loss": None if bad else finite_or_none(float(tr_loss[b])),
                    "test_accuracy": None if bad else float(te_ok[b].float().mean()),
                    "test_loss": None if bad else finite_or_none(float(te_loss[b].mean())),
                    "diverged": bad,
                }
            )

    if 0 in save:
        snapshot(0)
    bar = progress_bar(
        total=config.epochs * steps,
        desc=f"chunk {k}",
        leave=False,
        disable=not progress,
        position=position,
    )
    with bar:
        for epoch in range(1, config.epochs + 1):
            idx = torch.stack([net.stream.take(steps * config.batch_size) for net in nets])
            idx = idx.view(B, steps, config.batch_size)
            for s in range(steps):
                batch = idx[:, s]
                loss = trainer.step(gather_batches(data.train_x, batch), data.train_y[batch])
                bad = ~torch.isfinite(loss)
                if bool(bad.any()):
                    for b in bad.nonzero().flatten().tolist():
                        if diverged_step[b] is None:
                            diverged_step[b] = trainer.steps
                bar.update(1)
            if epoch in save:
                snapshot(epoch)
    rows = []
    for b, net in enumerate(nets):
        rows.append(
            {
                "index": net.index,
                "seed": net.seed,
                **net.hp.to_dict(),
                "train_size": int(net.subset.numel()),
                "metrics": metrics[b],
                "diverged": diverged_step[b] is not None,
                "diverged_step": diverged_step[b],
            }
        )
    return tensors, rows


def _zoo_header(config: ZooConfig) -> dict[str, Any]:
    from weightspace import __version__

    return {
        "format": ZOO_FORMAT,
        "version": ZOO_VERSION,
        "spec": {
            "widths": list(ZOO_SPEC.widths),
            "kernel_shapes": [list(k) for k in ZOO_SPEC.kernel_shapes],
        },
        "dataset": config.dataset,
        "seed": config.seed,
        "networks": config.networks,
        "epochs": config.epochs,
        "save_epochs": list(config.saved_epochs),
        "chunk_size": config.chunk_size,
        "num_chunks": config.num_chunks,
        "weightspace_version": __version__,
        "config": config.to_json(),
    }


def _check_same_config(path: Path, stored: dict[str, Any], config: ZooConfig) -> None:
    if stored.get("format") != ZOO_FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a weightspace zoo (format {stored.get('format')!r}, expected "
            f"{ZOO_FORMAT!r}); choose another output folder"
        )
    old = stored.get("config")
    if not isinstance(old, dict):
        raise ValueError(f"{str(path)!r} holds no 'config' object; expected the ZooConfig")
    new = config.to_json()
    names = [f.name for f in fields(ZooConfig) if f.name != "out"]
    diff = [
        f"{n}: stored {old.get(n)!r}, requested {new[n]!r}" for n in names if old.get(n) != new[n]
    ]
    if diff:
        raise ValueError(
            f"{str(path)!r} was generated with another config ({'; '.join(diff)}); use another "
            "output folder or the stored config to resume"
        )


def _chunk_is_complete(folder: Path, config: ZooConfig, k: int) -> bool:
    """Whether chunk ``k`` was fully written for this config (both files, readable, matching)."""
    stem = folder / chunk_stem(k)
    try:
        _read_chunk(stem, k, config.chunk_range(k), config.saved_epochs, config.seed)
    except ValueError:
        return False
    return True


def _clean_temp_files(folder: Path, owned: set[int]) -> None:
    """Remove temp files of chunks this process owns (another rank may be writing the rest)."""
    for tmp in folder.glob(".chunk-*.tmp"):
        match = re.match(r"^\.chunk-(\d+)\.", tmp.name)
        if match and int(match.group(1)) in owned:
            tmp.unlink(missing_ok=True)


def generate_zoo(config: ZooConfig, *, progress: bool = True, threads: int | None = None) -> Path:
    """Train a zoo of :data:`ZOO_SPEC` CNNs chunk by chunk into ``config.out``; resumable.

    Chunks already complete are skipped, so after an interruption the same call continues where
    it stopped (temp files left by a killed run are removed). Under ``torchrun`` (``RANK`` and
    ``WORLD_SIZE`` set) rank r trains the chunks k with ``k % WORLD_SIZE == r`` on one thread
    each and rank 0 writes ``zoo.json``; the merged folder equals a one-process run.

    Parameters
    ----------
    config:
        What to build; ``zoo.json`` records it.
    progress:
        Show tqdm progress bars (chunks, and steps within a chunk).
    threads:
        Torch threads while generating; by default 1 under ``torchrun`` and unchanged otherwise.
        Results are reproducible for a fixed thread count; across counts they agree to ~1e-6.

    Training calls :func:`~weightspace.data._store.retain_freed_memory` first: the process keeps
    freed memory for reuse instead of faulting large tensors' pages in again
    (``WEIGHTSPACE_RETAIN_MEMORY=0`` opts out).

    Returns
    -------
    Path
        The zoo folder.

    Raises
    ------
    ValueError
        For an unknown dataset, a folder that holds a zoo of another config (naming the fields
        that differ) or a non-zoo ``zoo.json``, or bad ``RANK``/``WORLD_SIZE``.
    """
    if not isinstance(config, ZooConfig):
        raise ValueError(f"generate_zoo: config must be a ZooConfig, got {type(config).__name__}")
    if config.dataset not in DATASETS:
        raise ValueError(
            f"generate_zoo: unknown dataset {config.dataset!r}; expected one of {DATASETS}"
        )
    rank, world = env_int("RANK", 0), env_int("WORLD_SIZE", 1)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"generate_zoo: RANK={rank} must lie in 0..WORLD_SIZE-1 (WORLD_SIZE={world})"
        )
    if threads is None and world > 1:
        threads = 1
    out = Path(config.out)
    header_path = out / ZOO_FILE
    if header_path.exists():
        _check_same_config(header_path, read_json(header_path), config)
    chunks = out / CHUNKS_DIR
    chunks.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        for tmp in out.glob(f".{ZOO_FILE}.*.tmp"):
            tmp.unlink(missing_ok=True)
        if not header_path.exists():
            atomic_write_json(header_path, _zoo_header(config))
    owned = [k for k in range(config.num_chunks) if k % world == rank]
    _clean_temp_files(chunks, set(owned))
    todo = [k for k in owned if not _chunk_is_complete(chunks, config, k)]
    if not todo:
        return out

    data = load_images(config.dataset, limit_train=config.limit_train, limit_test=config.limit_test)
    retain_freed_memory()
    with torch_threads(threads):
        bar = progress_bar(
            total=len(owned),
            initial=len(owned) - len(todo),
            desc=f"zoo {config.dataset}" + (f" rank {rank}" if world > 1 else ""),
            unit="chunk",
            disable=not progress,
            position=2 * rank if world > 1 else 0,
        )
        with bar:
            for k in todo:
                tensors, rows = _train_chunk(
                    config, k, data, progress=progress, position=(2 * rank + 1 if world > 1 else 1)
                )
                stem = chunks / chunk_stem(k)
                # Tensors first, rows last: the JSON marks the chunk complete.
                atomic_write_safetensors(
                    stem.with_suffix(".safetensors"),
                    tensors,
                    {"format": ZOO_FORMAT, "chunk": str(k)},
                )
                atomic_write_json(
                    stem.with_suffix(".json"),
                    {"format": ZOO_FORMAT, "version": ZOO_VERSION, "chunk": k, "rows": rows},
                )
                bar.update(1)
    return out


# -------------------------------------------------------------------- loading


def _read_chunk(
    stem: Path, k: int, indices: range, epochs: Sequence[int], seed: int | None = None
) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Read and check both files of chunk ``k``: tensors of ``epochs`` and the rows.

    Raises ``ValueError`` naming the file for anything missing, unreadable or inconsistent.
    """
    from safetensors import SafetensorError, safe_open

    st_path, js_path = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    for p in (st_path, js_path):
        if not p.exists():
            raise ValueError(f"{str(p)!r} is missing")
    doc = read_json(js_path)
    rows = doc.get("rows") if isinstance(doc, dict) else None
    if not isinstance(rows, list) or doc.get("chunk") != k:
        raise ValueError(
            f"{str(js_path)!r}: expected an object with 'chunk': {k} and a 'rows' list"
        )
    n = None
    tensors: dict[str, Tensor] = {}
    try:
        # safe_open checks the header and that the file covers every tensor, reading only the
        # tensors of ``epochs``.
        with safe_open(st_path, framework="pt") as f:
            keys = set(f.keys())
            for epoch in epochs:
                for spec in ZOO_SPEC.tensors:
                    key = f"epoch{epoch}.{spec.name}"
                    if key not in keys:
                        raise ValueError(
                            f"{str(st_path)!r} has no tensor {key!r}; expected epochs "
                            f"{list(epochs)}"
                        )
                    t = f.get_tensor(key)
                    n = t.shape[0] if n is None and t.ndim else n
                    if t.dtype != torch.float32 or tuple(t.shape) != (n, *spec.shape):
                        raise ValueError(
                            f"{str(st_path)!r}: tensor {key!r} is {t.dtype} {tuple(t.shape)}, "
                            f"expected float32 ({n}, {', '.join(map(str, spec.shape))}) for "
                            f"{ZOO_SPEC}; networks of another architecture cannot share a zoo"
                        )
                    tensors[key] = t
    except (SafetensorError, OSError, RuntimeError) as err:
        raise ValueError(
            f"{str(st_path)!r} is truncated or corrupt ({err}); delete it and re-run "
            "generate_zoo with the same config to regenerate it"
        ) from None
    if n != len(rows):
        raise ValueError(
            f"{str(js_path)!r} has {len(rows)} metadata rows but {str(st_path)!r} holds {n} "
            "networks; expected one row per network"
        )
    if len(rows) != len(indices) or [r.get("index") for r in rows] != list(indices):
        raise ValueError(
            f"{str(js_path)!r}: rows have indices {[r.get('index') for r in rows][:8]}…, expected "
            f"networks {indices.start}..{indices.stop - 1} of chunk {k}"
        )
    if seed is not None and [r.get("seed") for r in rows] != [
        network_seed(seed, i) for i in indices
    ]:
        raise ValueError(f"{str(js_path)!r}: network seeds do not belong to zoo seed {seed}")
    return tensors, rows


def load_zoo(path: str | os.PathLike[str], *, epoch: int | None = None, split_seed: int = 0) -> Zoo:
    """Read a zoo that :func:`generate_zoo` wrote.

    Parameters
    ----------
    path:
        The zoo folder.
    epoch:
        Saved epoch to read; the last saved one by default.
    split_seed:
        Seed of :func:`~weightspace.data.container.fixed_split` (70/15/15 over all networks).

    Returns
    -------
    Zoo
        ``features`` ``(N, 1, …)`` float32 on :data:`ZOO_SPEC`; ``test_accuracy`` at ``epoch``
        (NaN for diverged networks, so :meth:`Zoo.finite` drops them); ``metadata`` one flat row
        per network (index, seed, hyperparameters, train size, epoch, train/test accuracy and
        loss with NaN for missing values, diverged); ``info`` with ``source``, ``dataset``,
        ``seed``, ``epoch``, ``num_diverged`` and more.

    Raises
    ------
    ValueError
        Naming the file: a missing or malformed ``zoo.json``, missing chunk files (the zoo is
        unfinished: re-run :func:`generate_zoo` to resume), a truncated or corrupt safetensors
        file, metadata rows that do not match the stored networks, tensors of another
        architecture, or an ``epoch`` that was not saved.
    """
    root = Path(path)
    header_path = root / ZOO_FILE
    if not header_path.exists():
        raise ValueError(
            f"{str(header_path)!r} is missing; expected a zoo folder written by generate_zoo"
        )
    header = read_json(header_path)
    if not isinstance(header, dict) or header.get("format") != ZOO_FORMAT:
        raise ValueError(f"{str(header_path)!r}: expected format {ZOO_FORMAT!r}")
    if header.get("version") != ZOO_VERSION:
        raise ValueError(
            f"{str(header_path)!r}: format version {header.get('version')!r}, expected {ZOO_VERSION}"
        )
    try:
        spec = NetworkSpec(
            tuple(header["spec"]["widths"]),
            tuple(tuple(k) for k in header["spec"]["kernel_shapes"]),
        )
        networks, chunk_size = int(header["networks"]), int(header["chunk_size"])
        save_epochs = [int(e) for e in header["save_epochs"]]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{str(header_path)!r} is malformed: {err}") from None
    if spec != ZOO_SPEC:
        raise ValueError(f"{str(header_path)!r}: spec {spec}, expected {ZOO_SPEC}")
    if epoch is None:
        epoch = save_epochs[-1]
    if epoch not in save_epochs:
        raise ValueError(
            f"{str(header_path)!r}: epoch {epoch!r} was not saved; saved epochs are {save_epochs}"
        )
    num_chunks = math.ceil(networks / chunk_size)
    chunks = require_chunks(
        root, num_chunks, "zoo", "re-run generate_zoo with the same config to resume generation"
    )
    parts: list[list[Tensor]] = [[] for _ in ZOO_SPEC.tensors]
    rows: list[dict[str, Any]] = []
    for k in range(num_chunks):
        indices = range(k * chunk_size, min((k + 1) * chunk_size, networks))
        tensors, chunk_rows = _read_chunk(chunks / chunk_stem(k), k, indices, [epoch])
        for j, spec_t in enumerate(ZOO_SPEC.tensors):
            parts[j].append(tensors[f"epoch{epoch}.{spec_t.name}"])
        rows.extend(chunk_rows)
    stacked = [torch.cat(p).unsqueeze(1) for p in parts]
    features = WeightSpaceFeatures.from_tensors(stacked, ZOO_SPEC)
    metadata = [_flat_row(r, epoch, chunks) for r in rows]
    # A network counts as diverged if its row says so or its stored weights are not finite.
    finite = torch.isfinite(features.flatten()).all(dim=1)
    for m, ok in zip(metadata, finite.tolist()):
        m["diverged"] = bool(m["diverged"]) or not ok
    accuracy = torch.tensor(
        [math.nan if m["diverged"] else m["test_accuracy"] for m in metadata], dtype=torch.float32
    )
    num_diverged = sum(1 for m in metadata if m["diverged"])
    info = {
        "source": ZOO_FORMAT,
        "root": str(root),
        "dataset": header.get("dataset"),
        "seed": header.get("seed"),
        "epoch": epoch,
        "save_epochs": save_epochs,
        "split_seed": split_seed,
        "split_rule": "fixed_split 70/15/15 over all networks",
        "num_networks": networks,
        "num_diverged": num_diverged,
        "weightspace_version": header.get("weightspace_version"),
        "config": header.get("config"),
    }
    return Zoo(ZOO_SPEC, features, accuracy, metadata, fixed_split(networks, split_seed), info)


def _flat_row(row: dict[str, Any], epoch: int, folder: Path) -> dict[str, Any]:
    """One network's JSON row flattened to strings and numbers at ``epoch``."""
    at = [m for m in row.get("metrics", []) if isinstance(m, dict) and m.get("epoch") == epoch]
    if len(at) != 1:
        raise ValueError(
            f"chunk rows in {str(folder)!r}: network {row.get('index')} has no metrics for "
            f"epoch {epoch}"
        )
    flat = {key: value for key, value in row.items() if key not in ("metrics", "diverged")}
    flat["epoch"] = epoch
    for key in ("train_accuracy", "train_loss", "test_accuracy", "test_loss"):
        value = at[0].get(key)
        flat[key] = math.nan if value is None else float(value)
    flat["diverged"] = bool(at[0].get("diverged"))
    flat["diverged_at_end"] = bool(row.get("diverged"))
    # Strings and numbers only: a missing number (init_std of he_normal, …) becomes NaN.
    return {key: math.nan if value is None else value for key, value in flat.items()}
