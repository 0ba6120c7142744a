"""Import a zoo from your own checkpoints: a folder of saved networks and a CSV of targets.

``weightspace zoo import`` (:func:`import_zoo`) reads every checkpoint of a folder and one row of
a CSV per checkpoint, and writes the same store as a generated zoo (:mod:`weightspace.data.zoo`),
so that ``weightspace train generalization`` and ``weightspace evaluate`` read it::

    CHECKPOINTS/net00.safetensors  a state dict in safetensors
    CHECKPOINTS/net01.pt           a state dict saved with torch.save (or .pth)
    targets.csv                    name,test_accuracy[,split][,any other column]
                                   net00,0.91,train
                                   net01,0.87,test

    OUT/zoo.json                         "source": "import", the spec, the target column, …
    OUT/chunks/chunk-00000.safetensors   "W1" … "bL", each (n_chunk, *shape), float32
    OUT/chunks/chunk-00000.json          one row per network: name, file, target, split, …

Checkpoints. A ``.safetensors`` file holds a state dict; a ``.pt``/``.pth`` file holds a state
dict, or a dict with a ``"state_dict"`` or ``"model_state_dict"`` entry that is one (the other
entries, such as an optimizer's state, are ignored). ``.pt``/``.pth`` files are read with
``torch.load(path, map_location="cpu", weights_only=True)`` only: a file that would need code to
unpickle is refused, and nothing in it runs. Other files of the folder are ignored. Network i of
the zoo is the i-th checkpoint by file name.

Keys. With a template module (``--module pkg.mod:Factory``) each state dict is read by the
template's own key names, in any key order
(:meth:`~weightspace.WeightSpaceFeatures.from_state_dicts`). Without one, tensors are read in
order: a ``.pt`` file's in the order it was saved (a module's ``state_dict()`` is in layer
order), a safetensors file's, whose keys the format sorts as text, in :func:`layer_order`.

The CSV. One row per checkpoint; its ``name`` column holds the file name with or without its
extension (``net01.pt`` or ``net01``; names must then be unique without extensions). The
target is the column ``target_column``, by default the first column other than ``name`` and
``split`` that holds a number; each value must be a number in [0, 1], since the generalization
task predicts it through a sigmoid (test accuracy is such a number; rescale anything else). An
optional ``split`` column (``train``, ``val``, ``test``) fixes each network's split; without one
the split is :func:`~weightspace.data.container.fixed_split` 70/15/15, drawn when the zoo is
loaded from the run's ``split_seed`` as for generated zoos, or drawn once at import with
``split_seed``. Other columns are kept as metadata (numbers where they parse as numbers).

The import is atomic: it builds the zoo in ``.{OUT name}.import.tmp`` beside ``OUT`` and moves it
onto ``OUT`` when complete, so ``OUT`` holds a whole zoo or nothing.
"""

from __future__ import annotations

import csv
import importlib
import math
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from weightspace.data.container import SPLITS, Zoo, fixed_split
from weightspace.data.zoo import ZOO_FORMAT, ZOO_STORE, ZOO_VERSION
from weightspace.io.store import ChunkLayout, ChunkStore, header_int, header_spec
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.space.trace import trace_module

__all__ = [
    "CHECKPOINT_SUFFIXES",
    "IMPORT_SOURCE",
    "IMPORT_STORE",
    "STATE_DICT_ENTRIES",
    "import_zoo",
    "layer_order",
    "module_from_factory",
    "read_checkpoint",
    "read_imported_zoo",
]

#: ``zoo.json``'s ``"source"`` for an imported zoo (a generated zoo's header has none).
IMPORT_SOURCE = "import"
#: The checkpoint files :func:`import_zoo` reads; it ignores others.
CHECKPOINT_SUFFIXES: tuple[str, ...] = (".safetensors", ".pt", ".pth")
#: Entries of a ``.pt`` checkpoint dict that hold the model's state dict, looked up in this order.
STATE_DICT_ENTRIES: tuple[str, ...] = ("state_dict", "model_state_dict")
#: The store of a generated zoo; only the writer named in its messages differs.
IMPORT_STORE = replace(ZOO_STORE, writer="`weightspace zoo import`")
NAME_COLUMN, SPLIT_COLUMN = "name", "split"
#: Networks per chunk file of an imported zoo.
CHUNK_SIZE = 256


# ------------------------------------------------------------------ checkpoints
def layer_order(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """A state dict whose keys were sorted as text (safetensors: ``10.bias`` before ``2.bias``)
    back in layer order: modules by their numbered path (``fc2`` before ``fc10``), each weight
    before its bias.

    >>> list(layer_order({"10.bias": 0, "10.weight": 0, "2.bias": 0, "2.weight": 0}))
    ['2.weight', '2.bias', '10.weight', '10.bias']
    """

    def key(name: str) -> tuple[Any, ...]:
        module, _, leaf = name.rpartition(".")
        parts = tuple(
            (0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", module) if p
        )
        return (parts, 0 if leaf == "weight" else 1, leaf)

    return {k: tensors[k] for k in sorted(tensors, key=key)}


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """One checkpoint file as a state dict of float32 tensors, never running code from it.

    ``.safetensors`` files are read with ``safetensors.torch.load_file`` and put in
    :func:`layer_order`; ``.pt``/``.pth`` files with ``torch.load(weights_only=True)``, keeping
    their order, and may hold the state dict under one of :data:`STATE_DICT_ENTRIES`.

    Raises
    ------
    ValueError
        Naming the file: truncated or corrupt, needing code to unpickle, not a state dict of
        floating-point tensors, or holding NaN or infinite values (naming the tensor).
    """
    path = Path(path)
    where = repr(str(path))
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = layer_order(load_file(path))
        except Exception as err:  # SafetensorError, OSError, …: the file's fault either way
            raise ValueError(
                f"{where} is truncated or corrupt ({type(err).__name__}: {err}); expected a "
                "safetensors file of a state dict"
            ) from None
    elif suffix in (".pt", ".pth"):
        from weightspace.train.loop import _refusal

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # UnpicklingError, RuntimeError (bad zip), EOFError, …
            raise ValueError(
                f"{where} cannot be read with torch.load(weights_only=True): {_refusal(err)}; "
                "expected a state dict of tensors (torch.save(model.state_dict(), path), or "
                "safetensors)"
            ) from None
        if isinstance(obj, Mapping):
            entry = next((e for e in STATE_DICT_ENTRIES if isinstance(obj.get(e), Mapping)), None)
            if entry is not None:
                obj = obj[entry]
    else:
        raise ValueError(
            f"{where}: unknown checkpoint format; expected one of {CHECKPOINT_SUFFIXES}"
        )
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{where} holds a {type(obj).__name__}{' (empty)' if not obj else ''}, not a state "
            f"dict; expected a mapping of names to tensors, or a dict with one under "
            f"{' or '.join(map(repr, STATE_DICT_ENTRIES))}"
        )
    out: dict[str, Tensor] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, Tensor):
            raise ValueError(
                f"{where}: entry {key!r} is a {type(value).__name__}; expected a state dict of "
                f"tensors only, or a dict with one under {' or '.join(map(repr, STATE_DICT_ENTRIES))}"
            )
        if not value.is_floating_point():
            raise ValueError(
                f"{where}: tensor {key!r} is {value.dtype}; expected floating-point weights (a "
                "module with buffers such as BatchNorm's does not fit a weight space)"
            )
        value = value.detach().to(torch.float32)
        if not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"{where}: tensor {key!r} holds NaN or infinite values (as float32); expected "
                "finite weights"
            )
        out[key] = value
    return out


def module_from_factory(text: str) -> nn.Module:
    """The template module that ``"pkg.mod:Factory"`` names: ``Factory()`` from module
    ``pkg.mod``, a class or a function of no arguments (``Factory`` may be dotted).

    The current folder is searched first, as ``python -m`` does, so that a ``models.py`` beside
    your checkpoints is found.

    Raises
    ------
    ValueError
        For a string not of that form, a module that cannot be imported, a missing attribute, a
        factory that fails when called or returns something other than an ``nn.Module``.
    """
    where = f"--module {text!r}"
    module_name, colon, attr = str(text).partition(":")
    dotted = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
    if not colon or not re.fullmatch(dotted, module_name) or not re.fullmatch(dotted, attr):
        raise ValueError(
            f"{where}: expected 'package.module:Factory' (a module path, a colon, and a class or "
            "zero-argument function in it), e.g. 'mymodels:MLP'"
        )
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        mod = importlib.import_module(module_name)
    except Exception as err:  # ModuleNotFoundError, or any error the module raises on import
        raise ValueError(
            f"{where}: cannot import module {module_name!r} ({type(err).__name__}: {err})"
        ) from None
    finally:
        if added:
            sys.path.remove(cwd)
    factory: Any = mod
    for part in attr.split("."):
        if not hasattr(factory, part):
            raise ValueError(f"{where}: module {module_name!r} has no attribute {attr!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise ValueError(
            f"{where}: {attr!r} is a {type(factory).__name__}, expected a class or function"
        )
    try:
        built = factory()
    except Exception as err:
        raise ValueError(
            f"{where}: calling {attr}() failed ({type(err).__name__}: {err}); expected a class or "
            "function that builds the network with no arguments"
        ) from None
    if not isinstance(built, nn.Module):
        raise ValueError(
            f"{where}: {attr}() returned a {type(built).__name__}, expected a torch.nn.Module"
        )
    return built


# ------------------------------------------------------------------------- the CSV
@dataclass(frozen=True)
class _Row:
    line: int
    name: str
    target: float
    split: str | None
    columns: dict[str, str]


def _read_targets(path: Path, target_column: str | None) -> tuple[str, list[_Row], bool]:
    """The CSV's rows, its target column and whether it has a split column, values checked."""
    where = repr(str(path))
    if not path.is_file():
        raise ValueError(f"targets file {where} does not exist or is not a file")
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            lines = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ValueError(f"targets file {where} cannot be read as CSV ({err})") from None
    if not lines:
        raise ValueError(f"targets file {where} is empty; expected a header and one row per file")
    header = [h.strip() for h in lines[0][1]]
    if NAME_COLUMN not in header:
        raise ValueError(
            f"{where}: no {NAME_COLUMN!r} column (columns {header}); expected one holding each "
            "checkpoint's file name"
        )
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise ValueError(f"{where}: column(s) {dupes} appear more than once")
    records = []
    for line, cells in lines[1:]:
        if len(cells) > len(header):
            raise ValueError(
                f"{where} line {line}: {len(cells)} cells for {len(header)} columns {header}"
            )
        cells = [c.strip() for c in cells] + [""] * (len(header) - len(cells))
        records.append((line, dict(zip(header, cells))))
    if not records:
        raise ValueError(f"{where} has a header but no rows; expected one row per checkpoint")
    reserved = (NAME_COLUMN, SPLIT_COLUMN)
    if target_column is None:
        target_column = next(
            (
                h
                for h in header
                if h not in reserved and any(_number(r[h]) is not None for _, r in records)
            ),
            None,
        )
        if target_column is None:
            raise ValueError(
                f"{where}: no numeric column besides {NAME_COLUMN!r} and {SPLIT_COLUMN!r} "
                f"(columns {header}); add the targets (e.g. test_accuracy) or name the column "
                "with --target"
            )
    elif target_column in reserved or target_column not in header:
        raise ValueError(
            f"{where}: target column {target_column!r} is not one of its columns "
            f"{[h for h in header if h not in reserved]}"
        )
    has_split = SPLIT_COLUMN in header
    rows, seen = [], {}
    for line, record in records:
        name = record[NAME_COLUMN]
        at = f"{where} line {line} (name {name!r})"
        if not name:
            raise ValueError(f"{where} line {line}: column {NAME_COLUMN!r} is empty")
        if name in seen:
            raise ValueError(f"{where}: name {name!r} appears on lines {seen[name]} and {line}")
        seen[name] = line
        raw = record[target_column]
        value = _number(raw)
        if value is None or not math.isfinite(value) or not 0 <= value <= 1:
            got = "empty" if not raw else repr(raw)
            raise ValueError(
                f"{at}: column {target_column!r} is {got}; expected a number in [0, 1] (the "
                "generalization task predicts it through a sigmoid: rescale other targets)"
            )
        split = None
        if has_split:
            split = record[SPLIT_COLUMN].lower()
            if split not in SPLITS:
                raise ValueError(
                    f"{at}: column {SPLIT_COLUMN!r} is {record[SPLIT_COLUMN]!r}; expected one of "
                    f"{', '.join(SPLITS)}"
                )
        columns = {k: v for k, v in record.items() if k not in (*reserved, target_column)}
        rows.append(_Row(line, name, value, split, columns))
    return target_column, rows, has_split


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _checkpoint_files(folder: Path) -> list[Path]:
    if not folder.exists():
        raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise ValueError(f"checkpoint folder {str(folder)!r} is not a folder")
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise ValueError(
            f"checkpoint folder {str(folder)!r} holds no checkpoints; expected files ending in "
            f"{', '.join(CHECKPOINT_SUFFIXES)}"
        )
    stems: dict[str, Path] = {}
    for p in files:
        if p.stem in stems:
            raise ValueError(
                f"checkpoint folder {str(folder)!r}: {stems[p.stem].name!r} and {p.name!r} have "
                f"the same name {p.stem!r}; keep one checkpoint per network"
            )
        stems[p.stem] = p
    return files


def _match(files: Sequence[Path], rows: Sequence[_Row], targets: Path) -> list[_Row]:
    """The CSV row of each file (in file order); every file needs one and every row a file."""
    by_name = {p.stem: p for p in files} | {p.name: p for p in files}  # full names win
    of_file: dict[Path, _Row] = {}
    orphans = []
    for row in rows:
        p = by_name.get(row.name)
        if p is None:
            orphans.append(row)
        elif p in of_file:
            raise ValueError(
                f"{str(targets)!r}: lines {of_file[p].line} ({of_file[p].name!r}) and {row.line} "
                f"({row.name!r}) both name the checkpoint {p.name!r}"
            )
        else:
            of_file[p] = row
    if orphans:
        shown = ", ".join(f"{r.name!r} (line {r.line})" for r in orphans[:5])
        more = f" and {len(orphans) - 5} more" if len(orphans) > 5 else ""
        raise ValueError(
            f"{str(targets)!r}: rows without a checkpoint file in {str(files[0].parent)!r}: "
            f"{shown}{more}; names must be file names, with or without "
            f"{'/'.join(CHECKPOINT_SUFFIXES)}"
        )
    unlisted = [p.name for p in files if p not in of_file]
    if unlisted:
        shown = ", ".join(map(repr, unlisted[:5]))
        more = f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else ""
        raise ValueError(
            f"checkpoints missing from {str(targets)!r}: {shown}{more}; add a row for each (or "
            "move the file out of the folder)"
        )
    return [of_file[p] for p in files]


# ---------------------------------------------------------------------- importing
def import_zoo(
    checkpoints: str | os.PathLike[str],
    targets: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    module: nn.Module | None = None,
    target_column: str | None = None,
    activation: str | None = None,
    split_seed: int | None = None,
    module_name: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = True,
) -> Path:
    """Build a zoo folder from a folder of checkpoints and a CSV of their targets.

    Parameters
    ----------
    checkpoints:
        Folder of ``.safetensors``/``.pt``/``.pth`` checkpoints, one network each
        (:func:`read_checkpoint`).
    targets:
        CSV with a ``name`` column (file name with or without extension), the target column and
        optionally a ``split`` column (see the module docstring).
    out:
        The zoo folder to create; it must not exist or be empty.
    module:
        A template of the architecture: state dicts are then read by its key names, in any
        order. Without one they are read in order.
    target_column:
        The CSV column of the target; by default its first numeric column other than ``name``
        and ``split``.
    activation:
        The networks' activation (``relu``, ``tanh``, …), recorded per network for the probe
        models and ``--augment``. ``None``: the one ``module``'s forward applies between every
        two layers when it has a name (:meth:`~weightspace.space.trace.ModuleTrace.
        activation_name`), else none.
    split_seed:
        Draw :func:`~weightspace.data.container.fixed_split` 70/15/15 with this seed now and
        record it; ``None`` (and no ``split`` column) leaves the split to the loader's seed.
    module_name:
        How ``module`` was named (``"pkg.mod:Factory"``), recorded in ``zoo.json`` as
        ``"template"``; by default its class (``"torch.nn.modules.container:Sequential"``).
    chunk_size:
        Networks per chunk file.
    progress:
        Show a tqdm bar over the files.

    Returns
    -------
    Path
        ``out``, which :func:`~weightspace.data.zoo.load_zoo` reads: features ``(N, 1, …)``
        float32 on the checkpoints' spec, the target as ``test_accuracy``.

    Raises
    ------
    ValueError
        Naming the file, line, column or tensor: an empty or missing folder; a CSV without a
        ``name`` or numeric column, duplicate names, a missing or non-numeric target or one
        outside [0, 1], a bad split, a split column together with ``split_seed``; files missing
        from the CSV or rows without a file; unreadable files or ones needing code to unpickle;
        NaN or infinite weights; networks of another architecture than the first file's (or than
        ``module``: a missing, unexpected or mis-shaped key); an unknown activation; an ``out``
        that is a file or a non-empty folder.
    TypeError
        For a ``module`` that is not an ``nn.Module``.
    OSError
        When ``out`` cannot be written (naming the path).
    """
    from weightspace import __version__
    from weightspace.nn.activation import get_activation
    from weightspace.train.batched import progress_bar

    if module is not None and not isinstance(module, nn.Module):
        raise TypeError(f"import_zoo: module must be an nn.Module, got {type(module).__name__}")
    if activation is not None:
        get_activation(activation)  # names the activation and the known ones
    elif module is not None:
        activation = trace_module(module).activation_name()
    if split_seed is not None and (isinstance(split_seed, bool) or not isinstance(split_seed, int)):
        raise ValueError(f"import_zoo: split_seed must be an int or None, got {split_seed!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"import_zoo: chunk_size must be a positive int, got {chunk_size!r}")
    folder, targets, out = Path(checkpoints), Path(targets), Path(out)
    _check_out(out)
    files = _checkpoint_files(folder)
    column, rows, has_split = _read_targets(targets, target_column)
    if has_split and split_seed is not None:
        raise ValueError(
            f"{str(targets)!r} has a {SPLIT_COLUMN!r} column, and a split seed was given too; "
            "use one of them"
        )
    rows = _match(files, rows, targets)
    n = len(files)
    splits: list[str | None] = [r.split for r in rows]
    if split_seed is not None:
        codes = {code: name for name, code in SPLITS.items()}
        splits = [codes[int(c)] for c in fixed_split(n, split_seed)]

    first: list[tuple[str, NetworkSpec]] = []  # the first file and its weight space

    def read(p: Path) -> WeightSpaceFeatures:
        label = repr(str(p))
        state = read_checkpoint(p)
        try:
            x = WeightSpaceFeatures.from_state_dicts([state], template=module, names=[label])
        except TypeError as err:
            raise ValueError(str(err)) from None
        except ValueError as err:
            if module is not None:
                raise
            raise ValueError(
                f"{err}; pass a template (--module pkg.mod:Factory) to read keys by name"
            ) from None
        if not first:
            first.append((label, x.spec))
        elif x.spec != first[0][1]:
            raise ValueError(
                f"mixed architectures: {label} has weight space {x.spec}, but {first[0][0]} has "
                f"{first[0][1]}; a zoo holds networks of one architecture"
            )
        return x

    header: dict[str, Any] = {
        "format": ZOO_FORMAT,
        "version": ZOO_VERSION,
        "source": IMPORT_SOURCE,
        "spec": None,  # the first file's
        "networks": n,
        "chunk_size": chunk_size,
        "num_chunks": math.ceil(n / chunk_size),
        "checkpoints": str(folder.resolve()),
        "targets": str(targets.resolve()),
        "target": column,
        "split": "csv" if has_split else ("split_seed" if split_seed is not None else None),
        "split_seed": split_seed,
        "template": None if module is None else (module_name or _qualname(module)),
        "activation": activation,
        "weightspace_version": __version__,
    }
    tmp = out.parent / f".{out.name}.import.tmp"
    if tmp.exists():  # left by a killed import into the same folder
        shutil.rmtree(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    store = ChunkStore(tmp, IMPORT_STORE)
    bar = progress_bar(total=n, desc=f"import {folder.name}", unit="file", disable=not progress)
    try:
        with bar:
            for k in range(header["num_chunks"]):
                indices = range(k * chunk_size, min((k + 1) * chunk_size, n))
                parts = []
                for i in indices:
                    parts.append(read(files[i]))
                    bar.update(1)
                x = WeightSpaceFeatures.cat(parts)
                if k == 0:
                    header["spec"] = x.spec.to_dict()
                    store.begin(header, header["num_chunks"], 0, 1)
                tensors = {t.name: v[:, 0].contiguous() for t, v in zip(x.spec.tensors, x.tensors)}
                store.write_chunk(
                    k,
                    tensors,
                    [_chunk_row(i, files[i], rows[i], splits[i], activation) for i in indices],
                )
        _check_out(out)
        if out.exists():
            out.rmdir()  # empty, as just checked
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _qualname(module: nn.Module) -> str:
    cls = type(module)
    return f"{cls.__module__}:{cls.__qualname__}"


def _chunk_row(
    index: int, path: Path, row: _Row, split: str | None, activation: str | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "index": index,
        "name": row.name,
        "file": path.name,
        "target": row.target,
        "split": split,
    }
    if activation is not None:
        out["activation"] = activation
    out["columns"] = row.columns
    return out


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"{str(out)!r} is a file, not a folder; expected a new zoo folder")
    if out.is_dir() and any(out.iterdir()):
        what = "a zoo" if (out / ZOO_STORE.header).exists() else "files"
        raise ValueError(
            f"{str(out)!r} already holds {what}; import into a new or empty folder (delete it to "
            "import again)"
        )


# ------------------------------------------------------------------------- loading
def read_imported_zoo(
    path: str | os.PathLike[str],
    *,
    epoch: int | None = None,
    split_seed: int = 0,
) -> Zoo:
    """Read a zoo that :func:`import_zoo` wrote (:func:`~weightspace.data.zoo.load_zoo` calls it).

    Returns
    -------
    Zoo
        ``features`` ``(N, 1, …)`` float32 on the header's spec; ``test_accuracy`` the target
        column; ``metadata`` one flat row per network (``index``, ``name``, ``file``, the target
        under its column name, ``split`` when recorded, ``activation`` when recorded, the CSV's
        other columns); ``split`` the recorded one, else ``fixed_split(N, split_seed)``;
        ``info`` with ``source`` ``"import"``, ``target``, ``checkpoints``, ``template``, ….

    Raises
    ------
    ValueError
        Naming the file: as :func:`~weightspace.data.zoo.load_zoo` (a malformed header, missing
        or corrupt chunks, tensors of another architecture), a target outside [0, 1] or a split
        that is not train/val/test (naming the network), or an ``epoch`` (an imported zoo holds
        one checkpoint per network).
    """
    store = ChunkStore(path, IMPORT_STORE)
    header = store.read_header()
    where = store.header_path
    if header.get("source") != IMPORT_SOURCE:
        raise ValueError(f"{str(where)!r}: source {header.get('source')!r}, expected 'import'")
    if epoch is not None:
        raise ValueError(
            f"{str(where)!r}: an imported zoo holds one checkpoint per network; epoch must be "
            f"None, got {epoch!r}"
        )
    spec = header_spec(header, where)
    networks = header_int(header, "networks", where)
    chunk_size = header_int(header, "chunk_size", where)
    target = header.get("target")
    if not isinstance(target, str):
        raise ValueError(f"{str(where)!r}: field 'target' is {target!r}, expected a column name")
    num_chunks = store.require_chunks(networks, chunk_size)
    shapes = {t.name: t.shape for t in spec.tensors}
    parts: list[list[Tensor]] = [[] for _ in spec.tensors]
    metadata: list[dict[str, Any]] = []
    values: list[float] = []
    recorded: list[str | None] = []
    for k in range(num_chunks):
        indices = range(k * chunk_size, min((k + 1) * chunk_size, networks))
        tensors, chunk_rows = store.read_chunk(ChunkLayout(k, indices, shapes))
        for j, t in enumerate(spec.tensors):
            parts[j].append(tensors[t.name])
        js = store.paths(k)[1]
        for row in chunk_rows:
            flat, value, split = _flat_row(row, target, js)
            metadata.append(flat)
            values.append(value)
            recorded.append(split)
    if len({s is None for s in recorded}) > 1:
        raise ValueError(
            f"{str(store.chunks)!r}: some rows record a split and others do not; expected all or "
            "none"
        )
    features = WeightSpaceFeatures.from_tensors([torch.cat(p).unsqueeze(1) for p in parts], spec)
    if recorded[0] is None:
        split = fixed_split(networks, split_seed)
        rule = "fixed_split 70/15/15 over all networks"
    else:
        split = torch.tensor([SPLITS[s] for s in recorded if s is not None], dtype=torch.long)
        rule = (
            f"the {SPLIT_COLUMN!r} column of {header.get('targets')}"
            if header.get("split") == "csv"
            else f"fixed_split 70/15/15 drawn at import with seed {header.get('split_seed')}"
        )
    info = {
        "source": IMPORT_SOURCE,
        "root": str(store.root),
        "dataset": None,
        "target": target,
        "checkpoints": header.get("checkpoints"),
        "targets": header.get("targets"),
        "template": header.get("template"),
        "activation": header.get("activation"),
        "split_seed": split_seed if recorded[0] is None else header.get("split_seed"),
        "split_rule": rule,
        "num_networks": networks,
        "num_diverged": 0,
        "weightspace_version": header.get("weightspace_version"),
    }
    accuracy = torch.tensor(values, dtype=torch.float32)
    return Zoo(spec, features, accuracy, metadata, split, info)


def _flat_row(row: dict[str, Any], target: str, path: Path) -> tuple[dict[str, Any], float, Any]:
    """One network's row flattened to strings and numbers; its target and recorded split."""
    index = row.get("index")
    value = row.get("target")
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise ValueError(
            f"{str(path)!r}: network {index} has target {value!r}; expected a number in [0, 1]"
        )
    split = row.get("split")
    if split is not None and split not in SPLITS:
        raise ValueError(
            f"{str(path)!r}: network {index} has split {split!r}; expected one of "
            f"{', '.join(SPLITS)} or null"
        )
    columns = row.get("columns") or {}
    if not isinstance(columns, dict):
        raise ValueError(
            f"{str(path)!r}: network {index} has 'columns' {columns!r:.40}, expected an object"
        )
    flat: dict[str, Any] = {}
    for key, text in columns.items():
        number = _number(text) if isinstance(text, str) else None
        flat[str(key)] = number if number is not None else str(text)
    flat.update(index=index, name=row.get("name"), file=row.get("file"))
    flat[target] = float(value)
    if split is not None:
        flat["split"] = split
    if row.get("activation") is not None:
        flat["activation"] = str(row["activation"])
    return flat, float(value), split
