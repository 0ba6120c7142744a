"""Generate model zoos of small CNNs (the Small CNN Zoo recipe), many networks at a time.

A zoo is a :class:`~weightspace.io.store.ChunkStore` folder::

    OUT/zoo.json                        format, spec, dataset, seed, save epochs, threads, device,
                                        config
    OUT/chunks/chunk-00000.safetensors  "epoch{e}.W1" … "epoch{e}.b4", each (n_chunk, *shape)
    OUT/chunks/chunk-00000.json         one row per network: hyperparameters, metrics, diverged

Networks follow Unterthiner et al. (2020): three 3x3 stride-2 convolutions with 16 channels,
global average pooling and a dense layer to 10 classes (4970 parameters), with the optimizer,
learning rate, L2, dropout, initialisation, train fraction and activation drawn per network.
Here the convolutions pad by 1 (the released zoo used Keras' ``'valid'`` padding), so that 8x8
images survive three stride-2 layers.

:func:`generate_zoo` trains ``chunk_size`` networks at once (:func:`zoo_trainer`, a
:class:`~weightspace.train.batched.BatchedTrainer`: one grouped convolution per layer,
optimizers vectorised over networks), writes each finished chunk atomically, resumes after an
interruption and splits chunks across ``torchrun`` processes. :func:`load_zoo` reads a finished
zoo back as a :class:`~weightspace.data.container.Zoo`. Nothing is pickled: tensors are
safetensors, everything else JSON.

Devices. Training runs on ``ZooConfig.device`` (CUDA when available by default); the images and
the trained tensors live there, and what is stored is moved to the CPU. Every random draw that
defines a network (its hyperparameters, initialisation, data subset, batch order and dropout
masks) is made on CPU generators exactly as on a CPU-only run and then copied to the device, so
on another device a network differs only by float rounding, never by its random choices.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from weightspace.data.container import Zoo, fixed_split
from weightspace.data.images import DATASETS, ImageData, load_images
from weightspace.io.store import (
    ChunkLayout,
    ChunkStore,
    StoreKind,
    header_int,
    header_ints,
    header_spec,
    store_threads,
)
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.train.batched import (
    BatchedTrainer,
    gather_batches,
    progress_bar,
    retain_freed_memory,
    torch_threads,
)
from weightspace.train.distributed import rank_and_world
from weightspace.train.loop import resolve_device

__all__ = [
    "ACTIVATIONS",
    "CHECKPOINTS",
    "DATASETS",
    "INITS",
    "OPTIMIZERS",
    "TRAIN_FRACTIONS",
    "ZOO_FILE",
    "ZOO_SPEC",
    "ZOO_STORE",
    "Hyperparameters",
    "ZooConfig",
    "checkpoint_epochs",
    "gather_batches",
    "generate_zoo",
    "init_network",
    "load_zoo",
    "network_seed",
    "sample_hyperparameters",
    "zoo_module",
    "zoo_trainer",
]

ZOO_FORMAT = "weightspace-zoo"
ZOO_VERSION = 1
ZOO_FILE = "zoo.json"
#: The store :func:`generate_zoo` writes and :func:`load_zoo` reads.
ZOO_STORE = StoreKind(
    format=ZOO_FORMAT,
    version=ZOO_VERSION,
    header=ZOO_FILE,
    count_field="networks",
    item="network",
    noun="zoo",
    writer="generate_zoo",
)

#: Sampled in this order (part of the result); each is a rule of
#: :class:`~weightspace.train.optim.PerNetworkOptimizer`.
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
#: Networks whose forward and backward run together within one training step
#: (:meth:`~weightspace.train.batched.BatchedTrainer.step`). Part of the result: the dropout masks
#: are drawn group by group.
STEP_GROUP = 32


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
    device:
        Where the networks train: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``. Not part of the stored config: ``zoo.json`` records the
        device type in its own field (``"device"``), and a resume on another type is refused.
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
    device: str = "auto"

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
        resolve_device(self.device, check_available=False, who="ZooConfig.device")

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
        """The config as stored in ``zoo.json`` (everything but ``out`` and ``device``: the
        header records the device in its own field, as it does the thread count)."""
        d = asdict(self)
        del d["out"], d["device"]
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
def zoo_trainer(
    tensors: Sequence[Tensor],
    hyperparameters: Sequence[Hyperparameters],
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> BatchedTrainer:
    """A :class:`~weightspace.train.batched.BatchedTrainer` for zoo networks.

    :data:`ZOO_SPEC` with stride 2 and padding 1, steps in groups of :data:`STEP_GROUP`
    networks, and the optimizers of the Small CNN Zoo (trained with Keras), with PyTorch's update
    rules and Keras' default constants:

    - ``sgd``: plain SGD, ``p -= lr * g`` (no momentum; Keras' default).
    - ``adam``: ``torch.optim.Adam`` with betas (0.9, 0.999), eps 1e-7.
    - ``rmsprop``: ``torch.optim.RMSprop`` with alpha 0.9, eps 1e-7, no momentum.

    Dropout follows each of the three hidden activations (before pooling).

    Parameters
    ----------
    tensors:
        ``[W1, …, W4, b1, …, b4]``, each ``(B, *shape)`` on :data:`ZOO_SPEC` (copied).
    hyperparameters:
        B recipes.
    generator:
        Source of the dropout masks (drawn on its device, then copied to ``device``).
    device:
        Where the networks train (``None``: the device of ``tensors``).

    Shapes
    ------
    As :class:`~weightspace.train.batched.BatchedTrainer`: ``step(x, y)`` with ``x``
    ``(B, N, 1, H, W)`` and ``y`` ``(B, N)``; ``evaluate(x, y)`` with shared ``(N, 1, H, W)``.
    """
    return BatchedTrainer(
        tensors,
        hyperparameters,
        spec=ZOO_SPEC,
        stride=STRIDE,
        padding=PADDING,
        generator=generator,
        device=device,
        step_group=STEP_GROUP,
        optimizer_options={
            "adam_betas": ADAM_BETAS,
            "adam_eps": ADAM_EPS,
            "rmsprop_alpha": RMSPROP_ALPHA,
            "rmsprop_eps": RMSPROP_EPS,
        },
    )


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
    """Train chunk ``k`` on the device of ``data``'s images; return its safetensors dict (CPU
    tensors) and its JSON rows.

    Inits, subsets and batch orders are drawn on the CPU and copied (see the module docstring).
    """
    device = data.train_x.device
    n_train = data.train_x.shape[0]
    nets = [_make_network(config.seed, i, n_train) for i in config.chunk_range(k)]
    B = len(nets)
    stacked = [torch.stack([net.init[j] for net in nets]) for j in range(len(ZOO_SPEC.tensors))]
    trainer = zoo_trainer(
        stacked,
        [net.hp for net in nets],
        generator=torch.Generator().manual_seed(_chunk_seed(config.seed, k)),
        device=device,
    )
    steps = math.ceil(n_train / config.batch_size)
    save = config.saved_epochs
    # Train metrics use each network's own subset: evaluate on the whole split, then mask.
    in_subset = torch.zeros(B, n_train, dtype=torch.bool)
    for b, net in enumerate(nets):
        in_subset[b, net.subset] = True
    in_subset = in_subset.to(device)
    diverged_step: list[int | None] = [None] * B
    tensors: dict[str, Tensor] = {}
    metrics: list[list[dict[str, Any]]] = [[] for _ in range(B)]

    def snapshot(epoch: int) -> None:
        current = [t.cpu() for t in trainer.tensors]
        finite = torch.ones(B, dtype=torch.bool)
        for spec, t in zip(ZOO_SPEC.tensors, current):
            tensors[f"epoch{epoch}.{spec.name}"] = t.to(torch.float32).contiguous()
            finite &= torch.isfinite(t.reshape(B, -1)).all(dim=1)
        tr_loss, tr_ok = trainer.evaluate(data.train_x, data.train_y)
        te_loss, te_ok = trainer.evaluate(data.test_x, data.test_y)
        mask = in_subset.to(tr_loss.dtype)
        tr_loss = ((tr_loss * mask).sum(1) / mask.sum(1)).cpu()
        tr_acc = ((tr_ok & in_subset).sum(1) / in_subset.sum(1)).cpu()
        te_loss, te_ok = te_loss.cpu(), te_ok.cpu()
        for b in range(B):
            if not bool(finite[b]) and diverged_step[b] is None:
                diverged_step[b] = trainer.steps
            bad = diverged_step[b] is not None
            metrics[b].append(
                {
                    "epoch": epoch,
                    "train_accuracy": None if bad else float(tr_acc[b]),
                    "train_loss": None if bad else float(tr_loss[b]),
                    "test_accuracy": None if bad else float(te_ok[b].float().mean()),
                    "test_loss": None if bad else float(te_loss[b].mean()),
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
            idx = idx.view(B, steps, config.batch_size).to(device)
            for s in range(steps):
                batch = idx[:, s]
                loss = trainer.step(gather_batches(data.train_x, batch), data.train_y[batch])
                bad = ~torch.isfinite(loss)
                if bool(bad.any()):  # a device sync per step: divergence is checked as it happens
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


def _zoo_header(config: ZooConfig, threads: int, device: str) -> dict[str, Any]:
    from weightspace import __version__

    return {
        "format": ZOO_FORMAT,
        "version": ZOO_VERSION,
        "spec": ZOO_SPEC.to_dict(),
        "dataset": config.dataset,
        "seed": config.seed,
        "networks": config.networks,
        "epochs": config.epochs,
        "save_epochs": list(config.saved_epochs),
        "chunk_size": config.chunk_size,
        "num_chunks": config.num_chunks,
        "threads": threads,
        "device": device,
        "weightspace_version": __version__,
        "config": config.to_json(),
    }


def _tensors(epochs: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """The tensors a chunk stores for ``epochs``: ``"epoch{e}.{name}"`` → one network's shape."""
    return {f"epoch{e}.{t.name}": t.shape for e in epochs for t in ZOO_SPEC.tensors}


def generate_zoo(config: ZooConfig, *, progress: bool = True, threads: int | None = None) -> Path:
    """Train a zoo of :data:`ZOO_SPEC` CNNs chunk by chunk into ``config.out``; resumable.

    Chunks already complete are skipped, so after an interruption the same call continues where
    it stopped (temp files left by a killed run are removed). Under ``torchrun`` (``RANK`` and
    ``WORLD_SIZE`` set) rank r trains the chunks k with ``k % WORLD_SIZE == r`` and rank 0 writes
    ``zoo.json``.

    A chunk's bytes depend on the torch threads of the process that trained it, not on the rank
    or the number of processes (see :mod:`weightspace.io.store`). ``zoo.json`` records the
    count, and a resume with another count is refused; for the same count, a zoo made by any
    number of processes equals a one-process run. Likewise for the device type
    (``config.device``): float results differ across devices, so ``zoo.json`` records it
    (zoos written before it was recorded were made on the CPU) and a resume on another type is
    refused. The random draws are the same on every device (see the module docstring).

    Parameters
    ----------
    config:
        What to build; ``zoo.json`` records it.
    progress:
        Show tqdm progress bars (chunks, and steps within a chunk).
    threads:
        Torch threads while generating; by default 1 under ``torchrun`` and unchanged otherwise.

    Training calls :func:`~weightspace.train.batched.retain_freed_memory` first: the process keeps
    freed memory for reuse instead of faulting large tensors' pages in again
    (``WEIGHTSPACE_RETAIN_MEMORY=0`` opts out).

    Returns
    -------
    Path
        The zoo folder.

    Raises
    ------
    ValueError
        For an unknown dataset; a folder that holds a zoo of another config (naming the fields
        that differ), another thread count or another device type, CUDA asked for where none
        is available, a store of another kind, or is not empty and holds
        no zoo; an ``out`` that is a file; or bad ``RANK``/``WORLD_SIZE``.
    OSError
        When the folder cannot be written (naming the path).
    """
    if not isinstance(config, ZooConfig):
        raise ValueError(f"generate_zoo: config must be a ZooConfig, got {type(config).__name__}")
    if config.dataset not in DATASETS:
        raise ValueError(
            f"generate_zoo: unknown dataset {config.dataset!r}; expected one of {DATASETS}"
        )
    rank, world = rank_and_world()
    threads = store_threads(threads, world)
    device = resolve_device(config.device)
    store = ChunkStore(config.out, ZOO_STORE)
    store.check_resume(config.to_json(), threads, device.type)
    owned = store.begin(_zoo_header(config, threads, device.type), config.num_chunks, rank, world)
    tensors = _tensors(config.saved_epochs)

    def layout(k: int) -> ChunkLayout:
        indices = config.chunk_range(k)
        return ChunkLayout(k, indices, tensors, [network_seed(config.seed, i) for i in indices])

    todo = store.missing(owned, layout)
    if not todo:
        return Path(config.out)
    data = load_images(config.dataset, limit_train=config.limit_train, limit_test=config.limit_test)
    data = data.to(device)
    retain_freed_memory()
    with torch_threads(threads):
        store.fill(
            todo,
            lambda k, position: _train_chunk(config, k, data, progress=progress, position=position),
            total=len(owned),
            desc=f"zoo {config.dataset}",
            progress=progress,
            rank=rank,
            world=world,
        )
    return Path(config.out)


# -------------------------------------------------------------------- loading
#: Which checkpoints :func:`load_zoo` reads: the one at ``epoch`` (the last by default), or all.
CHECKPOINTS: tuple[str, ...] = ("final", "all")


def checkpoint_epochs(epochs: int, k: int) -> tuple[int, ...]:
    """``k`` epochs spread evenly over training, ending at the last: ``round(epochs * j / k)``.

    >>> checkpoint_epochs(10, 5)
    (2, 4, 6, 8, 10)
    """
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= epochs:
        raise ValueError(f"checkpoints must be an int in 1..{epochs} (the epochs), got {k!r}")
    return tuple(sorted({max(1, round(epochs * j / k)) for j in range(1, k + 1)}))


def load_zoo(
    path: str | os.PathLike[str],
    *,
    epoch: int | None = None,
    split_seed: int = 0,
    checkpoints: str = "final",
) -> Zoo:
    """Read a zoo that :func:`generate_zoo` wrote, or that ``weightspace zoo import`` built.

    An imported zoo (``"source": "import"`` in ``zoo.json``) is read by
    :func:`~weightspace.data.zoo_import.read_imported_zoo`: any spec, its target column as
    ``test_accuracy``, the split its CSV recorded (else ``fixed_split`` with ``split_seed``), and
    no epochs. What follows is about generated zoos.

    Parameters
    ----------
    path:
        The zoo folder.
    epoch:
        Saved epoch to read; the last saved one by default.
    split_seed:
        Seed of :func:`~weightspace.data.container.fixed_split` (70/15/15 over all networks).
    checkpoints:
        ``"final"``: one checkpoint per network, at ``epoch``. ``"all"``: every saved epoch of
        every network is an item (epoch-major: all networks at the first saved epoch, then the
        next, …; each row records its ``epoch``); ``epoch`` must be ``None``. The split stays by
        network: it is drawn over networks and every checkpoint of a network lands where the
        network does, so no test network is seen in training at another epoch.

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
        Naming the file: a missing or malformed ``zoo.json`` (naming the field), missing chunk
        files (the zoo is unfinished: re-run :func:`generate_zoo` to resume) or chunks beyond its
        ``networks``, a truncated or corrupt safetensors file, metadata rows that do not match
        the stored networks, metrics that are not numbers or accuracies outside [0, 1] (naming
        the network), tensors of another architecture, an ``epoch`` that was not saved, or
        ``epoch`` given with ``checkpoints="all"``.
    """
    if checkpoints not in CHECKPOINTS:
        raise ValueError(f"load_zoo: checkpoints must be one of {CHECKPOINTS}, got {checkpoints!r}")
    if checkpoints == "final":
        return _load_zoo(path, epoch=epoch, split_seed=split_seed)
    if epoch is not None:
        raise ValueError(
            f"load_zoo: checkpoints='all' reads every saved epoch; got epoch={epoch!r} too"
        )
    last = _load_zoo(path, split_seed=split_seed)
    epochs = last.info.get("save_epochs") or [last.info.get("epoch")]
    if len(epochs) == 1:
        return last
    zoos = [_load_zoo(path, epoch=e, split_seed=split_seed) for e in epochs[:-1]] + [last]
    info = {**last.info, "epoch": None, "checkpoints": "all", "epochs": list(epochs)}
    info["split_rule"] = f"{last.info.get('split_rule')}, by network: all checkpoints together"
    return Zoo.cat(zoos, info)


def _load_zoo(
    path: str | os.PathLike[str], *, epoch: int | None = None, split_seed: int = 0
) -> Zoo:
    """:func:`load_zoo` of one checkpoint per network."""
    from weightspace.data import zoo_import

    store = ChunkStore(path, ZOO_STORE)
    header = store.read_header()
    if header.get("source") == zoo_import.IMPORT_SOURCE:
        return zoo_import.read_imported_zoo(path, epoch=epoch, split_seed=split_seed)
    header_path = store.header_path
    spec = header_spec(header, header_path)
    if spec != ZOO_SPEC:
        raise ValueError(f"{str(header_path)!r}: spec {spec}, expected {ZOO_SPEC}")
    networks = header_int(header, "networks", header_path)
    chunk_size = header_int(header, "chunk_size", header_path)
    save_epochs = header_ints(header, "save_epochs", header_path)
    if epoch is None:
        epoch = save_epochs[-1]
    if epoch not in save_epochs:
        raise ValueError(
            f"{str(header_path)!r}: epoch {epoch!r} was not saved; saved epochs are {save_epochs}"
        )
    num_chunks = store.require_chunks(networks, chunk_size)
    parts: list[list[Tensor]] = [[] for _ in ZOO_SPEC.tensors]
    metadata: list[dict[str, Any]] = []
    for k in range(num_chunks):
        indices = range(k * chunk_size, min((k + 1) * chunk_size, networks))
        tensors, chunk_rows = store.read_chunk(ChunkLayout(k, indices, _tensors([epoch])))
        for j, spec_t in enumerate(ZOO_SPEC.tensors):
            parts[j].append(tensors[f"epoch{epoch}.{spec_t.name}"])
        js_path = store.paths(k)[1]
        metadata.extend(_flat_row(r, epoch, js_path) for r in chunk_rows)
    stacked = [torch.cat(p).unsqueeze(1) for p in parts]
    features = WeightSpaceFeatures.from_tensors(stacked, ZOO_SPEC)
    # A network counts as diverged if its row says so or its stored weights are not finite.
    finite = torch.isfinite(features.flatten()).all(dim=1)
    for m, ok in zip(metadata, finite.tolist()):
        m["diverged"] = bool(m["diverged"]) or not ok
    for k in range(num_chunks):
        for m in metadata[k * chunk_size : (k + 1) * chunk_size]:
            if not m["diverged"] and not math.isfinite(m["test_accuracy"]):
                raise ValueError(
                    f"{str(store.paths(k)[1])!r}: network {m['index']} has no 'test_accuracy' at "
                    f"epoch {epoch} but is not diverged; expected a number in [0, 1]"
                )
    accuracy = torch.tensor(
        [math.nan if m["diverged"] else m["test_accuracy"] for m in metadata], dtype=torch.float32
    )
    num_diverged = sum(1 for m in metadata if m["diverged"])
    info = {
        "source": ZOO_FORMAT,
        "root": str(store.root),
        "dataset": header.get("dataset"),
        "seed": header.get("seed"),
        "epoch": epoch,
        "save_epochs": save_epochs,
        "split_seed": split_seed,
        "split_rule": "fixed_split 70/15/15 over all networks",
        "num_networks": networks,
        "num_diverged": num_diverged,
        "threads": header.get("threads"),
        "weightspace_version": header.get("weightspace_version"),
        "config": header.get("config"),
    }
    return Zoo(ZOO_SPEC, features, accuracy, metadata, fixed_split(networks, split_seed), info)


_ACCURACIES = ("train_accuracy", "test_accuracy")
_LOSSES = ("train_loss", "test_loss")


def _flat_row(row: dict[str, Any], epoch: int, path: Path) -> dict[str, Any]:
    """One network's JSON row flattened to strings and numbers at ``epoch``, values checked."""
    index = row.get("index")
    metrics = row.get("metrics")
    if not isinstance(metrics, list):
        raise ValueError(
            f"{str(path)!r}: network {index} has field 'metrics' {metrics!r:.40}, expected a list "
            "of objects, one per saved epoch"
        )
    at = [m for m in metrics if isinstance(m, dict) and m.get("epoch") == epoch]
    if len(at) != 1:
        raise ValueError(f"{str(path)!r}: network {index} has no metrics for epoch {epoch}")
    flat = {key: value for key, value in row.items() if key not in ("metrics", "diverged")}
    flat["epoch"] = epoch
    for key in _ACCURACIES + _LOSSES:
        value = at[0].get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(
                f"{str(path)!r}: network {index} has {key!r} {value!r} at epoch {epoch}; expected "
                "a number or null"
            )
        value = math.nan if value is None else float(value)
        if key in _ACCURACIES and math.isfinite(value) and not 0 <= value <= 1:
            raise ValueError(
                f"{str(path)!r}: network {index} has {key!r} {value!r} at epoch {epoch}; expected "
                "an accuracy in [0, 1]"
            )
        if key in _LOSSES and math.isfinite(value) and value < 0:
            raise ValueError(
                f"{str(path)!r}: network {index} has {key!r} {value!r} at epoch {epoch}; expected "
                "a loss >= 0"
            )
        flat[key] = value
    flat["diverged"] = bool(at[0].get("diverged"))
    flat["diverged_at_end"] = bool(row.get("diverged"))
    # Strings and numbers only: a missing number (init_std of he_normal, …) becomes NaN.
    return {key: math.nan if value is None else value for key, value in flat.items()}
