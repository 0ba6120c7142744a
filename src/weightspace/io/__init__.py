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
