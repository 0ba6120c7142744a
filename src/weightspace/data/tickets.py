"""Ticket sets: initialisations of small MLPs with the sparse masks that pruning finds for them.

A ticket set is the data of the paper's winning-ticket experiment (§4). For each network an
initialisation is drawn (seeded, recorded), the network is trained densely, one round of global
magnitude pruning of the trained weights keeps the largest ``1 - sparsity`` of all weight
entries (biases stay dense), and the kept weights are rewound to their initial values and
retrained with the mask fixed (the lottery-ticket rewind to initialisation). A random mask of
the same sparsity (uniform over all weight entries) is retrained the same way, as the control.

The store is a :class:`~weightspace.io.store.ChunkStore` folder::

    OUT/tickets.json                    format, spec, dataset, seed, sparsity, recipe, threads,
                                        device, config
    OUT/chunks/chunk-00000.safetensors  "init.W1" … "init.bL", "mask.W1" … "mask.WL"
    OUT/chunks/chunk-00000.json         one row per network: seed, dense / IMP / random accuracy

:func:`generate_tickets` trains a whole chunk at once with
:class:`~weightspace.train.batched.BatchedTrainer` (its ``masks`` keep pruned weights at exactly
0), resumes after a kill and splits chunks across ``torchrun`` processes.
:func:`train_masked` is the recipe itself, shared with the evaluation of predicted masks, so a
predicted mask trains exactly as the IMP retrain did (same data order per network).
:func:`load_tickets` reads a finished set as a :class:`TicketSet`.

Training runs on ``TicketConfig.device`` (CUDA when available by default). Inits, random masks
and every network's data order are drawn on CPU generators and copied, so they are the same on
every device; what is stored is on the CPU.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from weightspace.data.container import SPLITS
from weightspace.data.images import DATASETS, ImageData, load_images
from weightspace.data.zoo import network_seed
from weightspace.io.store import (
    ChunkLayout,
    ChunkStore,
    StoreKind,
    header_int,
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
from weightspace.train.optim import OPTIMIZERS

__all__ = [
    "MASK_KINDS",
    "TICKET_FILE",
    "TICKET_STORE",
    "TicketConfig",
    "TicketRecipe",
    "TicketSet",
    "check_mask",
    "check_sparsity",
    "generate_tickets",
    "init_mlp",
    "load_tickets",
    "magnitude_mask",
    "random_mask",
    "ticket_spec",
    "train_masked",
]

TICKET_FORMAT = "weightspace-tickets"
TICKET_VERSION = 1
TICKET_FILE = "tickets.json"
#: The store :func:`generate_tickets` writes and :func:`load_tickets` reads.
TICKET_STORE = StoreKind(
    format=TICKET_FORMAT,
    version=TICKET_VERSION,
    header=TICKET_FILE,
    count_field="networks",
    item="network",
    noun="ticket set",
    writer="generate_tickets",
)
#: The masks each network is trained with, as named in the rows (``"{kind}_test_accuracy"``).
MASK_KINDS: tuple[str, ...] = ("dense", "imp", "random")


# ------------------------------------------------------------------ validation
def check_sparsity(sparsity: object, where: str) -> float:
    """``sparsity`` as a float in (0, 1); ``ValueError`` naming ``where`` otherwise."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float):
        raise ValueError(f"{where}: sparsity must be a number in (0, 1), got {sparsity!r}")
    if not 0 < sparsity < 1:
        raise ValueError(
            f"{where}: sparsity must lie in (0, 1) (the pruned share of the weights), got "
            f"{sparsity!r}"
        )
    return float(sparsity)


def check_mask(masks: Sequence[Tensor], spec: NetworkSpec, where: str) -> None:
    """Refuse masks that are not one 0/1 tensor per weight tensor of ``spec``, batched.

    Raises ``ValueError`` naming the tensor: a count, shape or value that does not fit.
    """
    L = spec.num_layers
    if len(masks) != L:
        raise ValueError(f"{where}: expected {L} mask tensors (one per weight), got {len(masks)}")
    for m, ts in zip(masks, spec.tensors[:L]):
        if not isinstance(m, Tensor) or m.ndim != len(ts.shape) + 1 or m.shape[1:] != ts.shape:
            shape = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(
                f"{where}: mask {ts.name} has shape {shape}, expected (B, "
                f"{', '.join(map(str, ts.shape))})"
            )
        if not bool(((m == 0) | (m == 1)).all()):
            bad = m[(m != 0) & (m != 1)]
            raise ValueError(
                f"{where}: mask {ts.name} is not binary (holds {bad.numel()} entries other than "
                f"0 and 1, e.g. {float(bad.flatten()[0])!r})"
            )


def _check_finite(tensors: Sequence[Tensor], spec: NetworkSpec, where: str) -> None:
    for t, ts in zip(tensors, spec.tensors):
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{where}: tensor {ts.name} holds NaN or infinite values")


# ------------------------------------------------------------------ networks
def ticket_spec(inputs: int, hidden: Sequence[int] = (128, 128), classes: int = 10) -> NetworkSpec:
    """The MLP ``inputs → hidden… → classes`` (ReLU) whose tickets a set holds."""
    return NetworkSpec((inputs, *hidden, classes))


def init_mlp(spec: NetworkSpec, generator: torch.Generator) -> list[Tensor]:
    """PyTorch's default ``nn.Linear`` initialisation: weights and biases uniform in
    ``±1 / sqrt(fan_in)``. Returns ``[W1, …, WL, b1, …, bL]``."""
    weights, biases = [], []
    for n_in, n_out in zip(spec.widths[:-1], spec.widths[1:]):
        bound = 1.0 / math.sqrt(n_in)
        weights.append((torch.rand(n_out, n_in, generator=generator) * 2 - 1) * bound)
        biases.append((torch.rand(n_out, generator=generator) * 2 - 1) * bound)
    return weights + biases


def _keep_count(spec: NetworkSpec, sparsity: float) -> int:
    total = sum(math.prod(t.shape) for t in spec.tensors[: spec.num_layers])
    return max(1, round((1 - sparsity) * total))


def _flat_weights(weights: Sequence[Tensor]) -> Tensor:
    return torch.cat([w.reshape(w.shape[0], -1) for w in weights], dim=1)


def _unflatten(flat: Tensor, spec: NetworkSpec) -> list[Tensor]:
    shapes = [t.shape for t in spec.tensors[: spec.num_layers]]
    parts = torch.split(flat, [math.prod(s) for s in shapes], dim=1)
    return [p.reshape(flat.shape[0], *s) for p, s in zip(parts, shapes)]


def top_k_flat(scores: Tensor, k: int) -> Tensor:
    """``(B, P)`` 0/1 rows with ones at each row's ``k`` largest scores (ties: lower index)."""
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]
    out = torch.zeros_like(scores)
    return out.scatter_(1, order, 1.0)


def magnitude_mask(weights: Sequence[Tensor], spec: NetworkSpec, sparsity: float) -> list[Tensor]:
    """Global magnitude pruning: per network, keep the largest ``1 - sparsity`` share of
    ``|w|`` over all weight tensors together (exactly ``round((1 - sparsity) · P)`` entries)."""
    sparsity = check_sparsity(sparsity, "magnitude_mask")
    flat = _flat_weights(weights[: spec.num_layers]).abs()
    return _unflatten(top_k_flat(flat, _keep_count(spec, sparsity)), spec)


def random_mask(spec: NetworkSpec, sparsity: float, seeds: Sequence[int]) -> list[Tensor]:
    """The random control masks of networks with these seeds: the same number of kept entries
    as :func:`magnitude_mask`, drawn uniformly over all weight tensors together from a seed
    derived from each network's seed (so a ticket set's controls can be drawn again)."""
    sparsity = check_sparsity(sparsity, "random_mask")
    k = _keep_count(spec, sparsity)
    total = sum(math.prod(t.shape) for t in spec.tensors[: spec.num_layers])
    rows = torch.zeros(len(seeds), total)
    for b, s in enumerate(seeds):
        g = torch.Generator().manual_seed(_mask_seed(s))
        rows[b, torch.randperm(total, generator=g)[:k]] = 1.0
    return _unflatten(rows, spec)


# ------------------------------------------------------------------ the recipe
@dataclass(frozen=True)
class TicketRecipe:
    """How every network of a ticket set trains: densely, as the IMP retrain, with a random
    mask, and (in evaluation) with a predicted mask. Per-network Adam by default (the
    :class:`~weightspace.train.batched.Recipe` fields, plus epochs and batch size)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    l2: float = 0.0
    dropout: float = 0.0
    activation: str = "relu"

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TicketRecipe.{name} must be a positive int, got {v!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"TicketRecipe.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"
            )
        if not self.learning_rate > 0:
            raise ValueError(
                f"TicketRecipe.learning_rate must be positive, got {self.learning_rate!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _order_seed(seed: int) -> int:
    """Seed of a network's minibatch order (the same for every mask it trains with)."""
    state = np.random.SeedSequence([seed, 1]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def _mask_seed(seed: int) -> int:
    state = np.random.SeedSequence([seed, 2]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def flat_images(data: ImageData) -> tuple[Tensor, Tensor]:
    """Train and test images as ``(N, H·W)`` rows, the MLPs' inputs."""
    return data.train_x.flatten(1), data.test_x.flatten(1)


def train_masked(
    spec: NetworkSpec,
    inits: Sequence[Tensor],
    seeds: Sequence[int],
    data: ImageData,
    recipe: TicketRecipe,
    *,
    masks: Sequence[Tensor] | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
    desc: str = "train",
    position: int = 0,
) -> tuple[list[Tensor], Tensor]:
    """Train B MLPs from ``inits`` (masked when ``masks`` is given) and test them.

    Network b draws its minibatch order from ``seeds[b]`` alone, so it sees the same batches
    whatever its mask and whichever networks share its chunk.

    Parameters
    ----------
    spec:
        The MLP (dense layers, ReLU).
    inits:
        ``[W1, …, bL]``, each ``(B, *shape)``.
    seeds:
        B network seeds (:func:`~weightspace.data.zoo.network_seed`).
    data:
        The images (flattened to rows).
    recipe:
        Epochs, batch size and the optimizer.
    masks:
        ``[M1, …, ML]`` 0/1, each ``(B, *weight shape)``; ``None`` trains densely.
    device:
        Where to train (``None``: the device of ``inits``). The data order is drawn on the CPU
        and copied, so it is the same on every device.

    Returns
    -------
    (tensors, test_accuracy):
        The trained ``[W1, …, bL]`` and the ``(B,)`` test accuracies, on the device of
        ``inits``.

    Raises
    ------
    ValueError
        Inits or masks that do not fit ``spec``, non-binary masks, NaN weights (naming the
        tensor), or images of another size than the MLP's input.
    """
    B = len(seeds)
    train_x, test_x = flat_images(data)
    if train_x.shape[1] != spec.widths[0]:
        raise ValueError(
            f"train_masked: the {data.name!r} images have {train_x.shape[1]} pixels, but the MLPs "
            f"on {spec} take {spec.widths[0]} inputs"
        )
    _check_finite(inits, spec, "train_masked: init")
    if masks is not None:
        check_mask(masks, spec, "train_masked")
    home = inits[0].device
    device = torch.device(device) if device is not None else home
    data = data.to(device)
    train_x, test_x = flat_images(data)
    trainer = BatchedTrainer(
        list(inits),
        [recipe] * B,
        spec=spec,
        masks=None if masks is None else list(masks),
        device=device,
    )
    n_train = train_x.shape[0]
    steps = math.ceil(n_train / recipe.batch_size)
    gens = [torch.Generator().manual_seed(_order_seed(s)) for s in seeds]
    bar = progress_bar(
        total=recipe.epochs * steps, desc=desc, leave=False, disable=not progress, position=position
    )
    with bar:
        for _ in range(recipe.epochs):
            order = torch.stack([torch.randperm(n_train, generator=g) for g in gens]).to(device)
            for s in range(steps):
                batch = order[:, s * recipe.batch_size : (s + 1) * recipe.batch_size]
                trainer.step(gather_batches(train_x, batch), data.train_y[batch])
                bar.update(1)
    _, correct = trainer.evaluate(test_x, data.test_y)
    return [t.to(home) for t in trainer.tensors], correct.float().mean(dim=1).to(home)


# ------------------------------------------------------------------ config
@dataclass(frozen=True)
class TicketConfig:
    """What :func:`generate_tickets` builds.

    Attributes
    ----------
    dataset:
        One of :data:`~weightspace.data.images.DATASETS` (its images' pixels are the inputs).
    networks:
        How many (init, mask) pairs.
    out:
        The output folder.
    seed:
        Seeds every network's init, data order and random mask (:func:`network_seed`).
    sparsity:
        The pruned share of all weight entries, in (0, 1).
    hidden:
        Hidden widths of the MLP.
    recipe:
        The training recipe of every network and mask.
    chunk_size:
        Networks trained (and stored) together.
    limit_train, limit_test:
        Use only the first images of each split (``None``: all).
    device:
        Where the networks train: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``. Not part of the stored config: ``tickets.json`` records the
        device type in its own field (``"device"``), and a resume on another type is refused.
    """

    dataset: str
    networks: int
    out: str
    seed: int = 0
    sparsity: float = 0.95
    hidden: tuple[int, ...] = (128, 128)
    recipe: TicketRecipe = field(default_factory=TicketRecipe)
    chunk_size: int = 25
    limit_train: int | None = None
    limit_test: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"TicketConfig.dataset: unknown dataset {self.dataset!r}; expected one of "
                f"{DATASETS}"
            )
        for name in ("networks", "chunk_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TicketConfig.{name} must be a positive int, got {v!r}")
        check_sparsity(self.sparsity, "TicketConfig")
        object.__setattr__(self, "hidden", tuple(self.hidden))
        if not self.hidden or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden
        ):
            raise ValueError(f"TicketConfig.hidden must hold positive widths, got {self.hidden!r}")
        if not isinstance(self.recipe, TicketRecipe):
            raise ValueError(
                f"TicketConfig.recipe must be a TicketRecipe, got {type(self.recipe).__name__}"
            )
        object.__setattr__(self, "out", os.fspath(self.out))
        resolve_device(self.device, check_available=False, who="TicketConfig.device")

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.networks / self.chunk_size)

    def chunk_range(self, k: int) -> range:
        return range(k * self.chunk_size, min((k + 1) * self.chunk_size, self.networks))

    def to_json(self) -> dict[str, Any]:
        """The fields a resume must match (all but ``out`` and ``device``: the header records the
        device in its own field, as it does the thread count)."""
        d = asdict(self)
        d.pop("out")
        d.pop("device")
        d["hidden"] = list(self.hidden)
        return d


def _spec_of(config: TicketConfig, data: ImageData) -> NetworkSpec:
    return ticket_spec(math.prod(data.image_shape), config.hidden, data.num_classes)


# ------------------------------------------------------------------ generation
def _layer_density(masks: Sequence[Tensor]) -> list[list[float]]:
    """Per network, the kept share of each weight tensor."""
    return [[float(m[b].mean()) for m in masks] for b in range(masks[0].shape[0])]


def _ticket_chunk(
    config: TicketConfig,
    spec: NetworkSpec,
    k: int,
    data: ImageData,
    *,
    device: torch.device | None = None,
    progress: bool,
    position: int = 0,
) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Chunk ``k``: inits, IMP masks, and the dense / IMP / random test accuracies (trained on
    ``device``, returned on the CPU)."""
    indices = list(config.chunk_range(k))
    seeds = [network_seed(config.seed, i) for i in indices]
    inits_each = [init_mlp(spec, torch.Generator().manual_seed(s)) for s in seeds]
    inits = [torch.stack([net[j] for net in inits_each]) for j in range(len(spec.tensors))]
    recipe, L = config.recipe, spec.num_layers

    def run(masks: list[Tensor] | None, what: str) -> tuple[list[Tensor], Tensor]:
        return train_masked(
            spec, inits, seeds, data, recipe, masks=masks, device=device, progress=progress,
            desc=f"chunk {k} {what}", position=position,
        )  # fmt: skip

    trained, dense_acc = run(None, "dense")
    imp = magnitude_mask(trained[:L], spec, config.sparsity)
    _, imp_acc = run(imp, "IMP")
    rand = random_mask(spec, config.sparsity, seeds)
    _, random_acc = run(rand, "random")
    tensors = {f"init.{ts.name}": t.contiguous() for ts, t in zip(spec.tensors, inits)}
    tensors |= {f"mask.{ts.name}": m.contiguous() for ts, m in zip(spec.tensors[:L], imp)}
    density = _layer_density(imp)
    rows = [
        {
            "index": i,
            "seed": s,
            "dense_test_accuracy": float(dense_acc[b]),
            "imp_test_accuracy": float(imp_acc[b]),
            "random_test_accuracy": float(random_acc[b]),
            "mask_density": density[b],
        }
        for b, (i, s) in enumerate(zip(indices, seeds))
    ]
    return tensors, rows


def _header(config: TicketConfig, spec: NetworkSpec, threads: int, device: str) -> dict[str, Any]:
    from weightspace import __version__

    return {
        "format": TICKET_FORMAT,
        "version": TICKET_VERSION,
        "spec": spec.to_dict(),
        "dataset": config.dataset,
        "seed": config.seed,
        "networks": config.networks,
        "sparsity": config.sparsity,
        "recipe": config.recipe.to_dict(),
        "chunk_size": config.chunk_size,
        "num_chunks": config.num_chunks,
        "threads": threads,
        "device": device,
        "weightspace_version": __version__,
        "config": config.to_json(),
    }


def _tensor_shapes(spec: NetworkSpec) -> dict[str, tuple[int, ...]]:
    shapes = {f"init.{t.name}": t.shape for t in spec.tensors}
    return shapes | {f"mask.{t.name}": t.shape for t in spec.tensors[: spec.num_layers]}


def _layout(spec: NetworkSpec, seed: int, chunk_size: int, count: int, k: int) -> ChunkLayout:
    items = range(k * chunk_size, min((k + 1) * chunk_size, count))
    return ChunkLayout(k, items, _tensor_shapes(spec), [network_seed(seed, i) for i in items])


def generate_tickets(
    config: TicketConfig, *, progress: bool = True, threads: int | None = None
) -> Path:
    """Build a ticket set chunk by chunk into ``config.out``; resumable and shardable.

    Every network trains three times with ``config.recipe``: densely, with its IMP mask
    (rewound to the init) and with a random mask of the same sparsity. Chunks already complete
    are skipped; under ``torchrun`` rank r builds the chunks k with ``k % WORLD_SIZE == r``. A
    chunk's bytes depend on the torch threads per process (recorded; a resume with another
    count is refused), not on the number of processes; likewise the device type
    (``config.device``, recorded; sets written before it was recorded were made on the CPU).

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    ValueError
        A bad config, a folder that holds another config or store, or an ``out`` that is a file.
    """
    if not isinstance(config, TicketConfig):
        raise ValueError(
            f"generate_tickets: config must be a TicketConfig, got {type(config).__name__}"
        )
    rank, world = rank_and_world()
    threads = store_threads(threads, world)
    device = resolve_device(config.device)
    store = ChunkStore(config.out, TICKET_STORE)
    store.check_resume(config.to_json(), threads, device.type)
    data = load_images(config.dataset, limit_train=config.limit_train, limit_test=config.limit_test)
    spec = _spec_of(config, data)
    owned = store.begin(_header(config, spec, threads, device.type), config.num_chunks, rank, world)
    todo = store.missing(
        owned, lambda k: _layout(spec, config.seed, config.chunk_size, config.networks, k)
    )
    if not todo:
        return Path(config.out)
    data = data.to(device)
    retain_freed_memory()
    with torch_threads(threads):
        store.fill(
            todo,
            lambda k, pos: _ticket_chunk(
                config, spec, k, data, device=device, progress=progress, position=pos
            ),
            total=len(owned),
            desc=f"tickets {config.dataset}",
            progress=progress,
            rank=rank,
            world=world,
        )
    return Path(config.out)


# ------------------------------------------------------------------ loading
@dataclass
class TicketSet:
    """(init, IMP mask) pairs with their accuracies and a fixed train/val/test split.

    Attributes
    ----------
    inits:
        The initialisations, 1 channel.
    masks:
        The IMP masks as features of the same space, 1 channel: 0/1 on the weights, 1 on every
        bias (biases are never pruned).
    accuracy:
        ``"dense"``, ``"imp"``, ``"random"`` → ``(N,)`` test accuracies.
    seeds:
        ``(N,)`` network seeds (their data order; :func:`train_masked`).
    split:
        ``(N,)`` 0/1/2 for train/val/test (:data:`~weightspace.data.container.SPLITS`).
    info:
        The header: dataset, sparsity, recipe, …
    """

    inits: WeightSpaceFeatures
    masks: WeightSpaceFeatures
    accuracy: dict[str, Tensor]
    seeds: Tensor
    split: Tensor
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.inits.batch_size
        if self.masks.spec != self.inits.spec or self.masks.batch_size != n:
            raise ValueError("TicketSet: masks must have the inits' spec and count")
        check_mask([w[:, 0] for w in self.masks.weights], self.spec, "TicketSet")
        for name, t in (("seeds", self.seeds), ("split", self.split)):
            if tuple(t.shape) != (n,):
                raise ValueError(f"TicketSet: {name} has shape {tuple(t.shape)}, expected ({n},)")

    @property
    def spec(self) -> NetworkSpec:
        return self.inits.spec

    @property
    def sparsity(self) -> float:
        return float(self.info["sparsity"])

    @property
    def recipe(self) -> TicketRecipe:
        return TicketRecipe(**self.info["recipe"])

    def __len__(self) -> int:
        return self.inits.batch_size

    def subset(self, index: Tensor | Sequence[int]) -> TicketSet:
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = index.to(torch.long)
        return TicketSet(
            self.inits[index],
            self.masks[index],
            {k: v[index] for k, v in self.accuracy.items()},
            self.seeds[index],
            self.split[index],
            dict(self.info),
        )

    def part(self, name: str) -> TicketSet:
        if name not in SPLITS:
            raise ValueError(
                f"TicketSet.part: unknown split {name!r}; expected one of {tuple(SPLITS)}"
            )
        return self.subset(self.split == SPLITS[name])

    def images(self) -> ImageData:
        """The images the networks were trained on (the header's dataset and limits)."""
        c = self.info.get("config") or {}
        return load_images(
            str(self.info["dataset"]),
            limit_train=c.get("limit_train"),
            limit_test=c.get("limit_test"),
        )


def ticket_split(n: int, seed: int, n_test: int, n_val: int) -> Tensor:
    """A seeded split of ``n`` networks: ``n_test`` test, ``n_val`` validation, the rest train."""
    if n_test + n_val >= n:
        raise ValueError(
            f"ticket set of {n} networks: {n_test} test and {n_val} validation networks leave "
            "none to train on; generate more networks or hold out fewer"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    split = torch.full((n,), SPLITS["train"], dtype=torch.long)
    split[order[:n_test]] = SPLITS["test"]
    split[order[n_test : n_test + n_val]] = SPLITS["val"]
    return split


def load_tickets(
    path: str | os.PathLike[str], *, split_seed: int = 0, n_test: int = 50, n_val: int = 25
) -> TicketSet:
    """Read a ticket set that :func:`generate_tickets` wrote.

    ``n_test`` networks (the paper's 50 held-out inits) and ``n_val`` validation networks are
    drawn by a permutation seeded with ``split_seed``; the rest train.

    Raises
    ------
    ValueError
        Naming the file: a missing or foreign header, missing or truncated chunks, masks that
        are not binary, NaN weights, or too few networks for the split.
    """
    store = ChunkStore(path, TICKET_STORE)
    header = store.read_header()
    where = str(store.header_path)
    spec = header_spec(header, store.header_path)
    count = header_int(header, "networks", store.header_path)
    chunk_size = header_int(header, "chunk_size", store.header_path)
    seed = header.get("seed")
    if not isinstance(seed, int):
        raise ValueError(f"{where!r}: field 'seed' must be an int, got {seed!r}")
    check_sparsity(header.get("sparsity"), where)
    try:
        TicketRecipe(**header.get("recipe", {}))
    except TypeError as err:
        raise ValueError(f"{where!r}: field 'recipe' is not a ticket recipe ({err})") from None
    num_chunks = store.require_chunks(count, chunk_size)
    parts: dict[str, list[Tensor]] = {}
    rows: list[dict[str, Any]] = []
    for k in range(num_chunks):
        tensors, chunk_rows = store.read_chunk(_layout(spec, seed, chunk_size, count, k))
        for name, t in tensors.items():
            parts.setdefault(name, []).append(t)
        for row in chunk_rows:
            for kind in MASK_KINDS:
                v = row.get(f"{kind}_test_accuracy")
                if isinstance(v, bool) or not isinstance(v, int | float):
                    raise ValueError(
                        f"{str(store.paths(k)[1])!r}: network {row.get('index')} has no numeric "
                        f"'{kind}_test_accuracy'"
                    )
        rows.extend(chunk_rows)
    full = {name: torch.cat(ts) for name, ts in parts.items()}
    L = spec.num_layers
    init = [full[f"init.{t.name}"] for t in spec.tensors]
    _check_finite(init, spec, f"ticket set {str(path)!r}: init")
    masks = [full[f"mask.{t.name}"] for t in spec.tensors[:L]]
    check_mask(masks, spec, f"ticket set {str(path)!r}")
    inits = WeightSpaceFeatures(
        [w[:, None] for w in init[:L]], [b[:, None] for b in init[L:]], spec
    )
    ones = [torch.ones(count, 1, *t.shape) for t in spec.tensors[L:]]
    mask_features = WeightSpaceFeatures([m[:, None] for m in masks], ones, spec)
    accuracy = {
        kind: torch.tensor([float(r[f"{kind}_test_accuracy"]) for r in rows]) for kind in MASK_KINDS
    }
    seeds = torch.tensor([int(r["seed"]) for r in rows], dtype=torch.long)
    info = {
        k: header.get(k) for k in ("dataset", "seed", "sparsity", "recipe", "config", "networks")
    }
    info |= {"root": os.fspath(path), "split_seed": split_seed}
    return TicketSet(
        inits, mask_features, accuracy, seeds, ticket_split(count, split_seed, n_test, n_val), info
    )
