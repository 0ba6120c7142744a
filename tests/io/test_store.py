"""weightspace.io.store: the chunked store's contract, on a toy kind of store."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from weightspace.io.store import (
    ChunkLayout,
    ChunkStore,
    ForeignStoreError,
    StoreKind,
    header_int,
    header_ints,
    header_spec,
    store_threads,
)

TOY = StoreKind("weightspace-toy", 1, "toy.json", "items", "item", "toy store", "make_toy")
OTHER = StoreKind("weightspace-other", 1, "other.json", "items", "item", "other store", "other")
TENSORS = {"w": (3,)}
CONFIG = {"seed": 0, "size": 5}


def layout(k: int, count: int = 5, chunk_size: int = 2) -> ChunkLayout:
    items = range(k * chunk_size, min((k + 1) * chunk_size, count))
    return ChunkLayout(k, items, TENSORS, [10 + i for i in items])


def chunk(k: int, count: int = 5, chunk_size: int = 2):
    items = layout(k, count, chunk_size).items
    tensors = {"w": torch.arange(3.0).repeat(len(items), 1) + k}
    return tensors, [{"index": i, "seed": 10 + i} for i in items]


def make(root: Path, kind: StoreKind = TOY, threads: int = 1, *, count: int = 5) -> ChunkStore:
    """A finished store of ``count`` items in chunks of 2, as a writer would leave it."""
    store = ChunkStore(root, kind)
    store.check_resume(CONFIG, threads)
    header = {"format": kind.format, "version": 1, "config": CONFIG, "threads": threads}
    owned = store.begin({**header, kind.count_field: count, "chunk_size": 2}, -(-count // 2), 0, 1)
    for k in store.missing(owned, lambda k: layout(k, count)):
        store.write_chunk(k, *chunk(k, count))
    return store


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ------------------------------------------------------------------- kinds (#1)
def test_a_store_of_another_kind_is_refused_and_left_intact(tmp_path: Path) -> None:
    other = make(tmp_path / "other", OTHER).root
    before = snapshot(other)
    with pytest.raises(
        ForeignStoreError, match=r"holds a 'weightspace-other' store \(other.json\)"
    ):
        make(other)
    # Without its header, the chunks still name their kind.
    (other / "other.json").unlink()
    with pytest.raises(ForeignStoreError, match=r"chunk-00000.json' is a chunk of a 'weightspace-"):
        make(other)
    assert snapshot(other) == {k: v for k, v in before.items() if k != "other.json"}


def test_a_non_empty_folder_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.png").write_bytes(b"not a store")
    with pytest.raises(ForeignStoreError, match=r"is not empty \(cat.png\) and holds no toy.json"):
        make(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["cat.png"]
    # An empty folder, a new one, and a finished store of the same kind are all fine.
    (tmp_path / "empty").mkdir()
    make(tmp_path / "empty")
    make(tmp_path / "new" / "nested")
    make(tmp_path / "empty")  # resumes: nothing to do


def test_a_foreign_chunk_inside_a_store_is_never_overwritten(tmp_path: Path) -> None:
    store = make(tmp_path / "s")
    path = store.paths(1)[1]
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "format": "weightspace-other"}))
    with pytest.raises(
        ForeignStoreError, match=r"chunk-00001.json': field 'format' is 'weightspace-"
    ):
        make(store.root)
    assert json.loads(path.read_text())["format"] == "weightspace-other"


# --------------------------------------------------------------------- resume
def test_resume_checks_config_and_threads(tmp_path: Path) -> None:
    store = make(tmp_path / "s", threads=1)
    with pytest.raises(ValueError, match=r"another config \(size: stored 5, requested 6\)"):
        store.check_resume({**CONFIG, "size": 6}, 1)
    with pytest.raises(
        ValueError,
        match=r"written with 1 torch threads per process, this run has 2; .*resume with 1",
    ):
        store.check_resume(CONFIG, 2)
    store.check_resume(CONFIG, 1)
    # Stores written before threads were recorded are resumed without the check.
    header = json.loads(store.header_path.read_text())
    del header["threads"]
    store.header_path.write_text(json.dumps(header))
    store.check_resume(CONFIG, 2)


def test_resume_checks_the_device_type(tmp_path: Path) -> None:
    store = make(tmp_path / "s")
    header = json.loads(store.header_path.read_text())
    # Stores written before the device was recorded were computed on the CPU: they resume there.
    assert "device" not in header
    store.check_resume(CONFIG, 1, "cpu")
    with pytest.raises(
        ValueError, match=r"computed on device 'cpu', this run is on 'cuda'; .*--device cpu"
    ):
        store.check_resume(CONFIG, 1, "cuda")
    store.header_path.write_text(json.dumps({**header, "device": "cuda"}))
    store.check_resume(CONFIG, 1, "cuda")
    with pytest.raises(ValueError, match=r"computed on device 'cuda', this run is on 'cpu'"):
        store.check_resume(CONFIG, 1, "cpu")


def test_store_threads() -> None:
    assert store_threads(None, 2) == 1  # torchrun: one thread per process
    assert store_threads(None, 1) == torch.get_num_threads()
    assert store_threads(3, 2) == 3
    with pytest.raises(ValueError, match="threads must be a positive int"):
        store_threads(0, 1)


def test_resume_skips_verified_chunks_and_redoes_broken_ones(tmp_path: Path) -> None:
    store = make(tmp_path / "s")
    good = store.paths(0)[1].stat().st_mtime_ns
    store.paths(1)[0].write_bytes(b"truncated")
    store.paths(2)[1].unlink()
    (store.chunks / ".chunk-00002.json.1-dead.tmp").write_text("half")
    assert store.missing([0, 1, 2], layout) == [1, 2]
    assert store.begin({}, 3, 0, 1) == [0, 1, 2]
    assert not list(store.chunks.glob("*.tmp"))
    make(store.root)
    assert store.missing([0, 1, 2], layout) == []
    assert store.paths(0)[1].stat().st_mtime_ns == good


def test_rank_sharding_owns_every_world_th_chunk(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path / "s", TOY)
    assert store.begin({"format": TOY.format}, 7, 1, 3) == [1, 4]
    assert not store.header_path.exists()  # rank 0 writes the header
    assert store.begin({"format": TOY.format}, 7, 0, 3) == [0, 3, 6]
    assert store.header_path.exists()


@pytest.mark.parametrize("spelling", ["toy", "./toy/", "ABSOLUTE"])
def test_the_same_folder_spelled_differently_resumes(tmp_path: Path, monkeypatch, spelling) -> None:
    monkeypatch.chdir(tmp_path)
    make(Path("toy"))
    before = snapshot(tmp_path / "toy")
    root = tmp_path / "toy" if spelling == "ABSOLUTE" else Path(spelling)
    store = make(root)  # accepted: nothing to redo
    assert store.missing([0, 1, 2], layout) == []
    assert snapshot(tmp_path / "toy") == before


# ------------------------------------------------------------------ OS errors (#6)
def test_out_that_is_a_file_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "toy"
    path.write_text("a file")
    with pytest.raises(
        ValueError, match=r"toy' is a file, not a folder; expected the output folder"
    ):
        make(path)
    assert path.read_text() == "a file"


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` unwritable, for root too (``chattr +i``; root ignores the mode bits)."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("running as root without chattr: cannot make a folder read-only")
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode:
            pytest.skip("chattr +i is not supported on this file system")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        mode = folder.stat().st_mode
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        try:
            yield
        finally:
            folder.chmod(mode)


def test_a_read_only_folder_gives_one_os_error_naming_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    # A temp file that a killed run left: its clean-up must not fail a second time.
    (folder / ".toy.json.1-dead.tmp").write_text("half")
    with read_only(folder), pytest.raises(OSError) as info:
        make(folder)
    assert info.value.filename == str(folder / "toy.json")
    assert "\n" not in str(info.value) and str(folder / "toy.json") in str(info.value)
    assert ".tmp" not in str(info.value)
    with read_only(tmp_path), pytest.raises(OSError) as info:
        make(tmp_path / "new")
    assert str(tmp_path / "new") in str(info.value)


def test_chunk_files_get_the_mode_of_ordinary_files(tmp_path: Path) -> None:
    """#9: safetensors chunks are not 0600 while their JSON is 0644."""
    store = make(tmp_path / "s")
    mask = os.umask(0)
    os.umask(mask)
    st, js = store.paths(0)
    modes = {stat.S_IMODE(p.stat().st_mode) for p in (st, js, store.header_path)}
    assert modes == {0o666 & ~mask}


# ------------------------------------------------------------------- reading
def test_header_counts_are_checked_against_the_chunks(tmp_path: Path) -> None:
    """#3: a header that counts fewer items than its chunks hold is refused, naming both."""
    store = make(tmp_path / "s", count=5)
    assert store.require_chunks(5, 2) == 3
    with pytest.raises(
        ValueError, match=r"toy.json' says items 3 \(2 chunks of 2\), but its chunks hold 4 items"
    ):
        store.require_chunks(3, 2)  # the last chunk (1 item) is beyond a header of 3
    with pytest.raises(ValueError, match=r"incomplete: chunk-00003.safetensors, chunk-00003.json"):
        store.require_chunks(7, 2)
    # A chunk with more rows than the header leaves for it names both numbers too.
    with pytest.raises(
        ValueError, match=r"tensor 'w' is torch.float32 \(1, 3\), expected float32 \(2, 3\)"
    ):
        store.read_chunk(ChunkLayout(2, range(4, 6), TENSORS))


def test_chunk_verification_errors_name_the_file(tmp_path: Path) -> None:
    store = make(tmp_path / "s")
    st, js = store.paths(1)
    rows = js.read_text()
    doc = json.loads(rows)
    js.write_text(json.dumps({**doc, "rows": ["a string", *doc["rows"][1:]]}))
    with pytest.raises(ValueError, match=r"chunk-00001.json': field 'rows'\[0\] is a str"):
        store.read_chunk(layout(1))
    js.write_text(json.dumps({**doc, "rows": doc["rows"][:1]}))
    with pytest.raises(ValueError, match=r"chunk-00001.json' has 1 metadata rows, expected 2"):
        store.read_chunk(layout(1))
    js.write_text(json.dumps({**doc, "rows": doc["rows"][::-1]}))
    with pytest.raises(
        ValueError, match=r"rows have indices \[3, 2\], expected items 2..3 of chunk 1"
    ):
        store.read_chunk(layout(1))
    js.write_text(rows)
    with pytest.raises(ValueError, match=r"seeds do not belong"):
        store.read_chunk(ChunkLayout(1, range(2, 4), TENSORS, [0, 1]))
    with pytest.raises(ValueError, match=r"chunk-00001.safetensors' has no tensor 'v'"):
        store.read_chunk(ChunkLayout(1, range(2, 4), {"v": (3,)}))
    st.write_bytes(st.read_bytes()[:-4])
    with pytest.raises(ValueError, match=r"chunk-00001.safetensors' is truncated or corrupt"):
        store.read_chunk(layout(1))


def test_header_fields_give_one_line_errors_naming_file_and_field(tmp_path: Path) -> None:
    """#5: malformed metadata gives a ValueError naming the file and the field."""
    path = tmp_path / "toy.json"
    for header, call, field in [
        ({"chunk_size": 0}, lambda h: header_int(h, "chunk_size", path), "chunk_size"),
        ({"networks": 0}, lambda h: header_int(h, "networks", path), "networks"),
        ({"networks": "12"}, lambda h: header_int(h, "networks", path), "networks"),
        ({"save_epochs": []}, lambda h: header_ints(h, "save_epochs", path), "save_epochs"),
        ({"save_epochs": [1, "2"]}, lambda h: header_ints(h, "save_epochs", path), "save_epochs"),
        ({"spec": {"widths": [2]}}, lambda h: header_spec(h, path), "spec"),
        ({"spec": {"widths": [2], "kernel_shapes": [[]]}}, lambda h: header_spec(h, path), "spec"),
    ]:
        with pytest.raises(ValueError, match=rf"toy.json'.*field '{field}'") as info:
            call(header)
        assert "\n" not in str(info.value)
    assert header_int({"n": 3}, "n", path) == 3
    assert header_ints({"e": [0, 2]}, "e", path) == [0, 2]
    assert header_spec({"spec": {"widths": [2, 3], "kernel_shapes": [[]]}}, path).widths == (2, 3)


def test_read_header_checks_format_and_version(tmp_path: Path) -> None:
    store = make(tmp_path / "s")
    assert store.read_header()["format"] == TOY.format
    with pytest.raises(
        ValueError, match=r"other.json' is missing; expected an other store written"
    ):
        ChunkStore(tmp_path / "s", OTHER).read_header()
    store.header_path.write_text(json.dumps({"format": TOY.format, "version": 2}))
    with pytest.raises(ValueError, match="format version 2, expected 1"):
        store.read_header()
    store.header_path.write_text(json.dumps({"format": "weightspace-other"}))
    with pytest.raises(ValueError, match="format 'weightspace-other', expected 'weightspace-toy'"):
        store.read_header()
