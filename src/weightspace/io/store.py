"""The chunked store that zoo generation and INR fitting share.

A store is a folder::

    OUT/{header}                        format, version, threads, counts, the job's config
    OUT/chunks/chunk-00000.safetensors  the tensors of items 0 .. chunk_size - 1, (n_chunk, ...)
    OUT/chunks/chunk-00000.json         {"format", "version", "chunk", "rows": one per item}

The *kind* (:class:`StoreKind`: ``weightspace-zoo`` in ``zoo.json``, ``weightspace-inrs`` in
``inrs.json``) is recorded in the header and in every chunk, and a store refuses a folder of
another kind, or a non-empty folder that holds no store, so that one job never overwrites another
job's chunks. :class:`ChunkStore` does what both jobs need around *computing* a chunk:

- on writing: the resume check (same kind, same config, naming every field that differs; same
  threads per process, see below), rank sharding (chunk k on rank ``k % world`` of
  :func:`weightspace.train.distributed.rank_and_world`), removal of the temp files a killed run
  left, skipping chunks that are complete (read back and verified, not just present), atomic
  writes through :mod:`weightspace.io` (tensors first, rows last: the JSON marks a chunk done),
  and a progress bar over chunks;
- on reading: header fields checked (one-line errors naming the file and the field), chunk files
  counted against the header, each chunk verified (its rows, indices, seeds, tensor names, dtypes
  and shapes).

Threads. CPU convolutions and matrix products reduce in an order that depends on the number of
threads, so a chunk's bytes depend on the torch threads of the process that computed it (not on
the rank or the number of processes). The header records that count (``"threads"``) and a
resume with another count is refused: a store's bytes are then those of one thread count.

Devices. For the same reason the header records the device type the chunks were computed on
(``"device"``: ``"cpu"`` or ``"cuda"``), and a resume on another type is refused. Stores written
before the device was recorded were all computed on the CPU, so a missing field reads as
``"cpu"``: they resume on the CPU as before.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from weightspace.io.atomic import clean_temp_files, read_json, write_json, write_safetensors
from weightspace.space.spec import NetworkSpec

__all__ = [
    "CHUNKS_DIR",
    "DEFAULT_STORE_DEVICE",
    "ChunkLayout",
    "ChunkStore",
    "ForeignStoreError",
    "StoreKind",
    "chunk_stem",
    "header_int",
    "header_ints",
    "header_spec",
    "store_threads",
]

#: Sub-folder of a store that holds its chunk files.
CHUNKS_DIR = "chunks"
_CHUNK_NAME = re.compile(r"^chunk-(\d{5,})\.(json|safetensors)$")


def chunk_stem(k: int) -> str:
    """File stem of chunk ``k`` (its ``.safetensors`` and ``.json`` share it)."""
    return f"chunk-{k:05d}"


@dataclass(frozen=True)
class StoreKind:
    """What kind of store a folder holds, and how messages name it.

    Attributes
    ----------
    format, version:
        Recorded in the header and in every chunk (``"weightspace-zoo"``, 1).
    header:
        The header's file name (``"zoo.json"``).
    count_field:
        The header field that counts the items (``"networks"``).
    item:
        One item, for messages (``"network"``; plural adds an ``s``).
    noun:
        The store, for messages (``"zoo"``, ``"INR folder"``).
    writer:
        The function that writes it, named in "re-run ... to resume" (``"generate_zoo"``).
    """

    format: str
    version: int
    header: str
    count_field: str
    item: str
    noun: str
    writer: str

    @property
    def items(self) -> str:
        return f"{self.item}s"

    @property
    def a_noun(self) -> str:
        """``noun`` with its article: "a zoo", "an INR folder"."""
        return f"{'an' if self.noun[0] in 'aeiouAEIOU' else 'a'} {self.noun}"


@dataclass(frozen=True)
class ChunkLayout:
    """What chunk ``index`` must hold.

    Attributes
    ----------
    index:
        The chunk's number k.
    items:
        The indices of its items (its rows carry them as ``"index"``).
    tensors:
        Tensor name → shape of one item; each is stored float32 ``(len(items), *shape)``.
    seeds:
        The items' ``"seed"`` values, when the caller knows them (a resume does).
    """

    index: int
    items: range
    tensors: Mapping[str, tuple[int, ...]]
    seeds: Sequence[int] | None = None


class ForeignStoreError(ValueError):
    """A folder holds (or its chunks belong to) a store of another kind: never overwrite it."""


#: The device type of a store whose header records none: stores were computed on the CPU until
#: the device was recorded.
DEFAULT_STORE_DEVICE = "cpu"


def store_threads(threads: int | None, world: int) -> int:
    """The torch threads a generating process runs with: ``threads``, else 1 under ``torchrun``
    (``world > 1``: one thread per process), else the current count."""
    import torch

    if threads is None:
        return 1 if world > 1 else torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    return threads


# ------------------------------------------------------------ header fields
def header_int(header: Mapping[str, Any], name: str, path: Path, low: int = 1) -> int:
    """``header[name]`` as an int >= ``low``, else a one-line ``ValueError`` naming file and field."""
    value = header.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{str(path)!r}: field {name!r} is {value!r}, expected an int >= {low}")
    return value


def header_ints(header: Mapping[str, Any], name: str, path: Path, low: int = 0) -> list[int]:
    """``header[name]`` as a non-empty list of ints >= ``low`` (same errors as :func:`header_int`)."""
    value = header.get(name)
    if (
        not isinstance(value, list)
        or not value
        or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in value)
    ):
        raise ValueError(
            f"{str(path)!r}: field {name!r} is {value!r}, expected a non-empty list of ints >= {low}"
        )
    return value


def header_spec(header: Mapping[str, Any], path: Path) -> NetworkSpec:
    """The header's ``"spec"`` (both ``widths`` and ``kernel_shapes`` required)."""
    spec = header.get("spec")
    if not isinstance(spec, dict) or "widths" not in spec or "kernel_shapes" not in spec:
        raise ValueError(
            f"{str(path)!r} is malformed: field 'spec' is {spec!r}, expected "
            "{'widths': [...], 'kernel_shapes': [...]}"
        )
    return NetworkSpec.from_dict(spec, f"{str(path)!r} is malformed: field 'spec'")


# ------------------------------------------------------------------ the store
class ChunkStore:
    """One store folder of a :class:`StoreKind`: resume checks, chunk writes and verified reads.

    Parameters
    ----------
    root:
        The folder (need not exist yet when writing).
    kind:
        What it holds.
    """

    def __init__(self, root: str | os.PathLike[str], kind: StoreKind) -> None:
        self.root = Path(root)
        self.kind = kind
        self.header_path = self.root / kind.header
        self.chunks = self.root / CHUNKS_DIR

    def __repr__(self) -> str:
        return f"ChunkStore({str(self.root)!r}, {self.kind.format!r})"

    def paths(self, k: int) -> tuple[Path, Path]:
        """``(safetensors, json)`` paths of chunk ``k``."""
        stem = self.chunks / chunk_stem(k)
        return stem.with_suffix(".safetensors"), stem.with_suffix(".json")

    # ---------------------------------------------------------------- writing
    def check_resume(self, config: Mapping[str, Any], threads: int, device: str = "cpu") -> None:
        """Refuse to write into this folder unless it is empty, new, or this job's own store.

        ``device`` is the type of the device this run computes on (``"cpu"``, ``"cuda"``).

        Raises
        ------
        ValueError
            ``root`` is a file; the header is of another kind, not JSON, or records another
            config (naming every field that differs), another thread count or another device
            type.
        ForeignStoreError
            The folder holds a store of another kind, or is not empty and holds no store.
        """
        kind, root = self.kind, self.root
        if root.exists() and not root.is_dir():
            raise ValueError(
                f"{str(root)!r} is a file, not a folder; expected the output folder of "
                f"{kind.writer}"
            )
        if not root.exists():
            return
        self._refuse_foreign()
        if not self.header_path.exists():
            return
        stored = read_json(self.header_path)
        if not isinstance(stored, dict) or stored.get("format") != kind.format:
            got = stored.get("format") if isinstance(stored, dict) else type(stored).__name__
            raise ValueError(
                f"{str(self.header_path)!r} is not a weightspace {kind.noun} (format {got!r}, "
                f"expected {kind.format!r}); choose another output folder"
            )
        old = stored.get("config")
        if not isinstance(old, dict):
            raise ValueError(
                f"{str(self.header_path)!r} holds no 'config' object; expected the config of "
                f"{kind.writer}"
            )
        diff = [
            f"{n}: stored {old.get(n)!r}, requested {v!r}"
            for n, v in config.items()
            if old.get(n) != v
        ]
        if diff:
            raise ValueError(
                f"{str(self.header_path)!r} was written with another config ({'; '.join(diff)}); "
                "use another output folder or the stored config to resume"
            )
        # Stores written before the thread count was recorded have no "threads": not checked.
        stored_threads = stored.get("threads")
        if stored_threads is not None and stored_threads != threads:
            raise ValueError(
                f"{str(self.header_path)!r} was written with {stored_threads!r} torch threads per "
                f"process, this run has {threads}; a chunk's bytes depend on the thread count, so "
                f"resume with {stored_threads} (OMP_NUM_THREADS={stored_threads} or "
                f"threads={stored_threads}) or use another output folder"
            )
        stored_device = stored.get("device", DEFAULT_STORE_DEVICE)
        if stored_device != device:
            raise ValueError(
                f"{str(self.header_path)!r} was computed on device {stored_device!r}, this run is "
                f"on {device!r}; float results differ across devices, so resume with "
                f"device={stored_device!r} (--device {stored_device}) or use another output folder"
            )

    def _refuse_foreign(self) -> None:
        """Raise :class:`ForeignStoreError` for a store of another kind or a non-store folder."""
        kind = self.kind
        others = [
            p
            for p in self.root.iterdir()
            if p.name not in (kind.header, CHUNKS_DIR) and not _is_temp_of(p.name, kind.header)
        ]
        for p in others:
            other = _store_format(p) if p.suffix == ".json" and p.is_file() else None
            if other is not None:
                raise ForeignStoreError(
                    f"{str(self.root)!r} holds a {other!r} store ({p.name}), not {kind.a_noun}; "
                    f"{kind.writer} would overwrite its chunks: choose another output folder"
                )
        if not self.header_path.exists() and self.chunks.is_dir():
            # With a header, read_chunk finds foreign chunks while verifying them.
            for p in sorted(self.chunks.glob("chunk-*.json")):
                other = _store_format(p)
                if other is not None and other != kind.format:
                    raise ForeignStoreError(
                        f"{str(p)!r} is a chunk of a {other!r} store, not of {kind.a_noun}; "
                        f"{kind.writer} would overwrite it: choose another output folder"
                    )
        if others and not self.header_path.exists():
            names = ", ".join(sorted(p.name for p in others)[:5])
            raise ForeignStoreError(
                f"{str(self.root)!r} is not empty ({names}) and holds no {kind.header}, so it is "
                f"not {kind.a_noun}; choose a new or empty output folder"
            )

    def begin(self, header: Mapping[str, Any], num_chunks: int, rank: int, world: int) -> list[int]:
        """Create the folders, write the header (rank 0, if absent), remove stale temp files.

        Returns the chunks this rank owns: ``k`` with ``k % world == rank``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            _quietly_clean(self.root, [self.kind.header])
            if not self.header_path.exists():
                write_json(dict(header), self.header_path, indent=1)
        self.chunks.mkdir(exist_ok=True)
        owned = [k for k in range(num_chunks) if k % world == rank]
        # Only this rank's temp files: another rank may be writing the others right now.
        names = [p.name for k in owned for p in self.paths(k)]
        _quietly_clean(self.chunks, names)
        return owned

    def missing(self, owned: Sequence[int], layout: Callable[[int], ChunkLayout]) -> list[int]:
        """The chunks of ``owned`` that are not complete and verified (to be computed)."""
        todo = []
        for k in owned:
            try:
                self.read_chunk(layout(k))
            except ForeignStoreError:
                raise
            except ValueError:
                todo.append(k)
        return todo

    def write_chunk(
        self, k: int, tensors: Mapping[str, Tensor], rows: Sequence[Mapping[str, Any]]
    ) -> None:
        """Write chunk ``k``: tensors first, rows last (the JSON marks the chunk complete)."""
        st, js = self.paths(k)
        kind = self.kind
        write_safetensors(tensors, st, metadata={"format": kind.format, "chunk": str(k)})
        doc = {"format": kind.format, "version": kind.version, "chunk": k, "rows": list(rows)}
        write_json(doc, js, indent=1)

    def fill(
        self,
        todo: Sequence[int],
        compute: Callable[[int, int], tuple[dict[str, Tensor], list[dict[str, Any]]]],
        *,
        total: int,
        desc: str,
        progress: bool,
        rank: int,
        world: int,
    ) -> None:
        """Compute and write every chunk of ``todo``, with a progress bar over ``total`` chunks.

        ``compute(k, position)`` returns chunk k's tensors and rows; ``position`` is the line
        for its own (inner) progress bar.
        """
        from weightspace.train.batched import progress_bar

        many = world > 1
        bar = progress_bar(
            total=total,
            initial=total - len(todo),
            desc=desc + (f" rank {rank}" if many else ""),
            unit="chunk",
            disable=not progress,
            position=2 * rank if many else 0,
        )
        with bar:
            for k in todo:
                tensors, rows = compute(k, 2 * rank + 1 if many else 1)
                self.write_chunk(k, tensors, rows)
                bar.update(1)

    # ---------------------------------------------------------------- reading
    def read_header(self) -> dict[str, Any]:
        """The header, checked for this kind's format and version."""
        kind, path = self.kind, self.header_path
        if not path.exists():
            raise ValueError(
                f"{str(path)!r} is missing; expected {kind.a_noun} written by {kind.writer}"
            )
        header = read_json(path)
        if not isinstance(header, dict) or header.get("format") != kind.format:
            got = header.get("format") if isinstance(header, dict) else type(header).__name__
            raise ValueError(f"{str(path)!r}: format {got!r}, expected {kind.format!r}")
        if header.get("version") != kind.version:
            raise ValueError(
                f"{str(path)!r}: format version {header.get('version')!r}, expected {kind.version}"
            )
        return header

    def require_chunks(self, count: int, chunk_size: int) -> int:
        """Check that the chunk files are exactly those of ``count`` items; return their number.

        Raises
        ------
        ValueError
            Chunk files missing (the store is unfinished: re-run the writer), or chunks beyond
            the header's count (naming the header and both counts).
        """
        kind = self.kind
        num_chunks = math.ceil(count / chunk_size)
        missing = [p.name for k in range(num_chunks) for p in self.paths(k) if not p.exists()]
        if missing:
            shown = ", ".join(missing[:6]) + (
                f" and {len(missing) - 6} more" if len(missing) > 6 else ""
            )
            raise ValueError(
                f"{kind.noun} {str(self.root)!r} is incomplete: {shown} missing in "
                f"{str(self.chunks)!r}; re-run {kind.writer} with the same config to resume"
            )
        extra = sorted(
            {
                int(m.group(1))
                for p in self.chunks.iterdir()
                if (m := _CHUNK_NAME.match(p.name)) and int(m.group(1)) >= num_chunks
            }
        )
        if extra:
            found = count + sum(self._row_count(k) for k in extra)
            raise ValueError(
                f"{str(self.header_path)!r} says {kind.count_field} {count} ({num_chunks} chunks "
                f"of {chunk_size}), but its chunks hold {found} {kind.items} "
                f"({', '.join(chunk_stem(k) for k in extra[:4])} beyond them); expected the "
                "header to count every chunk"
            )
        return num_chunks

    def _row_count(self, k: int) -> int:
        with contextlib.suppress(ValueError):
            doc = read_json(self.paths(k)[1])
            if isinstance(doc, dict) and isinstance(doc.get("rows"), list):
                return len(doc["rows"])
        return 0

    def read_chunk(self, layout: ChunkLayout) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
        """Read and verify both files of a chunk.

        Returns
        -------
        (tensors, rows):
            The tensors of ``layout.tensors`` (float32, ``(len(items), *shape)``) and the rows.

        Raises
        ------
        ForeignStoreError
            The chunk belongs to a store of another kind.
        ValueError
            Naming the file: anything missing, unreadable or inconsistent with ``layout``.
        """
        import torch
        from safetensors import SafetensorError, safe_open

        kind, k = self.kind, layout.index
        st_path, js_path = self.paths(k)
        for p in (st_path, js_path):
            if not p.exists():
                raise ValueError(f"{str(p)!r} is missing")
        doc = read_json(js_path)
        rows = doc.get("rows") if isinstance(doc, dict) else None
        if not isinstance(rows, list) or doc.get("chunk") != k:
            raise ValueError(
                f"{str(js_path)!r}: expected an object with 'chunk': {k} and a 'rows' list of "
                "objects"
            )
        fmt = doc.get("format")
        if fmt != kind.format:
            error = ForeignStoreError if isinstance(fmt, str) else ValueError
            raise error(
                f"{str(js_path)!r}: field 'format' is {fmt!r}, expected {kind.format!r} (a chunk "
                f"of {kind.a_noun})"
            )
        for j, row in enumerate(rows):
            if not isinstance(row, dict):
                raise ValueError(
                    f"{str(js_path)!r}: field 'rows'[{j}] is a {type(row).__name__} ({row!r:.40}), "
                    f"expected an object (one per {kind.item})"
                )
        stored: dict[str, Tensor] = {}
        try:
            # safe_open checks the header and that the file covers every tensor; only the
            # tensors of the layout are read.
            with safe_open(st_path, framework="pt") as f:
                keys = set(f.keys())
                for name in layout.tensors:
                    if name in keys:
                        stored[name] = f.get_tensor(name)
        except (SafetensorError, OSError, RuntimeError) as err:
            raise ValueError(
                f"{str(st_path)!r} is truncated or corrupt ({err}); delete it and re-run "
                f"{kind.writer} with the same config to regenerate it"
            ) from None
        n = len(layout.items)
        names = list(layout.tensors)
        for name, shape in layout.tensors.items():
            if name not in stored:
                raise ValueError(
                    f"{str(st_path)!r} has no tensor {name!r}; expected the {len(names)} tensors "
                    f"{names[0]} .. {names[-1]} of {kind.a_noun} chunk"
                )
            t = stored[name]
            if t.dtype != torch.float32 or tuple(t.shape) != (n, *shape):
                raise ValueError(
                    f"{str(st_path)!r}: tensor {name!r} is {t.dtype} {tuple(t.shape)}, expected "
                    f"float32 ({', '.join(map(str, (n, *shape)))}): {n} {kind.items} as "
                    f"{kind.header} declares, all of one architecture"
                )
        first, last = layout.items.start, layout.items.stop - 1
        span = f"{kind.items} {first}..{last} of chunk {k}"
        if len(rows) != n:
            raise ValueError(
                f"{str(js_path)!r} has {len(rows)} metadata rows, expected {n} ({span}, one row "
                f"per {kind.item})"
            )
        got = [r.get("index") for r in rows]
        if got != list(layout.items):
            raise ValueError(
                f"{str(js_path)!r}: rows have indices {got[:8]}{'…' if len(got) > 8 else ''}, "
                f"expected {span}"
            )
        if layout.seeds is not None and [r.get("seed") for r in rows] != list(layout.seeds):
            raise ValueError(
                f"{str(js_path)!r}: {kind.item} seeds do not belong to this {kind.noun}'s seed"
            )
        return stored, rows


def _is_temp_of(name: str, target: str) -> bool:
    return name.startswith(f".{target}.") and name.endswith(".tmp")


def _store_format(path: Path) -> str | None:
    """The ``"format"`` of a weightspace store's header or chunk JSON at ``path``, else ``None``."""
    try:
        if path.stat().st_size > 2**20:  # headers are small; do not parse large files
            return None
        doc = read_json(path)
    except (OSError, ValueError):
        return None
    fmt = doc.get("format") if isinstance(doc, dict) else None
    return fmt if isinstance(fmt, str) and fmt.startswith("weightspace-") else None


def _quietly_clean(folder: Path, names: Sequence[str]) -> None:
    # Temp files are never read as data: one that cannot be removed (a read-only folder) is left,
    # and the write that follows reports the real error, naming its target.
    with contextlib.suppress(OSError):
        clean_temp_files(folder, names)
