"""Files: one atomic writer for every kind of output, JSON helpers, and the chunked store."""

from weightspace.io.atomic import (
    atomic_path,
    clean_temp_files,
    jsonable,
    read_json,
    save_torch,
    write_json,
    write_lines,
    write_safetensors,
    write_text,
)
from weightspace.io.store import ChunkLayout, ChunkStore, ForeignStoreError, StoreKind

__all__ = [
    "ChunkLayout",
    "ChunkStore",
    "ForeignStoreError",
    "StoreKind",
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
