"""Storage helpers shared by the zoo and INR stores: atomic writes, threads, progress bars."""

from __future__ import annotations

import json
import math
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: Sub-folder of a store that holds its chunk files.
CHUNKS_DIR = "chunks"


def chunk_stem(k: int) -> str:
    """File stem of chunk ``k`` (its ``.safetensors`` and ``.json`` share it)."""
    return f"chunk-{k:05d}"


def finite_or_none(value: float) -> float | None:
    """A number for JSON: ``None`` stands for NaN/Inf (JSON has no such numbers)."""
    return value if math.isfinite(value) else None


def read_json(path: Path) -> Any:
    """Parse a JSON file; a missing or malformed file is a ``ValueError`` naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{str(path)!r} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{str(path)!r} is not valid JSON: {err}") from None


def require_chunks(root: Path, num_chunks: int, what: str, resume: str) -> Path:
    """Return the chunk folder of a store, refusing one with chunk files missing.

    ``what`` names the store in the message (e.g. ``"zoo"``) and ``resume`` says how to finish it.
    """
    chunks = root / CHUNKS_DIR
    missing = [
        f"{chunk_stem(k)}.{ext}"
        for k in range(num_chunks)
        for ext in ("safetensors", "json")
        if not (chunks / f"{chunk_stem(k)}.{ext}").exists()
    ]
    if missing:
        shown = ", ".join(missing[:6]) + (
            f" and {len(missing) - 6} more" if len(missing) > 6 else ""
        )
        raise ValueError(
            f"{what} {str(root)!r} is incomplete: {shown} missing in {str(chunks)!r}; {resume}"
        )
    return chunks


def progress_bar(**kwargs: Any) -> Any:
    """A tqdm bar; written to a log file (stderr not a terminal) it updates every 30 s, not
    several times a second, so logs of long jobs stay readable."""
    from tqdm.auto import tqdm

    if not sys.stderr.isatty():
        kwargs.setdefault("mininterval", 30.0)
    return tqdm(**kwargs)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Write through a temp file in the same folder, fsync it, then ``os.replace`` it in place.

    The temp name ``.{name}.{pid}-{random}.tmp`` never looks like a finished file, so a killed
    run leaves nothing that a reader or a resumed run would take for data.
    """
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding="utf-8") as f:
            json.dump(obj, f, indent=1, allow_nan=False)
            f.write("\n")

    atomic_write_bytes(path, write)


def atomic_write_safetensors(path: Path, tensors: dict[str, Tensor], meta: dict[str, str]) -> None:
    from safetensors.torch import save_file

    atomic_write_bytes(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
