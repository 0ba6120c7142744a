"""Helpers shared by the zoo and INR stores: atomic writes, threads, memory, progress bars."""

from __future__ import annotations

import ctypes
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


# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2).
_MMAP_THRESHOLD = 32 * 2**20
_TRIM_THRESHOLD = 2**30


def retain_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse instead of returning it to the system.

    By default glibc serves blocks above a few MB with fresh ``mmap`` pages and hands them back
    on ``free``, so every large tensor of a training step is first-touched again: page faults
    and zeroing took about a quarter of a batched step of 64 zoo networks in one trial (28x28
    images, before steps ran in groups of 32 networks). With the mmap
    threshold at its maximum (32 MiB) and the trim threshold at 1 GiB, those blocks come from
    the heap and are reused. Process-wide and kept for the rest of the process (the memory
    stays reserved after the job, as PyTorch's CUDA caching allocator does); a no-op off glibc,
    or when the environment sets ``WEIGHTSPACE_RETAIN_MEMORY=0``.

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
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


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
