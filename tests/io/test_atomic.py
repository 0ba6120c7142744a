import json
import os
import stat

import pytest
import torch
from safetensors.torch import load_file

from weightspace import NetworkSpec
from weightspace.io import (
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


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_writers_produce_files_with_one_mode_and_no_leftovers(tmp_path):
    write_json({"a": 1}, tmp_path / "a.json")
    write_safetensors({"t": torch.arange(3.0)}, tmp_path / "t.safetensors", metadata={"k": "v"})
    save_torch({"x": torch.ones(2)}, tmp_path / "c.pt")
    write_lines([{"e": 1}, {"e": 2}], tmp_path / "m.jsonl")
    modes = {_mode(tmp_path / n) for n in ("a.json", "t.safetensors", "c.pt", "m.jsonl")}
    mask = os.umask(0o022)
    os.umask(mask)
    assert modes == {0o666 & ~mask}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.json",
        "c.pt",
        "m.jsonl",
        "t.safetensors",
    ]
    assert torch.equal(load_file(str(tmp_path / "t.safetensors"))["t"], torch.arange(3.0))
    assert torch.load(tmp_path / "c.pt", weights_only=True)["x"].sum() == 2
    assert (tmp_path / "m.jsonl").read_text() == '{"e": 1}\n{"e": 2}\n'


def test_json_is_jsonable_and_nan_free(tmp_path):
    write_json({"x": float("nan"), "t": (1, 2), "p": tmp_path}, tmp_path / "a.json", indent=None)
    assert json.loads((tmp_path / "a.json").read_text()) == {
        "x": None,
        "t": [1, 2],
        "p": str(tmp_path),
    }
    assert jsonable({1: [float("inf"), 0.5]}) == {"1": [None, 0.5]}


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a.json"
    write_json({"v": 1}, target)
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert read_json(target) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_os_errors_name_the_target_not_the_temp_file(tmp_path):
    with pytest.raises(OSError) as info:
        write_text("x", tmp_path / "nodir" / "x.png")
    assert info.value.filename == str(tmp_path / "nodir" / "x.png")
    assert ".tmp" not in str(info.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="file"):
        write_json({}, tmp_path / "file" / "a.json")


def test_permission_errors_name_the_target(tmp_path, monkeypatch):
    """A read-only folder (root may write anyway, so the OS refusal is simulated)."""

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(src))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        write_json({}, tmp_path / "a.json")
    assert info.value.filename == str(tmp_path / "a.json")
    assert "Permission denied" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_clean_temp_files_removes_only_temp_files(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / ".a.json.123-abcd.tmp").write_text("half")
    (tmp_path / ".b.pt.9-ffff.tmp").write_text("half")
    assert clean_temp_files(tmp_path, ["a.json"]) == 1
    assert (tmp_path / ".b.pt.9-ffff.tmp").exists()
    assert clean_temp_files(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_json_names_the_file(tmp_path):
    with pytest.raises(ValueError, match=r"x\.json' is missing"):
        read_json(tmp_path / "x.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match=r"bad\.json' is not valid JSON"):
        read_json(tmp_path / "bad.json")


def test_spec_dict_roundtrip_and_errors():
    spec = NetworkSpec((1, 4, 3), ((3, 3), ()))
    assert NetworkSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert NetworkSpec.from_dict({"widths": [2, 3]}) == NetworkSpec((2, 3))
    with pytest.raises(ValueError, match=r"run/config\.json"):
        NetworkSpec.from_dict({"widths": [2, 0]}, "run/config.json")
    with pytest.raises(ValueError, match=r"zoo\.json: expected a NetworkSpec"):
        NetworkSpec.from_dict("2-3", "zoo.json")
