"""Loader for the SIREN datasets released with the NFN paper (MNIST, Fashion-MNIST, CIFAR-10).

The release (``siren_mnist_wts``, ``siren_fashion_wts``, ``siren_cifar_wts``; see the NFN
repository's ``experiments/README.md``) holds one PyTorch state dict per image::

    ROOT/randinit_smaller_0s/net12.pth        prefix "randinit_smaller", class 0, INR 12
    ROOT/randinit_smaller_7s/net13.pth
    ROOT/randinit_smaller_aug0_7s/net13.pth   augmentation copy 0 of INR 13 (its own prefix)
    …

Folders are named ``{prefix}_{label}s``; files ``net{index}.pth``, where the index runs over all
images (the reference code concatenates the dataset's train and test images and splits by index:
train ``[0, 45000)``, validation ``[45000, 50000)``, test ``[50000, N)``: :data:`PAPER_SPLIT_POINTS`).
Each state dict holds a SIREN 2-32-32-1 (3 outputs for CIFAR) with keys in module order
(``net.0.linear.weight``, ``net.0.linear.bias``, …, ``net.2.weight``, ``net.2.bias``), in this
package's ω0 convention: hidden layers compute ``sin(30 (W h + b))``, the last layer is linear
(see :mod:`weightspace.data.inr`), on the same ``(row, column)`` pixel grid.

Files are read with ``torch.load(path, weights_only=True)`` only: nothing but tensors and plain
containers is ever unpickled.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from weightspace.data.container import SPLITS
from weightspace.data.inr import SIREN_SPEC, InrDataset
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

__all__ = ["PAPER_PREFIX", "PAPER_SPLIT_POINTS", "SIREN_FOLDER_FORMAT", "load_siren_folder"]

SIREN_FOLDER_FORMAT = "nfn-siren-folder"
#: The prefix of the non-augmented SIRENs in the release.
PAPER_PREFIX = "randinit_smaller"
#: ``(val_start, test_start)`` of the release's MNIST, Fashion-MNIST and CIFAR-10 splits.
PAPER_SPLIT_POINTS = (45000, 50000)

_FOLDER = re.compile(r"^(?P<prefix>.+)_(?P<label>[^_]*)$")
_LABEL = re.compile(r"^(?P<label>\d+)s$")
_FILE = re.compile(r"^net(?P<index>\d+)\.pth$")


def load_siren_folder(
    root: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    split_points: tuple[int, int] | None = None,
    spec: NetworkSpec | None = SIREN_SPEC,
    limit: int | None = None,
    progress: bool = True,
) -> InrDataset:
    """Read a folder of per-INR SIREN state dicts with the class label in the folder name.

    Parameters
    ----------
    root:
        The dataset folder (e.g. ``siren_mnist_wts``), holding ``{prefix}_{label}s/net{i}.pth``.
    prefix:
        Which folders to read, e.g. ``"randinit_smaller"`` or ``"randinit_smaller_aug0"``.
        ``None``: the only prefix present (an error if there are several).
    split_points:
        ``(val_start, test_start)``: INR i is train if ``i < val_start``, validation if
        ``i < test_start``, else test (the release uses :data:`PAPER_SPLIT_POINTS`). ``None``
        puts every INR in ``"train"``.
    spec:
        The architecture every file must have (:data:`SIREN_SPEC` by default; ``None`` accepts
        any dense architecture shared by all files).
    limit:
        Read only the INRs with the ``limit`` smallest indices.
    progress:
        Show a tqdm bar over files.

    Returns
    -------
    InrDataset
        Sorted by INR index: ``features`` ``(N, 1, …)`` float32, ``labels`` from the folder
        names, ``split`` from ``split_points``, ``metadata`` rows with ``index``, ``label``,
        ``path`` (relative to ``root``) and ``split``; ``info`` with the source, root, prefix,
        split points and the ω0 convention.

    Raises
    ------
    ValueError
        Naming the folder or file: a missing or empty root, no folder for ``prefix`` (or several
        prefixes and none chosen), a folder or ``.pth`` file whose name does not carry an integer
        label or index, a ``.pth`` outside a label folder, the same index twice, a file that
        ``torch.load(weights_only=True)`` refuses (pickled objects other than tensors and plain
        containers) or cannot read, a file that is not a state dict of tensors, an architecture
        other than ``spec``, or NaN/Inf weights.
    """
    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"load_siren_folder: {str(base)!r} is not a folder")
    if split_points is not None:
        split_points = _check_split_points(split_points)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"load_siren_folder: limit must be a positive int or None, got {limit!r}")
    loose = sorted(p.name for p in base.glob("*.pth"))
    if loose:
        raise ValueError(
            f"load_siren_folder: {str(base / loose[0])!r} lies directly in the root, without a "
            "label folder; expected ROOT/{prefix}_{label}s/net{index}.pth"
        )
    folders = _label_folders(base)
    if not folders:
        raise ValueError(
            f"load_siren_folder: {str(base)!r} holds no folders named '{{prefix}}_{{label}}s'; "
            "expected the layout ROOT/randinit_smaller_0s/net0.pth, …"
        )
    prefixes = sorted({p for p, _ in folders.values()})
    if prefix is None:
        if len(prefixes) > 1:
            raise ValueError(
                f"load_siren_folder: {str(base)!r} holds several prefixes {prefixes}; choose one "
                f"with prefix= (the release's originals are {PAPER_PREFIX!r})"
            )
        prefix = prefixes[0]
    chosen = {path: label for path, (p, label) in folders.items() if p == prefix}
    if not chosen:
        raise ValueError(
            f"load_siren_folder: no folder '{prefix}_{{label}}s' in {str(base)!r}; prefixes "
            f"present: {prefixes}"
        )
    files = _index_files(chosen)
    if not files:
        raise ValueError(
            f"load_siren_folder: the folders of prefix {prefix!r} in {str(base)!r} hold no "
            "net{index}.pth file"
        )
    order = sorted(files)
    if limit is not None:
        order = order[:limit]
    from tqdm.auto import tqdm

    parts: list[WeightSpaceFeatures] = []
    expected = spec
    rows: list[dict[str, Any]] = []
    for index in tqdm(order, desc=f"SIRENs {prefix}", unit="file", disable=not progress):
        path, label = files[index]
        features = _read_state_dict(path)
        if expected is None:
            expected = features.spec
        if features.spec != expected:
            raise ValueError(
                f"{str(path)!r} holds a network on {features.spec}; expected {expected} (every "
                "file of a SIREN dataset has the same architecture)"
            )
        parts.append(features)
        split = _split_of(index, split_points)
        rows.append(
            {
                "index": index,
                "label": label,
                "path": path.relative_to(base).as_posix(),
                "split": split,
            }
        )
    assert expected is not None
    features = WeightSpaceFeatures.cat(parts)
    labels = torch.tensor([r["label"] for r in rows], dtype=torch.long)
    split = torch.tensor([SPLITS[r["split"]] for r in rows], dtype=torch.long)
    info = {
        "source": SIREN_FOLDER_FORMAT,
        "root": str(base),
        "prefix": prefix,
        "split_points": None if split_points is None else list(split_points),
        "num_inrs": len(rows),
        "activation": "sin(30 * t) after every layer but the last (omega_0 inside)",
        "omega_0": 30.0,
    }
    return InrDataset(expected, features, labels, split, rows, info)


def _check_split_points(points: Any) -> tuple[int, int]:
    try:
        val, test = points
    except (TypeError, ValueError):
        raise ValueError(
            f"load_siren_folder: split_points must be (val_start, test_start), got {points!r}"
        ) from None
    for value in (val, test):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(
                f"load_siren_folder: split_points must be two non-negative ints, got {points!r}"
            )
    if val > test:
        raise ValueError(
            f"load_siren_folder: split_points {points!r} must satisfy val_start <= test_start"
        )
    return int(val), int(test)


def _split_of(index: int, points: tuple[int, int] | None) -> str:
    if points is None or index < points[0]:
        return "train"
    return "val" if index < points[1] else "test"


def _label_folders(base: Path) -> dict[Path, tuple[str, int]]:
    """``{folder: (prefix, label)}`` for every ``{prefix}_{label}s`` folder under ``base``.

    A folder whose last ``_``-separated part is not ``{int}s`` belongs to no label: an error if
    it holds ``.pth`` files (a missing or non-integer label), else it is ignored.
    """
    out: dict[Path, tuple[str, int]] = {}
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        match = _FOLDER.match(folder.name)
        label = _LABEL.match(match.group("label")) if match else None
        if match and label:
            out[folder] = (match.group("prefix"), int(label.group("label")))
        elif any(folder.glob("*.pth")):
            raise ValueError(
                f"load_siren_folder: folder {str(folder)!r} holds .pth files but its name does "
                "not end in '_{label}s' with an integer label; expected e.g. "
                f"'{PAPER_PREFIX}_3s'"
            )
    return out


def _index_files(folders: Mapping[Path, int]) -> dict[int, tuple[Path, int]]:
    files: dict[int, tuple[Path, int]] = {}
    for folder, label in folders.items():
        for path in sorted(folder.glob("*.pth")):
            match = _FILE.match(path.name)
            if not match:
                raise ValueError(
                    f"load_siren_folder: {str(path)!r} is not named net{{index}}.pth with an "
                    "integer index"
                )
            index = int(match.group("index"))
            if index in files:
                raise ValueError(
                    f"load_siren_folder: INR {index} appears twice: {str(files[index][0])!r} and "
                    f"{str(path)!r}"
                )
            files[index] = (path, label)
    return files


def _read_state_dict(path: Path) -> WeightSpaceFeatures:
    """One file as 1-network features (float32), never unpickling anything but tensors."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError, …
        reason = _reason(err)
        if isinstance(err, pickle.UnpicklingError) and "GLOBAL" in str(err):
            raise ValueError(
                f"{str(path)!r} holds pickled objects other than tensors and plain containers; "
                f"refusing to unpickle it (torch.load(weights_only=True): {reason})"
            ) from None
        raise ValueError(
            f"{str(path)!r} is not a readable PyTorch file ({type(err).__name__}: {reason}); "
            "expected a state dict saved with torch.save"
        ) from None
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{str(path)!r} holds a {type(obj).__name__}, not a state dict; expected a non-empty "
            "mapping from parameter names to tensors"
        )
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(
                f"{str(path)!r}: entry {key!r} is a {type(value).__name__}; expected a state dict "
                "of tensors only"
            )
        if not value.is_floating_point():
            raise ValueError(f"{str(path)!r}: tensor {key!r} is {value.dtype}; expected floats")
    try:
        features = WeightSpaceFeatures.from_state_dicts([obj])
    except (ValueError, TypeError, IndexError) as err:
        raise ValueError(
            f"{str(path)!r} is not a feedforward state dict (weight then bias per layer, in "
            f"module order): {err}"
        ) from None
    features = features.to(torch.float32)
    if features.spec.is_cnn:
        raise ValueError(f"{str(path)!r} holds conv weights ({features.spec}); a SIREN is dense")
    bad = [
        t.name
        for t, x in zip(features.spec.tensors, features.tensors)
        if not bool(torch.isfinite(x).all())
    ]
    if bad:
        raise ValueError(
            f"{str(path)!r}: tensors {bad} hold NaN or Inf; expected finite SIREN weights"
        )
    return features


def _reason(err: BaseException) -> str:
    """The informative sentence of a ``torch.load`` error (its message is mostly boilerplate)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for line in lines:
        if (
            re.search(r"GLOBAL|Unsupported|failed reading|error", line)
            and "weights_only" not in line
        ):
            return line.split(". ")[0].rstrip(".")
    return lines[0].split(". ")[0].rstrip(".") if lines else ""
