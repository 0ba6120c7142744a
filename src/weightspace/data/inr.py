"""Implicit neural representations: one SIREN per image, fitted many at a time and stored.

A SIREN (Sitzmann et al. 2020) maps a pixel's coordinates to its value. Here, as in the NFN
paper's INR experiments, it is ``2 → 32 → 32 → 1`` with sine activations and ω0 = 30.

The ω0 convention
-----------------
Stored weights follow the SIREN reference implementation (and the NFN paper's released SIREN
datasets): every hidden layer computes ``sin(ω0 · (W h + b))`` and the output layer is linear,
``W h + b``. So ω0 is applied *inside the activation*, never folded into the weights::

    forward(features, pixel_grid(H, W), activation=siren_activation)  # siren_activation(t) = sin(30 t)

reproduces the image, and so does :func:`siren_module` (``Linear → Sine(30) → Linear → Sine(30)
→ Linear``) loaded with the same weights. :func:`siren_activation` and :data:`OMEGA_0` are the one
place this convention lives; :func:`render` applies it.

Coordinates and values
----------------------
:func:`pixel_grid` gives the ``(H * W, 2)`` inputs: coordinate 0 runs over rows (top -1 to
bottom +1), coordinate 1 over columns (left -1 to right +1), pixels in row-major order (the
``indexing="ij"`` grid of the reference code). Pixel values are in [-1, 1]. PSNR is computed on
these [-1, 1] values with peak-to-peak 2: ``PSNR = 10 log10(2² / MSE)`` (:func:`psnr`).

Fitting and storage
-------------------
:func:`weightspace.train.siren.fit_sirens` fits many SIRENs at once. :func:`fit_inrs` fits one
per image of a dataset into a :class:`~weightspace.io.store.ChunkStore` (resumable, shardable
under ``torchrun``) on ``InrConfig.device`` (CUDA when available by default: the images and the
weights being fitted live there, what is stored is moved to the CPU; every initialisation is
drawn on a CPU generator and copied, so a SIREN's starting point is the same on every device)::

    OUT/inrs.json                       format, spec, dataset, seed, classes, threads, device,
                                        InrConfig
    OUT/chunks/chunk-00000.safetensors  "W1" … "W3", "b1" … "b3", each (n_chunk, *shape) float32
    OUT/chunks/chunk-00000.json         one row per INR: index, label, image_index, source,
                                        split, copy, seed, psnr

:func:`load_inrs` reads it back as an :class:`InrDataset`. Nothing is pickled.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from weightspace import viz
from weightspace.data.container import SPLITS
from weightspace.functional.forward import forward
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
from weightspace.train.distributed import rank_and_world
from weightspace.train.loop import resolve_device

if TYPE_CHECKING:
    from weightspace.data.images import ImageData

__all__ = [
    "DATASETS",
    "DEFAULT_LR",
    "DEFAULT_STEPS",
    "INR_FILE",
    "INR_FORMAT",
    "INR_STORE",
    "OMEGA_0",
    "SIREN_SPEC",
    "InrConfig",
    "InrDataset",
    "Sine",
    "fit_inrs",
    "init_sirens",
    "inr_seed",
    "load_inrs",
    "pixel_grid",
    "psnr",
    "render",
    "show_grid",
    "siren_activation",
    "siren_module",
    "source_images",
]

INR_FORMAT = "weightspace-inrs"
INR_VERSION = 1
INR_FILE = "inrs.json"
#: The store :func:`fit_inrs` writes and :func:`load_inrs` reads.
INR_STORE = StoreKind(
    format=INR_FORMAT,
    version=INR_VERSION,
    header=INR_FILE,
    count_field="num_inrs",
    item="INR",
    noun="INR folder",
    writer="fit_inrs",
)

#: Datasets whose images :func:`fit_inrs` can fit (see :func:`weightspace.data.images.load_images`).
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "digits")

#: The SIREN frequency: hidden layers compute ``sin(OMEGA_0 * (W h + b))``.
OMEGA_0 = 30.0
#: The weight space of every SIREN here: 2 coordinates → 32 → 32 → 1 pixel value.
SIREN_SPEC = NetworkSpec((2, 32, 32, 1))
#: Adam steps of :class:`InrConfig` (full image per step); BENCHMARKS.md has the PSNR they reach.
DEFAULT_STEPS = 500
#: Adam learning rate of :class:`InrConfig`.
DEFAULT_LR = 1e-3

_PEAK_TO_PEAK = 2.0  # pixel values live in [-1, 1]
_SOURCES = ("train", "test")  # which split of the image dataset an INR's image comes from


# ------------------------------------------------------------------ convention
def siren_activation(t: Tensor) -> Tensor:
    """The SIREN hidden activation of this package: ``sin(OMEGA_0 * t)``.

    Pass it to :func:`weightspace.functional.forward` to run stored SIRENs: the output layer stays
    linear (``forward`` applies the activation after every layer but the last).
    """
    return torch.sin(OMEGA_0 * t)


class Sine(nn.Module):
    """``sin(w0 * x)``, entrywise and parameter-free (so it fits :class:`NetworkSpec`).

    Shapes
    ------
    - input and output: any shape
    """

    def __init__(self, w0: float = OMEGA_0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0:g}"


def siren_module(*, generator: torch.Generator | None = None) -> nn.Sequential:
    """One SIREN as a PyTorch module, with the SIREN initialisation.

    ``Linear(2, 32) → Sine(30) → Linear(32, 32) → Sine(30) → Linear(32, 1)``: its weight space is
    :data:`SIREN_SPEC` and its forward equals :func:`render` / ``forward(…, siren_activation)``
    on the same weights. Initialised as :func:`init_sirens` (from ``generator`` if given).

    Shapes
    ------
    Input ``(N, 2)`` coordinates (:func:`pixel_grid`), output ``(N, 1)`` pixel values.
    """
    module = nn.Sequential(
        nn.Linear(2, 32), Sine(OMEGA_0), nn.Linear(32, 32), Sine(OMEGA_0), nn.Linear(32, 1)
    )
    tensors = init_sirens(1, generator=generator)
    WeightSpaceFeatures.from_tensors([t.unsqueeze(1) for t in tensors]).load_into(module)
    return module


def init_sirens(
    n: int,
    *,
    generator: torch.Generator | None = None,
    spec: NetworkSpec = SIREN_SPEC,
    dtype: torch.dtype = torch.float32,
) -> list[Tensor]:
    """SIREN initialisation (Sitzmann et al. 2020) of ``n`` networks, drawn one after another.

    For layer i with ``n_{i-1}`` inputs: the first layer's weights are U(-1/n_0, 1/n_0); later
    layers' weights (the linear output layer included) U(-√(6/n_{i-1})/ω0, √(6/n_{i-1})/ω0).
    Biases keep ``nn.Linear``'s default, U(-1/√n_{i-1}, 1/√n_{i-1}), as the reference
    implementation does (it re-initialises only the weights).

    Parameters
    ----------
    n:
        Number of networks.
    generator:
        Source of the draws (the global generator if ``None``). Per network, layer by layer: W_i,
        then b_i.
    spec:
        A dense weight space.
    dtype:
        Of the returned tensors (draws are made in float64, then cast).

    Returns
    -------
    list[Tensor]
        ``[W_1, …, W_L, b_1, …, b_L]``, each ``(n, *shape)``.
    """
    if spec.is_cnn:
        raise ValueError(f"init_sirens: {spec} has conv layers; a SIREN is dense")
    per_net: list[list[Tensor]] = []
    for _ in range(n):
        weights, biases = [], []
        for i in range(1, spec.num_layers + 1):
            n_in, n_out = spec.widths[i - 1], spec.widths[i]
            w_bound = 1.0 / n_in if i == 1 else math.sqrt(6.0 / n_in) / OMEGA_0
            b_bound = 1.0 / math.sqrt(n_in)
            weights.append(_uniform((n_out, n_in), w_bound, generator))
            biases.append(_uniform((n_out,), b_bound, generator))
        per_net.append(weights + biases)
    return [torch.stack(col).to(dtype) for col in zip(*per_net)]


def _uniform(shape: tuple[int, ...], bound: float, g: torch.Generator | None) -> Tensor:
    return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound


def pixel_grid(
    height: int,
    width: int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """The SIREN inputs of an ``height x width`` image: ``(H * W, 2)`` coordinates in [-1, 1]².

    Row-major pixel order; coordinate 0 is the row (``linspace(-1, 1, H)``), coordinate 1 the
    column (``linspace(-1, 1, W)``), as the reference code's ``indexing="ij"`` grid.
    """
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"pixel_grid: {name} must be a positive int, got {value!r}")
    rows = torch.linspace(-1, 1, height, dtype=dtype, device=device)
    cols = torch.linspace(-1, 1, width, dtype=dtype, device=device)
    grid = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1)
    return grid.reshape(height * width, 2)


def psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """Peak signal-to-noise ratio of each image, for values in [-1, 1] (peak-to-peak 2).

    ``PSNR = 10 log10(2² / MSE)`` with the MSE over all but the first axis, computed in float64.

    Shapes
    ------
    - prediction, target: ``(B, …)``, the same shape
    - returns ``(B,)`` float64 (``inf`` for a perfect fit)
    """
    if prediction.shape != target.shape or prediction.ndim < 1:
        raise ValueError(
            f"psnr: prediction has shape {tuple(prediction.shape)} and target "
            f"{tuple(target.shape)}; expected the same shape (B, …)"
        )
    diff = prediction.detach().double() - target.detach().double()
    mse = diff.square().reshape(diff.shape[0], -1).mean(dim=1)
    return 10.0 * torch.log10(_PEAK_TO_PEAK**2 / mse)


def render(features: WeightSpaceFeatures, height: int, width: int) -> Tensor:
    """Render the images that SIRENs describe; differentiable in the weights.

    Runs :func:`weightspace.functional.forward` with :func:`siren_activation` on
    :func:`pixel_grid` (see the module docstring for the convention).

    Parameters
    ----------
    features:
        B dense networks with 2 inputs and C outputs, 1 channel.
    height, width:
        Image size.

    Returns
    -------
    Tensor
        ``(B, C, H, W)`` pixel values (not clipped).
    """
    spec = features.spec
    if spec.is_cnn or spec.widths[0] != 2:
        raise ValueError(
            f"render: features are on {spec}; expected a dense network with 2 inputs (a SIREN)"
        )
    grid = pixel_grid(height, width, dtype=features.dtype, device=features.device)
    out = forward(features, grid, siren_activation)  # (B, H * W, C)
    return out.transpose(1, 2).reshape(features.batch_size, spec.widths[-1], height, width)


# ------------------------------------------------------------------ config
@dataclass
class InrConfig:
    """What :func:`fit_inrs` builds; stored in ``inrs.json`` and checked on resume.

    Attributes
    ----------
    dataset:
        One of :data:`DATASETS`.
    out:
        Output folder (not stored: the folder may move).
    seed:
        Non-negative. INR j's initialisation depends only on ``(seed, source, image, copy)``
        (:func:`inr_seed`), so chunk k's content depends only on the seed and k.
    limit:
        Use only the first ``limit`` images of each split (train and test); ``None`` for all.
    augment:
        Extra fits of each *training* image (``split == "train"``), each from another seed
        (copies 1..augment). Validation and test images get one fit.
    steps, lr:
        Adam steps on the full image, and learning rate (``python benchmarks/inr.py`` reports
        the PSNR they reach; BENCHMARKS.md records it).
    batch_networks:
        SIRENs fitted at once (speed and memory). Results agree across values to float32
        rounding (~1e-7), but are bit-identical only for the same value, so a resumed run must
        keep it. The same holds for the fitter's compiled and eager kernels
        (:mod:`weightspace.train.fused`, ``WEIGHTSPACE_COMPILE``): a run resumed with the other
        setting gives chunks that differ from a one-go run by rounding only.
    chunk_size:
        INRs per chunk file; chunk k holds INRs ``[k * chunk_size, (k + 1) * chunk_size)``.
    val_fraction:
        The last ``floor(val_fraction * n_train)`` training images (by index) form the
        validation split; they and their INRs are never augmented.
    device:
        Where the SIRENs are fitted: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``,
        ``"cuda"`` or ``"cuda:N"``. Not part of the stored config: ``inrs.json`` records the
        device type in its own field (``"device"``), and a resume on another type is refused.

    Notes
    -----
    INR order: every training image (copy 0, by index), then every test image (copy 0), then
    for each copy c = 1..augment the ``"train"`` images again.
    """

    dataset: str
    out: str
    seed: int = 0
    limit: int | None = None
    augment: int = 0
    steps: int = DEFAULT_STEPS
    lr: float = DEFAULT_LR
    batch_networks: int = 32
    chunk_size: int = 256
    val_fraction: float = 0.1
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(
                f"InrConfig.dataset: unknown dataset {self.dataset!r}; expected one of {DATASETS}"
            )
        self.out = os.fspath(self.out)
        for name, low in (
            ("seed", 0),
            ("augment", 0),
            ("steps", 1),
            ("batch_networks", 1),
            ("chunk_size", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"InrConfig.{name} must be an int >= {low}, got {value!r}")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1
        ):
            raise ValueError(f"InrConfig.limit must be a positive int or None, got {self.limit!r}")
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, int | float)
            or not math.isfinite(self.lr)
            or self.lr <= 0
        ):
            raise ValueError(f"InrConfig.lr must be a positive finite number, got {self.lr!r}")
        self.lr = float(self.lr)
        if (
            isinstance(self.val_fraction, bool)
            or not isinstance(self.val_fraction, int | float)
            or not 0 <= self.val_fraction < 1
        ):
            raise ValueError(
                f"InrConfig.val_fraction must be a number in [0, 1), got {self.val_fraction!r}"
            )
        self.val_fraction = float(self.val_fraction)
        resolve_device(self.device, check_available=False, who="InrConfig.device")

    def to_json(self) -> dict[str, Any]:
        """The config as stored in ``inrs.json`` (everything but ``out`` and ``device``: the
        header records the device in its own field, as it does the thread count)."""
        d = asdict(self)
        del d["out"], d["device"]
        return d


def inr_seed(seed: int, source: str, image_index: int, copy: int) -> int:
    """The 63-bit initialisation seed of the fit of image ``image_index`` of split ``source``.

    ``source`` is ``"train"`` or ``"test"`` (the split of the image dataset), ``copy`` 0 for the
    first fit and 1..K for augmentation copies.
    """
    if source not in _SOURCES:
        raise ValueError(f"inr_seed: source must be one of {_SOURCES}, got {source!r}")
    state = np.random.SeedSequence(
        [seed, _SOURCES.index(source), image_index, copy]
    ).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


@dataclass(frozen=True)
class _Item:
    """One INR to fit: which image, which copy, which split."""

    index: int
    source: str
    image_index: int
    copy: int
    split: str


def _plan(n_train: int, n_test: int, config: InrConfig) -> list[_Item]:
    """Every INR of a run, in storage order (see :class:`InrConfig`)."""
    n_val = math.floor(config.val_fraction * n_train)
    first_val = n_train - n_val
    keys: list[tuple[str, int, int, str]] = []
    for i in range(n_train):
        keys.append(("train", i, 0, "val" if i >= first_val else "train"))
    keys += [("test", i, 0, "test") for i in range(n_test)]
    for c in range(1, config.augment + 1):
        keys += [("train", i, c, "train") for i in range(first_val)]
    return [_Item(j, *key) for j, key in enumerate(keys)]


# ------------------------------------------------------------------ dataset
@dataclass
class InrDataset:
    """N fitted SIRENs with their labels: the input of INR classification.

    Attributes
    ----------
    spec:
        The weight space (:data:`SIREN_SPEC` for this package's SIRENs).
    features:
        ``WeightSpaceFeatures`` with batch N and 1 channel (float32).
    labels:
        ``(N,)`` int64 class labels.
    split:
        ``(N,)`` int64 codes from :data:`weightspace.data.container.SPLITS`.
    metadata:
        One dict per INR (label, image index, split, augmentation copy, seed, PSNR, …).
    info:
        Provenance: source, dataset, classes, seed, config, package version, …
    """

    spec: NetworkSpec
    features: WeightSpaceFeatures
    labels: Tensor
    split: Tensor
    metadata: list[dict[str, Any]]
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.features, WeightSpaceFeatures):
            raise ValueError(
                f"InrDataset: features must be WeightSpaceFeatures, got {type(self.features).__name__}"
            )
        n = self.features.batch_size
        if self.features.spec != self.spec:
            raise ValueError(
                f"InrDataset: features are on {self.features.spec}, spec says {self.spec}"
            )
        if self.features.channels != 1:
            raise ValueError(
                f"InrDataset: features must have 1 channel, got {self.features.channels}"
            )
        for name in ("labels", "split"):
            value = getattr(self, name)
            if not isinstance(value, Tensor) or tuple(value.shape) != (n,):
                shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
                raise ValueError(f"InrDataset: {name} has shape {shape}, expected ({n},)")
            if value.dtype != torch.int64:
                raise ValueError(f"InrDataset: {name} is {value.dtype}, expected torch.int64")
        if len(self.metadata) != n:
            raise ValueError(f"InrDataset: metadata has {len(self.metadata)} rows for {n} INRs")
        if n and int(self.labels.min()) < 0:
            raise ValueError(f"InrDataset: labels hold {int(self.labels.min())}; expected >= 0")
        bad = set(self.split.unique().tolist()) - set(SPLITS.values())
        if bad:
            raise ValueError(
                f"InrDataset: split holds unknown codes {sorted(bad)}; expected {SPLITS}"
            )

    def __len__(self) -> int:
        return self.features.batch_size

    @property
    def num_classes(self) -> int:
        """Number of classes: ``info["classes"]`` if known, else the largest label + 1."""
        classes = self.info.get("classes")
        if classes:
            return len(classes)
        return int(self.labels.max()) + 1 if len(self) else 0

    def subset(self, index: Tensor | Sequence[int]) -> InrDataset:
        """The INRs at ``index`` (a LongTensor, list of ints or boolean mask)."""
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = index.to(torch.long)
        rows = [self.metadata[i] for i in index.tolist()]
        return InrDataset(
            self.spec,
            self.features[index],
            self.labels[index],
            self.split[index],
            rows,
            dict(self.info),
        )

    def part(self, name: str) -> InrDataset:
        """The ``"train"``, ``"val"`` or ``"test"`` INRs."""
        if name not in SPLITS:
            raise ValueError(
                f"InrDataset.part: unknown split {name!r}; expected one of {tuple(SPLITS)}"
            )
        return self.subset(self.split == SPLITS[name])


# ------------------------------------------------------------------ generation
def fit_inrs(config: InrConfig, progress: bool = True, *, threads: int | None = None) -> Path:
    """Fit one SIREN per image of ``config.dataset`` chunk by chunk into ``config.out``.

    Chunks already complete are skipped, so after an interruption the same call continues where
    it stopped (temp files left by a killed run are removed). Under ``torchrun`` (``RANK`` and
    ``WORLD_SIZE`` set) rank r fits the chunks k with ``k % WORLD_SIZE == r`` and rank 0 writes
    ``inrs.json``. A chunk's bytes depend on the torch threads of the process that fitted it (see
    :mod:`weightspace.io.store`): ``inrs.json`` records the count and a resume with another one
    is refused; for the same count, the folder equals a one-process run whatever the number of
    processes. The same holds for the device type (``config.device``, recorded as ``"device"``;
    folders written before it was recorded were fitted on the CPU).

    Parameters
    ----------
    config:
        What to build; ``inrs.json`` records it.
    progress:
        Show tqdm progress bars (chunks, and steps within a chunk).
    threads:
        Torch threads while fitting; by default 1 under ``torchrun`` and unchanged otherwise.

    Returns
    -------
    Path
        The output folder.

    Raises
    ------
    ValueError
        For a folder that holds INRs of another config (naming the fields that differ), of
        another thread count or another device type, CUDA asked for where none is available, a
        store of another kind or a non-empty folder that is not one, an
        ``out`` that is a file, or bad ``RANK``/``WORLD_SIZE``.
    OSError
        When the folder cannot be written (naming the path).
    """
    if not isinstance(config, InrConfig):
        raise ValueError(f"fit_inrs: config must be an InrConfig, got {type(config).__name__}")
    rank, world = rank_and_world()
    threads = store_threads(threads, world)
    device = resolve_device(config.device)
    store = ChunkStore(config.out, INR_STORE)
    store.check_resume(config.to_json(), threads, device.type)

    from weightspace.data.images import load_images

    data = load_images(config.dataset, limit_train=config.limit, limit_test=config.limit)
    items = _plan(len(data.train_y), len(data.test_y), config)
    num_chunks = math.ceil(len(items) / config.chunk_size)
    header = _header(config, data, len(items), num_chunks, threads, device.type)
    owned = store.begin(header, num_chunks, rank, world)

    def chunk_items(k: int) -> list[_Item]:
        return items[k * config.chunk_size : (k + 1) * config.chunk_size]

    def layout(k: int) -> ChunkLayout:
        part = chunk_items(k)
        seeds = [inr_seed(config.seed, it.source, it.image_index, it.copy) for it in part]
        return ChunkLayout(k, range(part[0].index, part[-1].index + 1), _TENSORS, seeds)

    todo = store.missing(owned, layout)
    if todo:
        from weightspace.train.batched import torch_threads

        with torch_threads(threads):
            store.fill(
                todo,
                lambda k, position: _fit_chunk(
                    config, chunk_items(k), data, device, progress, position
                ),
                total=len(owned),
                desc=f"INRs {config.dataset}",
                progress=progress,
                rank=rank,
                world=world,
            )
    return Path(config.out)


#: The tensors of a chunk: name → shape of one SIREN's tensor.
_TENSORS = {t.name: t.shape for t in SIREN_SPEC.tensors}


def _fit_chunk(
    config: InrConfig,
    items: list[_Item],
    data: ImageData,
    device: torch.device,
    progress: bool,
    position: int,
) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """Fit the SIRENs of ``items`` on ``device``; return CPU tensors and the rows."""
    from weightspace.train import siren  # looked up per call, so tests can slow it down

    images = torch.stack(
        [(data.train_x if it.source == "train" else data.test_x)[it.image_index] for it in items]
    )
    labels = [
        int((data.train_y if it.source == "train" else data.test_y)[it.image_index]) for it in items
    ]
    seeds = [inr_seed(config.seed, it.source, it.image_index, it.copy) for it in items]
    features, scores = siren.fit_sirens(
        images,
        seeds,
        steps=config.steps,
        lr=config.lr,
        batch_networks=config.batch_networks,
        device=device,
        progress=progress,
        progress_position=position,
    )
    tensors = {
        t.name: x[:, 0].to(device="cpu", dtype=torch.float32).contiguous()
        for t, x in zip(SIREN_SPEC.tensors, features.tensors)
    }
    rows = [
        {
            "index": it.index,
            "label": label,
            "image_index": it.image_index,
            "source": it.source,
            "split": it.split,
            "copy": it.copy,
            "seed": seed,
            "psnr": score if math.isfinite(score) else None,
        }
        for it, label, seed, score in zip(items, labels, seeds, scores.cpu().tolist())
    ]
    return tensors, rows


def _header(
    config: InrConfig, data: ImageData, num_inrs: int, num_chunks: int, threads: int, device: str
) -> dict[str, Any]:
    from weightspace import __version__

    return {
        "format": INR_FORMAT,
        "version": INR_VERSION,
        "spec": SIREN_SPEC.to_dict(),
        "activation": f"sin({OMEGA_0:g} * t) after every layer but the last (omega_0 inside)",
        "omega_0": OMEGA_0,
        "coordinates": "pixel_grid: (row, column) in [-1, 1], row-major",
        "psnr": "10 log10(4 / MSE) on [-1, 1] pixel values",
        "dataset": config.dataset,
        "classes": list(data.classes),
        "image_shape": list(data.image_shape),
        "seed": config.seed,
        "num_inrs": num_inrs,
        "chunk_size": config.chunk_size,
        "num_chunks": num_chunks,
        "threads": threads,
        "device": device,
        "weightspace_version": __version__,
        "config": config.to_json(),
    }


# ------------------------------------------------------------------ loading
def load_inrs(path: str | os.PathLike[str]) -> InrDataset:
    """Read INRs that :func:`fit_inrs` wrote.

    Parameters
    ----------
    path:
        The output folder of :func:`fit_inrs`.

    Returns
    -------
    InrDataset
        ``features`` ``(N, 1, …)`` float32 on :data:`SIREN_SPEC`, ``labels``, ``split`` and one
        metadata row per INR, in storage order; ``info`` with ``source``, ``dataset``,
        ``classes``, ``image_shape``, ``seed``, ``config``, ``mean_psnr`` and more.

    Raises
    ------
    ValueError
        Naming the file: a missing or malformed ``inrs.json`` (wrong format, version, an
        architecture other than :data:`SIREN_SPEC`, a field of the wrong type, an image shape
        that is not its dataset's), missing chunk files (the run is unfinished: re-run
        :func:`fit_inrs` to resume) or chunks beyond ``num_inrs``, a truncated or corrupt
        safetensors file, tensors whose shapes disagree with ``inrs.json``, rows that do not
        match the stored INRs, missing or out-of-range labels, unknown splits, or NaN/Inf weights
        (naming the INR's index).
    """
    store = ChunkStore(path, INR_STORE)
    header = store.read_header()
    header_path = store.header_path
    spec = header_spec(header, header_path)
    if spec != SIREN_SPEC:
        raise ValueError(
            f"{str(header_path)!r}: spec {spec}, expected the SIREN architecture {SIREN_SPEC}"
        )
    num_inrs = header_int(header, "num_inrs", header_path)
    chunk_size = header_int(header, "chunk_size", header_path)
    classes = header.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ValueError(
            f"{str(header_path)!r}: field 'classes' is {classes!r}, expected a non-empty list"
        )
    classes = [str(c) for c in classes]
    _check_dataset(header, header_path)
    num_chunks = store.require_chunks(num_inrs, chunk_size)
    parts: list[list[Tensor]] = [[] for _ in SIREN_SPEC.tensors]
    rows: list[dict[str, Any]] = []
    for k in range(num_chunks):
        indices = range(k * chunk_size, min((k + 1) * chunk_size, num_inrs))
        tensors, chunk_rows = store.read_chunk(ChunkLayout(k, indices, _TENSORS))
        st_path, js_path = store.paths(k)
        _check_finite(tensors, st_path, indices.start)
        _check_rows(chunk_rows, js_path, len(classes))
        for j, t in enumerate(SIREN_SPEC.tensors):
            parts[j].append(tensors[t.name])
        rows.extend(chunk_rows)
    features = WeightSpaceFeatures.from_tensors(
        [torch.cat(p).unsqueeze(1) for p in parts], SIREN_SPEC
    )
    labels = torch.tensor([r["label"] for r in rows], dtype=torch.long)
    split = torch.tensor([SPLITS[r["split"]] for r in rows], dtype=torch.long)
    scores = [r["psnr"] for r in rows if isinstance(r.get("psnr"), int | float)]
    info = {
        "source": INR_FORMAT,
        "root": str(store.root),
        "dataset": header.get("dataset"),
        "classes": classes,
        "image_shape": header.get("image_shape"),
        "seed": header.get("seed"),
        "num_inrs": num_inrs,
        "mean_psnr": float(np.mean(scores)) if scores else math.nan,
        "omega_0": header.get("omega_0"),
        "threads": header.get("threads"),
        "weightspace_version": header.get("weightspace_version"),
        "config": header.get("config"),
    }
    if "edit" in header:  # written by `weightspace inr edit`: which edit, by which run
        info["edit"] = header["edit"]
    return InrDataset(SIREN_SPEC, features, labels, split, rows, info)


def _check_dataset(header: dict[str, Any], path: Path) -> None:
    """The header's dataset is known, agrees with its config, and its image shape is that
    dataset's (otherwise ``inr show`` would draw another dataset's originals)."""
    from weightspace.data.images import IMAGE_SHAPES

    dataset = header.get("dataset")
    if dataset not in DATASETS:
        raise ValueError(
            f"{str(path)!r}: field 'dataset' is {dataset!r}, expected one of {DATASETS}"
        )
    config = header.get("config")
    stored = config.get("dataset") if isinstance(config, dict) else None
    if stored != dataset:
        raise ValueError(
            f"{str(path)!r}: field 'dataset' is {dataset!r} but its config says {stored!r}; "
            "expected the dataset the INRs were fitted on"
        )
    shape = header.get("image_shape")
    expected = list(IMAGE_SHAPES[dataset])
    if shape != expected:
        raise ValueError(
            f"{str(path)!r}: field 'image_shape' is {shape!r}, but dataset {dataset!r} has images "
            f"of {expected}; expected the dataset the INRs were fitted on"
        )


def _check_finite(tensors: dict[str, Tensor], path: Path, first: int) -> None:
    for name, x in tensors.items():
        bad = ~torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
        if bool(bad.any()):
            j = int(bad.nonzero()[0])
            raise ValueError(
                f"{str(path)!r}: tensor {name!r} of INR {first + j} (row {j} of the chunk) holds "
                "NaN or Inf weights; expected finite SIREN weights (refit it: delete the chunk "
                "and re-run fit_inrs)"
            )


def _check_rows(rows: list[dict[str, Any]], path: Path, num_classes: int) -> None:
    for row in rows:
        label = row.get("label")
        if isinstance(label, bool) or not isinstance(label, int):
            raise ValueError(
                f"{str(path)!r}: INR {row.get('index')} has label {label!r}; expected an int in "
                f"0..{num_classes - 1}"
            )
        if not 0 <= label < num_classes:
            raise ValueError(
                f"{str(path)!r}: INR {row.get('index')} has label {label}, out of range "
                f"0..{num_classes - 1}"
            )
        if row.get("split") not in SPLITS:
            raise ValueError(
                f"{str(path)!r}: INR {row.get('index')} has split {row.get('split')!r}; expected "
                f"one of {tuple(SPLITS)}"
            )


# ------------------------------------------------------------------ pictures
def source_images(dataset: InrDataset, images: ImageData) -> Tensor:
    """The original image of every INR of ``dataset`` (by its ``source`` and ``image_index``).

    Returns
    -------
    Tensor
        ``(N, 1, H, W)``, aligned with ``dataset``.
    """
    out = []
    for j, row in enumerate(dataset.metadata):
        source, i = row.get("source"), row.get("image_index")
        pool = {"train": images.train_x, "test": images.test_x}.get(source)
        if pool is None or isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(pool):
            raise ValueError(
                f"source_images: INR {j} points at image {i!r} of split {source!r}, which "
                f"{images!r} does not hold"
            )
        out.append(pool[i])
    if not out:
        return images.train_x[:0]
    return torch.stack(out)


def show_grid(
    dataset_or_features: InrDataset | WeightSpaceFeatures,
    images: Tensor | ImageData,
    path: str | os.PathLike[str],
    n: int = 16,
) -> Path:
    """Write a PNG of originals (upper row of each pair) above their SIREN reconstructions.

    Originals are titled with their class (for an :class:`InrDataset`), reconstructions with
    their PSNR. Rendering uses :func:`render` (matplotlib's Agg canvas; no display needed).

    Parameters
    ----------
    dataset_or_features:
        SIRENs, an :class:`InrDataset` or 1-channel features on a SIREN weight space.
    images:
        The originals: ``(N, C, H, W)`` aligned with the SIRENs, or the :class:`ImageData` the
        dataset was fitted on (looked up with :func:`source_images`).
    path:
        The PNG to write (atomically).
    n:
        How many of the first SIRENs to show.

    Returns
    -------
    Path
        ``path``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"show_grid: n must be a positive int, got {n!r}")
    if isinstance(dataset_or_features, InrDataset):
        n = min(n, len(dataset_or_features))
        features = dataset_or_features.features
        if not isinstance(images, Tensor):
            images = source_images(dataset_or_features.subset(list(range(n))), images)
        classes = dataset_or_features.info.get("classes") or []
        titles = [
            f"{classes[y] if y < len(classes) else y}"
            for y in dataset_or_features.labels[:n].tolist()
        ]
    elif isinstance(dataset_or_features, WeightSpaceFeatures):
        features = dataset_or_features
        n = min(n, features.batch_size)
        titles = ["original"] * n
    else:
        raise ValueError(
            "show_grid: expected an InrDataset or WeightSpaceFeatures, got "
            f"{type(dataset_or_features).__name__}"
        )
    if not isinstance(images, Tensor):
        raise ValueError(
            "show_grid: images must be a (N, C, H, W) tensor (an ImageData needs an InrDataset)"
        )
    if images.ndim != 4 or images.shape[0] < n:
        raise ValueError(
            f"show_grid: images have shape {tuple(images.shape)}; expected (N, C, H, W) with at "
            f"least {n} images aligned with the SIRENs"
        )
    originals = images[:n].detach().float().cpu()
    H, W = originals.shape[2:]
    with torch.no_grad():
        recon = render(features[:n].to(torch.float32), H, W).cpu()
    scores = psnr(recon, originals)
    return viz.image_pairs(
        originals,
        recon,
        path,
        upper_titles=titles,
        lower_titles=[f"{float(s):.1f} dB" for s in scores],
        title="originals (upper, with labels) and SIREN reconstructions with PSNR (lower)",
    )
