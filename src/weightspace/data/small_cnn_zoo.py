"""Loader for the public Small CNN Zoo (Unterthiner et al. 2020).

"Predicting Neural Network Accuracy from Weights" released about 30k trained CNNs per dataset
(MNIST, Fashion-MNIST, CIFAR-10-GS, SVHN-GS), with the code in google-research/google-research,
folder ``dnn_predict_accuracy``. Each dataset's folder holds:

``weights.npy``
    A 2-D float array, one row per checkpoint: all parameters of one network flattened in
    TensorFlow's layout. Nine checkpoints per network (epochs 0, 1, 2, 3, 20, 40, 60, 80, 86);
    86 is the end of training.
``layout.csv``
    One row per TensorFlow variable: ``varname`` (``sequential/conv2d/kernel:0``, …),
    ``start_idx`` and ``end_idx`` (its columns in ``weights.npy``) and ``shape`` (a tuple such as
    ``(3, 3, 1, 16)``; conv kernels are HWIO, dense kernels ``(in, out)``).
``metrics.csv.gz``
    One row per row of ``weights.npy``: the hyperparameters (``config.activation``,
    ``config.optimizer``, ``config.learning_rate``, …), ``modeldir``, ``step`` (the epoch of the
    checkpoint) and ``train_accuracy``, ``train_loss``, ``test_accuracy``, ``test_loss``.

The networks are Keras ``Conv2D(16, 3, strides=2)`` x 3 with the default ``'valid'`` padding,
then global average pooling and ``Dense(10)``: 4970 parameters. Files are parsed without
unpickling or evaluating anything they contain.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from weightspace.data.container import SPLITS, Zoo
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

LAYOUT_FILE = "layout.csv"
WEIGHTS_FILE = "weights.npy"
METRICS_FILE = "metrics.csv.gz"

#: The last checkpoint of every run (86 epochs of training).
FINAL_STEP = 86

#: The architecture of every network in the zoo.
SMALL_CNN_ZOO_SPEC = NetworkSpec((1, 16, 16, 16, 10), ((3, 3), (3, 3), (3, 3), ()))

#: Activations the zoo's training script accepts, as PyTorch modules of the same function.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "selu": nn.SELU,  # Keras and PyTorch use the same SELU constants
}

_LAYOUT_COLUMNS = ("varname", "start_idx", "end_idx", "shape")
_VARNAME = re.compile(r"^(?P<layer>.+)/(?P<kind>kernel|bias):\d+$")
_SHAPE = re.compile(r"^\(\s*(?P<dims>\d+(?:\s*,\s*\d+)*)?\s*,?\s*\)$")
_INT = re.compile(r"^[+-]?\d+$")
_CHUNK_ROWS = 8192


@dataclass(frozen=True)
class LayoutEntry:
    """One TensorFlow variable of ``layout.csv``.

    Attributes
    ----------
    varname:
        E.g. ``"sequential/conv2d_1/kernel:0"``.
    layer:
        The variable's layer, ``varname`` up to the last ``/``.
    kind:
        ``"kernel"`` or ``"bias"``.
    start, end:
        Its columns ``start:end`` in ``weights.npy``.
    shape:
        The TensorFlow shape: ``(*kernel, in, out)`` for kernels, ``(out,)`` for biases.
    """

    varname: str
    layer: str
    kind: str
    start: int
    end: int
    shape: tuple[int, ...]


@dataclass(frozen=True)
class SmallCNNLayout:
    """The validated layout of one flat weight vector: which columns hold which tensor.

    Attributes
    ----------
    entries:
        All variables, sorted by ``start``; they tile ``0 .. num_params`` without gaps.
    layers:
        ``(kernel, bias)`` per weight layer, in network order.
    spec:
        The weight space derived from the kernel shapes.
    """

    entries: tuple[LayoutEntry, ...]
    layers: tuple[tuple[LayoutEntry, LayoutEntry], ...]
    spec: NetworkSpec

    @property
    def num_params(self) -> int:
        return self.entries[-1].end

    def to_features(self, rows: np.ndarray) -> WeightSpaceFeatures:
        """Convert flat TensorFlow rows ``(N, num_params)`` to float32 features ``(N, 1, …)``.

        TensorFlow kernels ``(*kernel, in, out)`` (conv HWIO, dense ``(in, out)``) become
        PyTorch's ``(out, in, *kernel)``.
        """
        rows = np.asarray(rows)
        if rows.ndim != 2 or rows.shape[1] != self.num_params:
            raise ValueError(
                f"SmallCNNLayout.to_features: rows have shape {rows.shape}, expected "
                f"(N, {self.num_params})"
            )
        n = rows.shape[0]
        weights, biases = [], []
        for kernel, bias in self.layers:
            k = rows[:, kernel.start : kernel.end].reshape(n, *kernel.shape)
            d = len(kernel.shape)
            # (N, *kernel, in, out) -> (N, out, in, *kernel)
            k = k.transpose(0, d, d - 1, *range(1, d - 1))
            weights.append(_tensor(k))
            biases.append(_tensor(rows[:, bias.start : bias.end]))
        return WeightSpaceFeatures(weights, biases, self.spec)


def _tensor(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).unsqueeze(1)


# -------------------------------------------------------------------- layout
def read_layout(path: str | os.PathLike[str]) -> SmallCNNLayout:
    """Read and validate a Small CNN Zoo ``layout.csv``.

    Parameters
    ----------
    path:
        The CSV file. It needs the columns ``varname``, ``start_idx``, ``end_idx`` and ``shape``;
        others (an index column, sizes, …) are ignored.

    Returns
    -------
    SmallCNNLayout
        The entries, the layers in network order and the derived :class:`NetworkSpec`.

    Raises
    ------
    ValueError
        Naming the file and the row when a column is missing, a value does not parse, an entry's
        size does not match its shape, entries overlap or leave gaps, or the layers do not chain.
    """
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise ValueError(f"Small CNN Zoo layout file {name!r} does not exist")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in _LAYOUT_COLUMNS if c not in header]
        if missing:
            raise ValueError(
                f"{name!r}: missing columns {missing}; expected {list(_LAYOUT_COLUMNS)}, "
                f"found {header}"
            )
        entries = [_layout_entry(row, name, line) for line, row in enumerate(reader, start=2)]
    if not entries:
        raise ValueError(f"{name!r} lists no variables; expected one row per kernel and bias")
    return _build_layout(entries, name)


def _layout_entry(row: dict[str, str | None], name: str, line: int) -> LayoutEntry:
    if None in row or any(row[c] is None for c in _LAYOUT_COLUMNS):
        raise ValueError(f"{name!r} line {line}: wrong number of fields; expected the header's")
    varname = row["varname"].strip()
    match = _VARNAME.match(varname)
    if match is None:
        raise ValueError(
            f"{name!r} line {line}: varname {varname!r} is not a kernel or bias; expected "
            "'<layer>/kernel:0' or '<layer>/bias:0'"
        )
    start, end = (_layout_int(row[c], c, name, line) for c in ("start_idx", "end_idx"))
    shape_text = row["shape"].strip()
    shape_match = _SHAPE.match(shape_text)
    if shape_match is None or shape_match["dims"] is None:
        raise ValueError(
            f"{name!r} line {line}: shape {shape_text!r} of {varname!r} does not parse; expected "
            "a tuple of positive ints such as '(3, 3, 1, 16)' or '(16,)'"
        )
    shape = tuple(int(s) for s in shape_match["dims"].split(","))
    if any(s < 1 for s in shape):
        raise ValueError(f"{name!r} line {line}: shape {shape} of {varname!r} has a zero size")
    if end - start != math.prod(shape):
        raise ValueError(
            f"{name!r} line {line}: {varname!r} spans columns {start}:{end} ({end - start} "
            f"values), expected {math.prod(shape)} for shape {shape}"
        )
    return LayoutEntry(varname, match["layer"], match["kind"], start, end, shape)


def _layout_int(text: str, column: str, name: str, line: int) -> int:
    text = text.strip()
    if not _INT.match(text) or int(text) < 0:
        raise ValueError(
            f"{name!r} line {line}: column {column!r} is {text!r}, expected a non-negative int"
        )
    return int(text)


def _build_layout(entries: list[LayoutEntry], name: str) -> SmallCNNLayout:
    entries = sorted(entries, key=lambda e: (e.start, e.end))
    # The entries must tile the flat vector exactly: each starts where the previous ended.
    position, previous = 0, None
    for entry in entries:
        if entry.start < position:
            raise ValueError(
                f"{name!r}: {entry.varname!r} (columns {entry.start}:{entry.end}) overlaps "
                f"{previous.varname!r} (columns {previous.start}:{previous.end}); expected "
                "disjoint entries"
            )
        if entry.start > position:
            after = f"after {previous.varname!r}" if previous else "at the start"
            raise ValueError(
                f"{name!r}: columns {position}:{entry.start} {after} belong to no variable; "
                f"expected {entry.varname!r} to start at {position}"
            )
        position, previous = entry.end, entry
    by_layer: dict[str, dict[str, LayoutEntry]] = {}
    for entry in entries:
        slot = by_layer.setdefault(entry.layer, {})
        if entry.kind in slot:
            raise ValueError(
                f"{name!r}: layer {entry.layer!r} has two {entry.kind}s ({slot[entry.kind].varname!r} "
                f"and {entry.varname!r}); expected one kernel and one bias"
            )
        slot[entry.kind] = entry
    layers = []
    # Layers appear in network order in the flat vector.
    for layer, slot in sorted(
        by_layer.items(), key=lambda kv: min(e.start for e in kv[1].values())
    ):
        if set(slot) != {"kernel", "bias"}:
            raise ValueError(
                f"{name!r}: layer {layer!r} has only {sorted(slot)}; expected a kernel and a bias"
            )
        layers.append((slot["kernel"], slot["bias"]))
    widths: list[int] = []
    kernels: list[tuple[int, ...]] = []
    for kernel, bias in layers:
        if not 2 <= len(kernel.shape) <= 5:
            raise ValueError(
                f"{name!r}: kernel {kernel.varname!r} has shape {kernel.shape}; expected "
                "(in, out) for a dense layer or (*kernel, in, out) with 1 to 3 kernel axes"
            )
        *kernel_shape, n_in, n_out = kernel.shape
        if bias.shape != (n_out,):
            raise ValueError(
                f"{name!r}: bias {bias.varname!r} has shape {bias.shape}, expected ({n_out},) "
                f"to match kernel {kernel.varname!r} {kernel.shape}"
            )
        if widths and widths[-1] != n_in:
            raise ValueError(
                f"{name!r}: kernel {kernel.varname!r} {kernel.shape} takes {n_in} inputs, but the "
                f"previous layer has {widths[-1]} outputs; expected layers that chain"
            )
        if kernels and not kernels[-1] and kernel_shape:
            raise ValueError(
                f"{name!r}: convolution {kernel.varname!r} follows a dense layer; expected the "
                "convolutions first"
            )
        if not widths:
            widths.append(n_in)
        widths.append(n_out)
        kernels.append(tuple(kernel_shape))
    spec = NetworkSpec(tuple(widths), tuple(kernels))
    return SmallCNNLayout(tuple(entries), tuple(layers), spec)


# -------------------------------------------------------------------- metrics
@dataclass
class _Metrics:
    num_rows: int
    selected: list[int]  # row numbers at the requested step
    rows: list[dict[str, Any]]  # parsed rows at the requested step
    steps: set[int]
    dropped_networks: int | None  # networks (modeldir) without the step; None without modeldir


def _read_metrics(path: Path, step: int) -> _Metrics:
    name = str(path)
    if not path.is_file():
        raise ValueError(f"Small CNN Zoo metrics file {name!r} does not exist")
    try:
        with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
            return _parse_metrics(csv.reader(f), name, step)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(
            f"{name!r} could not be read ({err}); expected a gzip-compressed CSV"
        ) from None


def _parse_metrics(reader: Iterable[list[str]], name: str, step: int) -> _Metrics:
    header = next(iter(reader), None)
    if not header:
        raise ValueError(f"{name!r} is empty; expected a header row")
    for column in ("step", "test_accuracy"):
        if column not in header:
            raise ValueError(f"{name!r}: no column {column!r}; found {header}")
    named = [(i, c) for i, c in enumerate(header) if c.strip()]  # skip pandas' unnamed index
    duplicates = sorted({c for _, c in named if sum(c == d for _, d in named) > 1})
    if duplicates:
        raise ValueError(f"{name!r}: duplicate columns {duplicates}; expected unique names")
    i_step, i_acc = header.index("step"), header.index("test_accuracy")
    i_dir = header.index("modeldir") if "modeldir" in header else None
    selected: list[int] = []
    rows: list[dict[str, Any]] = []
    steps: set[int] = set()
    all_dirs: set[str] = set()
    num_rows = 0
    for row in reader:
        n, num_rows = num_rows, num_rows + 1
        line = n + 2
        if len(row) != len(header):
            raise ValueError(
                f"{name!r} line {line}: {len(row)} fields, expected {len(header)} as in the header"
            )
        row_step = _parse_step(row[i_step], name, line)
        steps.add(row_step)
        if i_dir is not None:
            all_dirs.add(row[i_dir])
        if row_step != step:
            continue
        parsed = {c: _parse_value(row[i]) for i, c in named}
        parsed["step"] = row_step
        parsed["test_accuracy"] = _parse_accuracy(row[i_acc], name, line)
        selected.append(n)
        rows.append(parsed)
    if not selected:
        raise ValueError(
            f"{name!r}: no row has step {step}; expected it among the checkpoints, found steps "
            f"{sorted(steps)}"
        )
    dropped = None
    if i_dir is not None:
        seen: set[str] = set()
        for parsed in rows:
            key = str(parsed["modeldir"])
            if key in seen:
                raise ValueError(
                    f"{name!r}: network {key!r} has several rows at step {step}; expected one "
                    "checkpoint per network and step"
                )
            seen.add(key)
        dropped = len(all_dirs - seen)
    return _Metrics(num_rows, selected, rows, steps, dropped)


def _parse_step(text: str, name: str, line: int) -> int:
    text = text.strip()
    if _INT.match(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value.is_integer():
        raise ValueError(f"{name!r} line {line}: column 'step' is {text!r}, expected an integer")
    return int(value)


def _parse_accuracy(text: str, name: str, line: int) -> float:
    text = text.strip()
    if not text:  # pandas writes NaN as an empty field; Zoo.finite() drops such networks
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"{name!r} line {line}: column 'test_accuracy' is {text!r}, expected a number"
        ) from None
    if not (math.isnan(value) or 0 <= value <= 1):
        raise ValueError(
            f"{name!r} line {line}: column 'test_accuracy' is {text!r}, expected an accuracy in "
            "[0, 1] (or empty for none)"
        )
    return value


def _parse_value(text: str) -> Any:
    """A metrics field as int, float or (otherwise) the string itself."""
    stripped = text.strip()
    if _INT.match(stripped):
        return int(stripped)
    try:
        return float(stripped)
    except ValueError:
        return text


# -------------------------------------------------------------------- weights
def _open_weights(path: Path) -> np.ndarray:
    name = str(path)
    if not path.is_file():
        raise ValueError(f"Small CNN Zoo weights file {name!r} does not exist")
    try:
        weights = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(
            f"{name!r} could not be read as a .npy array without pickles ({err}); expected a "
            "2-D float array"
        ) from None
    if not isinstance(weights, np.ndarray) or weights.ndim != 2:
        shape = getattr(weights, "shape", type(weights).__name__)
        raise ValueError(f"{name!r} holds {shape}, expected a 2-D array (checkpoints, params)")
    if weights.dtype.kind != "f":
        raise ValueError(f"{name!r} has dtype {weights.dtype}, expected a float array")
    return weights


def _gather_rows(weights: np.ndarray, index: Sequence[int], progress: bool | None) -> np.ndarray:
    """``weights[index]`` as float32, read in chunks (``weights`` may be a memory map)."""
    index = np.asarray(index, dtype=np.int64)
    out = np.empty((len(index), weights.shape[1]), dtype=np.float32)
    starts = range(0, len(index), _CHUNK_ROWS)
    if progress is None:
        progress = len(starts) > 1
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="Small CNN Zoo weights", unit="chunk")
    for s in starts:
        out[s : s + _CHUNK_ROWS] = weights[index[s : s + _CHUNK_ROWS]]
    return out


# --------------------------------------------------------------------- public
def paper_split(n: int, seed: int = 0) -> Tensor:
    """The Small CNN Zoo split of NFN's generalization experiments.

    A seeded shuffle of the ``n`` networks; the last half of the shuffled order is test, the first
    half is split 80 / 20 into train and validation.

    Returns
    -------
    Tensor
        ``(n,)`` int64 codes from :data:`~weightspace.data.container.SPLITS`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"paper_split: n must be a non-negative int, got {n!r}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_trainval = n // 2
    n_train = int(0.8 * n_trainval)
    split = torch.full((n,), SPLITS["test"], dtype=torch.long)
    split[order[:n_train]] = SPLITS["train"]
    split[order[n_train:n_trainval]] = SPLITS["val"]
    return split


def load_small_cnn_zoo(
    root: str | os.PathLike[str],
    *,
    step: int = FINAL_STEP,
    split_seed: int = 0,
    progress: bool | None = None,
) -> Zoo:
    """Load one dataset's folder of the Small CNN Zoo as a :class:`Zoo`.

    Parameters
    ----------
    root:
        Folder with ``weights.npy``, ``layout.csv`` and ``metrics.csv.gz``.
    step:
        The checkpoint to keep for every network; 86 is the end of training. Networks without a
        row at ``step`` (crashed runs) are left out and counted in ``info["dropped_networks"]``.
    split_seed:
        Seed of the shuffle behind :func:`paper_split`.
    progress:
        Show a progress bar while gathering weights; by default only for large zoos.

    Returns
    -------
    Zoo
        ``features`` float32 ``(N, 1, …)`` on the spec derived from ``layout.csv`` (for the real
        zoo ``NetworkSpec((1, 16, 16, 16, 10), ((3, 3), (3, 3), (3, 3), ()))``), in PyTorch
        layout; ``test_accuracy`` from the metrics; ``metadata`` the metrics row of each network
        (hyperparameters and metrics, numbers parsed); ``split`` from :func:`paper_split`.
        Networks keep the file's order. Diverged networks (non-finite weights) are kept; drop them
        with :meth:`Zoo.finite`.

    Raises
    ------
    ValueError
        Naming the file: a missing file, a malformed layout, ``weights.npy`` rows whose length
        differs from the layout's total size, a row count that differs between ``weights.npy`` and
        ``metrics.csv.gz``, or no metrics row at ``step``.
    """
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValueError(f"load_small_cnn_zoo: step must be an int, got {step!r}")
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"Small CNN Zoo folder {str(root)!r} does not exist")
    layout = read_layout(root / LAYOUT_FILE)
    weights = _open_weights(root / WEIGHTS_FILE)
    if weights.shape[1] != layout.num_params:
        raise ValueError(
            f"{str(root / WEIGHTS_FILE)!r} has rows of {weights.shape[1]} values, expected "
            f"{layout.num_params} as {LAYOUT_FILE} lays out"
        )
    metrics = _read_metrics(root / METRICS_FILE, step)
    if metrics.num_rows != weights.shape[0]:
        raise ValueError(
            f"{str(root / METRICS_FILE)!r} has {metrics.num_rows} rows but "
            f"{str(root / WEIGHTS_FILE)!r} has {weights.shape[0]}; expected one metrics row per "
            "checkpoint"
        )
    rows = _gather_rows(weights, metrics.selected, progress)
    features = layout.to_features(rows)
    n = len(metrics.rows)
    from weightspace import __version__

    datasets = sorted({str(r["config.dataset"]) for r in metrics.rows if "config.dataset" in r})
    info: dict[str, Any] = {
        "source": "small-cnn-zoo",
        "root": str(root),
        "dataset": datasets[0] if len(datasets) == 1 else (datasets or None),
        "step": step,
        "split_seed": split_seed,
        "split_rule": "seeded shuffle; last half test, first half 80/20 train/val",
        "num_checkpoints": metrics.num_rows,
        "steps": sorted(metrics.steps),
        "num_networks": n,
        "dropped_networks": metrics.dropped_networks,
        "layout": [e.varname for e in layout.entries],
        "weightspace_version": __version__,
    }
    return Zoo(
        spec=layout.spec,
        features=features,
        test_accuracy=torch.tensor([r["test_accuracy"] for r in metrics.rows], dtype=torch.float32),
        metadata=metrics.rows,
        split=paper_split(n, split_seed),
        info=info,
    )


def load_small_cnn_zoo_checkpoints(
    root: str | os.PathLike[str],
    *,
    split_seed: int = 0,
    final_step: int = FINAL_STEP,
    progress: bool | None = None,
) -> Zoo:
    """Every checkpoint of every network up to ``final_step``, each an item, with the split
    drawn over networks.

    The networks and their split are those of ``load_small_cnn_zoo(root, step=final_step)``
    (networks without a row at ``final_step`` are left out at every step). Each earlier step
    follows, and its checkpoints take the split of their network, found by ``modeldir``, so
    no network is on both sides of the split. Items are step-major, the final step last; each
    row records its ``step``.

    Raises
    ------
    ValueError
        As :func:`load_small_cnn_zoo`, and when ``metrics.csv.gz`` has no ``modeldir`` column
        (checkpoints could not be matched to their network).
    """
    last = load_small_cnn_zoo(root, step=final_step, split_seed=split_seed, progress=progress)
    if any("modeldir" not in row for row in last.metadata):
        raise ValueError(
            f"{str(Path(root) / METRICS_FILE)!r} has no 'modeldir' column; the checkpoints of a "
            "network cannot be matched without it (load one step instead)"
        )
    split_of = {str(row["modeldir"]): int(s) for row, s in zip(last.metadata, last.split)}
    zoos = []
    for step in (s for s in last.info["steps"] if s < final_step):
        zoo = load_small_cnn_zoo(root, step=step, split_seed=split_seed, progress=progress)
        zoo = zoo.subset([i for i, row in enumerate(zoo.metadata) if row["modeldir"] in split_of])
        split = torch.tensor([split_of[row["modeldir"]] for row in zoo.metadata], dtype=torch.long)
        zoos.append(Zoo(zoo.spec, zoo.features, zoo.test_accuracy, zoo.metadata, split, zoo.info))
    steps = [step for step in last.info["steps"] if step <= final_step]
    info = {**last.info, "step": None, "checkpoints": "all", "steps": steps}
    info["split_rule"] = f"{last.info['split_rule']}, by network (modeldir): all steps together"
    return Zoo.cat([*zoos, last], info)


def small_cnn_zoo_module(
    activation: str = "relu", *, spec: NetworkSpec = SMALL_CNN_ZOO_SPEC
) -> nn.Sequential:
    """A PyTorch network that computes what a Small CNN Zoo network computes in TensorFlow.

    Keras ``Conv2D(16, 3, strides=2)`` uses ``'valid'`` padding (no padding), which is
    ``nn.Conv2d(…, stride=2, padding=0)`` exactly, so no asymmetric padding module is needed.
    Dropout is left out: it is the identity at evaluation time. Load a network's weights with
    ``zoo.features.load_into(module, i)``.

    Parameters
    ----------
    activation:
        The network's ``config.activation``: one of :data:`ACTIVATIONS`.
    spec:
        The weight space: 2-D conv layers (stride 2), then one or more dense layers; the zoo's
        by default.

    Shapes
    ------
    Input ``(B, 1, H, W)`` images in [-1, 1] (NCHW; TensorFlow's NHWC transposed), output
    ``(B, 10)`` logits.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(
            f"small_cnn_zoo_module: unknown activation {activation!r}; expected one of "
            f"{tuple(ACTIVATIONS)}"
        )
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    n, k = spec.widths, spec.kernel_shapes
    n_conv = sum(1 for kernel in k if kernel)
    if any(len(kernel) != 2 for kernel in k[:n_conv]) or any(k[n_conv:]):
        raise ValueError(
            f"small_cnn_zoo_module: {spec} must be 2-D convolutions followed by dense layers"
        )
    for i in range(n_conv):
        layers += [nn.Conv2d(n[i], n[i + 1], k[i], stride=2), act()]
    if n_conv:
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    for i in range(n_conv, spec.num_layers):
        layers.append(nn.Linear(n[i], n[i + 1]))
        if i < spec.num_layers - 1:
            layers.append(act())
    return nn.Sequential(*layers)
