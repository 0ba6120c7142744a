"""Atomic writes: every file weightspace writes goes through :func:`atomic_path`.

A file is written under a temporary name beside its target (``.{name}.{pid}-{random}.tmp``,
which no reader takes for data), flushed to disk, given the mode an ordinary ``open`` would give
it (``0o666`` less the umask, so safetensors chunks and their JSON agree), and moved onto the
target in one ``os.replace``. A process killed at any moment leaves the old file or none, never
a half-written one; :func:`clean_temp_files` removes the temporary files such a kill leaves.

Every writer takes the object first and the path second, as ``torch.save`` and ``json.dump`` do.
An ``OSError`` while writing (a missing folder, a read-only one, a full disk) is raised again
naming the *target* path, not the temporary one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "clean_temp_files",
    "jsonable",
    "read_json",
    "save_torch",
    "write_json",
    "write_lines",
    "write_safetensors",
    "write_text",
]

PathLike = str | os.PathLike[str]


def _file_mode() -> int:
    # os.umask can only be read by setting it; done once, at import.
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` in one step.

    Examples
    --------
    >>> with atomic_path("run/scatter.png") as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp, format="png")

    Raises
    ------
    OSError
        From writing or moving, with ``filename`` set to ``path`` (the temp file is removed).
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except OSError as err:
        raise OSError(err.errno, err.strerror or str(err), os.fspath(path)) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def clean_temp_files(folder: PathLike, names: Iterable[str] | None = None) -> int:
    """Remove the temporary files a killed :func:`atomic_path` left in ``folder``.

    ``names`` limits it to the temp files of those target names (``None``: all). Returns how many
    were removed. Only call it where no other process is writing the same files.
    """
    folder = Path(folder)
    patterns = [f".{n}.*.tmp" for n in names] if names is not None else [".*.tmp"]
    removed = 0
    for pattern in patterns:
        for tmp in folder.glob(pattern):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def jsonable(obj: Any) -> Any:
    """``obj`` made JSON-safe: non-finite floats become ``None`` (JSON has no NaN), tuples
    lists, paths strings, mapping keys strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [jsonable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def write_bytes(data: bytes, path: PathLike) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(text: str, path: PathLike) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(obj: Any, path: PathLike, *, indent: int | None = 2) -> None:
    """Write ``jsonable(obj)`` as JSON (``indent`` spaces, a final newline) atomically."""
    write_text(json.dumps(jsonable(obj), indent=indent, allow_nan=False) + "\n", path)


def write_lines(rows: Iterable[Mapping[str, Any]], path: PathLike) -> None:
    """Write one compact JSON object per line (JSON Lines) atomically."""
    write_text("".join(json.dumps(jsonable(r), allow_nan=False) + "\n" for r in rows), path)


def save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)`` atomically (read back with ``weights_only=True``)."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)


def write_safetensors(
    tensors: Mapping[str, Any], path: PathLike, *, metadata: Mapping[str, str] | None = None
) -> None:
    """``safetensors.torch.save_file`` atomically."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(dict(tensors), os.fspath(tmp), metadata=dict(metadata or {}))


def read_json(path: PathLike) -> Any:
    """Parse a JSON file; a missing, unreadable or malformed file is a ``ValueError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{os.fspath(path)!r} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{os.fspath(path)!r} is not valid JSON: {err}") from None
