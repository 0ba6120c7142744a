"""The store contract on real zoos and INR sets: kinds, counts, values, threads, headers."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from weightspace.data.container import Zoo
from weightspace.data.inr import InrConfig, fit_inrs, load_inrs
from weightspace.data.zoo import ZooConfig, generate_zoo, load_zoo
from weightspace.train.loop import resolve_device

ZOO = {"dataset": "digits", "networks": 6, "seed": 3, "epochs": 1, "chunk_size": 2}
ZOO_LIMITS = {"limit_train": 200, "limit_test": 100}
INRS = {"dataset": "digits", "seed": 1, "limit": 4, "steps": 3, "chunk_size": 3}  # 8 INRs


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "zoo"
    return generate_zoo(ZooConfig(out=out, **ZOO, **ZOO_LIMITS), progress=False, threads=1)


@pytest.fixture(scope="module")
def inrs(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inrs") / "inrs"
    return fit_inrs(InrConfig(out=str(out), **INRS), progress=False, threads=1)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_same_store(a: Path, b: Path) -> None:
    """The same files, every tensor equal exactly and every JSON document equal.

    (Not the bytes: safetensors writes its metadata keys in no fixed order.)
    """
    assert snapshot(a).keys() == snapshot(b).keys()
    for name in snapshot(a):
        if name.endswith(".safetensors"):
            ta, tb = load_file(a / name), load_file(b / name)
            assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name
        else:
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text()), name


def copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "copy"))


def edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


# ----------------------------------------------------------------- kinds (#1)
def test_zoo_into_an_inr_folder_fails_and_keeps_the_inrs(inrs: Path, tmp_path: Path) -> None:
    folder = copy(inrs, tmp_path)
    before = snapshot(folder)
    with pytest.raises(
        ValueError, match=r"holds a 'weightspace-inrs' store \(inrs.json\), not a zoo"
    ):
        generate_zoo(ZooConfig(out=folder, **ZOO, **ZOO_LIMITS), progress=False)
    assert snapshot(folder) == before
    assert len(load_inrs(folder)) == 8


def test_inrs_into_a_zoo_folder_fail_and_keep_the_zoo(zoo: Path, tmp_path: Path) -> None:
    folder = copy(zoo, tmp_path)
    before = snapshot(folder)
    with pytest.raises(
        ValueError, match=r"holds a 'weightspace-zoo' store \(zoo.json\), not an INR"
    ):
        fit_inrs(InrConfig(out=str(folder), **INRS), progress=False)
    (folder / "zoo.json").unlink()  # even without its header, the chunks name their kind
    with pytest.raises(ValueError, match=r"chunk-00000.json' is a chunk of a 'weightspace-zoo'"):
        fit_inrs(InrConfig(out=str(folder), **INRS), progress=False)
    assert snapshot(folder) == {k: v for k, v in before.items() if k != "zoo.json"}


# ---------------------------------------------------------------- counts (#3)
def test_zoo_header_counting_fewer_networks_is_refused(zoo: Path, tmp_path: Path) -> None:
    folder = copy(zoo, tmp_path)
    edit_json(folder / "zoo.json", lambda h: h.update(networks=4))
    with pytest.raises(
        ValueError, match=r"zoo.json' says networks 4 \(2 chunks of 2\), but its chunks hold 6"
    ):
        load_zoo(folder)
    edit_json(folder / "zoo.json", lambda h: h.update(networks=5))
    with pytest.raises(
        ValueError, match=r"chunk-00002.safetensors': tensor 'epoch1.W1' is .*\(2, "
    ):
        load_zoo(folder)


def test_inr_header_counting_fewer_inrs_is_refused(inrs: Path, tmp_path: Path) -> None:
    folder = copy(inrs, tmp_path)
    edit_json(folder / "inrs.json", lambda h: h.update(num_inrs=6))
    with pytest.raises(
        ValueError,
        match=r"inrs.json' says num_inrs 6 \(2 chunks of 3\), but its chunks hold 8 INRs",
    ):
        load_inrs(folder)


# ----------------------------------------------------------- target values (#4)
@pytest.mark.parametrize("value", [7.5, -3.0])
def test_out_of_range_accuracies_are_refused(zoo: Path, tmp_path: Path, value: float) -> None:
    folder = copy(zoo, tmp_path)

    def edit(doc):
        doc["rows"][1]["metrics"][0]["test_accuracy"] = value

    edit_json(folder / "chunks" / "chunk-00001.json", edit)
    with pytest.raises(
        ValueError,
        match=rf"chunk-00001.json': network 3 has 'test_accuracy' {value} at epoch 1; expected an "
        r"accuracy in \[0, 1\]",
    ):
        load_zoo(folder)


def test_a_network_without_accuracy_must_be_diverged(zoo: Path, tmp_path: Path) -> None:
    folder = copy(zoo, tmp_path)
    edit_json(
        folder / "chunks" / "chunk-00000.json",
        lambda d: d["rows"][0]["metrics"][0].update(test_accuracy=None),
    )
    with pytest.raises(ValueError, match=r"network 0 has no 'test_accuracy' at epoch 1 but is not"):
        load_zoo(folder)
    edit_json(folder / "chunks" / "chunk-00000.json", lambda d: d["rows"][0].update(diverged=True))
    edit_json(
        folder / "chunks" / "chunk-00000.json",
        lambda d: d["rows"][0]["metrics"][0].update(diverged=True),
    )
    loaded = load_zoo(folder)
    assert loaded.metadata[0]["diverged"] and torch.isnan(loaded.test_accuracy[0])


def test_the_zoo_container_refuses_out_of_range_targets(zoo: Path) -> None:
    loaded = load_zoo(zoo)
    for bad in (7.5, -3.0, float("inf")):
        accuracy = loaded.test_accuracy.clone()
        accuracy[2] = bad
        with pytest.raises(ValueError, match=r"zoo\)?: network 2 has test_accuracy .* in \[0, 1\]"):
            Zoo(loaded.spec, loaded.features, accuracy, loaded.metadata, loaded.split, loaded.info)
    accuracy = loaded.test_accuracy.clone()
    accuracy[2] = float("nan")  # diverged: allowed, and dropped by finite()
    kept, dropped = Zoo(
        loaded.spec, loaded.features, accuracy, loaded.metadata, loaded.split
    ).finite()
    assert dropped == 1 and len(kept) == len(loaded) - 1


# ------------------------------------------------------ malformed metadata (#5)
@pytest.mark.parametrize(
    ("field", "value"),
    [("chunk_size", 0), ("save_epochs", []), ("networks", 0), ("networks", "6")],
)
def test_malformed_zoo_header_fields(zoo: Path, tmp_path: Path, field: str, value) -> None:
    folder = copy(zoo, tmp_path)
    edit_json(folder / "zoo.json", lambda h: h.update({field: value}))
    with pytest.raises(
        ValueError, match=rf"zoo.json': field '{field}' is {re.escape(repr(value))}"
    ) as info:
        load_zoo(folder)
    assert "\n" not in str(info.value)


def test_malformed_zoo_rows(zoo: Path, tmp_path: Path) -> None:
    folder = copy(zoo, tmp_path)
    path = folder / "chunks" / "chunk-00002.json"
    original = path.read_text()
    edit_json(path, lambda d: d["rows"].__setitem__(0, "network 4"))
    with pytest.raises(ValueError, match=r"chunk-00002.json': field 'rows'\[0\] is a str"):
        load_zoo(folder)
    path.write_text(original)
    edit_json(path, lambda d: d["rows"][1]["metrics"][0].update(test_accuracy="0.9"))
    with pytest.raises(
        ValueError, match=r"chunk-00002.json': network 5 has 'test_accuracy' '0.9' at epoch 1"
    ):
        load_zoo(folder)
    path.write_text(original)
    edit_json(path, lambda d: d["rows"][1].update(metrics="none"))
    with pytest.raises(ValueError, match=r"chunk-00002.json': network 5 has field 'metrics'"):
        load_zoo(folder)


# ------------------------------------------------------------------ threads (#7)
def test_a_resume_under_another_thread_count_is_refused(zoo: Path, tmp_path: Path) -> None:
    folder = copy(zoo, tmp_path)
    assert json.loads((folder / "zoo.json").read_text())["threads"] == 1
    (folder / "chunks" / "chunk-00002.json").unlink()  # unfinished: a resume has work to do
    before = snapshot(folder)
    with pytest.raises(
        ValueError, match=r"written with 1 torch threads per process, this run has 2"
    ):
        generate_zoo(ZooConfig(out=folder, **ZOO, **ZOO_LIMITS), progress=False, threads=2)
    assert snapshot(folder) == before
    generate_zoo(ZooConfig(out=folder, **ZOO, **ZOO_LIMITS), progress=False, threads=1)
    assert_same_store(folder, zoo)


def test_stores_record_the_device_and_refuse_a_resume_on_another(
    zoo: Path, inrs: Path, tmp_path: Path
) -> None:
    made_on = resolve_device("auto").type  # the fixtures' default device
    for name, folder, header in (("zoo", zoo, "zoo.json"), ("inrs", inrs, "inrs.json")):
        stored = json.loads((folder / header).read_text())
        assert stored["device"] == made_on, name
        assert "device" not in stored["config"], name  # a header field, as threads
    folder = copy(zoo, tmp_path)
    edit_json(folder / "zoo.json", lambda h: h.update(device="elsewhere"))
    (folder / "chunks" / "chunk-00002.json").unlink()
    before = snapshot(folder)
    with pytest.raises(ValueError, match=r"computed on device 'elsewhere', this run is on 'cpu'"):
        generate_zoo(ZooConfig(out=folder, device="cpu", **ZOO, **ZOO_LIMITS), progress=False)
    assert snapshot(folder) == before


def test_a_store_from_before_the_device_was_recorded_resumes_on_the_cpu(
    zoo: Path, tmp_path: Path
) -> None:
    if json.loads((zoo / "zoo.json").read_text())["device"] != "cpu":
        pytest.skip("the fixture zoo was made on CUDA: its chunks are not the CPU's")
    folder = copy(zoo, tmp_path)
    edit_json(folder / "zoo.json", lambda h: h.pop("device"))
    (folder / "chunks" / "chunk-00002.json").unlink()
    generate_zoo(
        ZooConfig(out=folder, device="cpu", **ZOO, **ZOO_LIMITS), progress=False, threads=1
    )
    assert "device" not in json.loads((folder / "zoo.json").read_text())  # the header is kept
    (folder / "zoo.json").write_text((zoo / "zoo.json").read_text())
    assert_same_store(folder, zoo)


def test_two_ranks_of_one_thread_equal_one_process_of_one_thread(zoo: Path, tmp_path: Path) -> None:
    """Rank 0 and rank 1 of 2, run one after the other (RANK/WORLD_SIZE, one thread each)."""
    out = tmp_path / "ranks"
    code = (
        "from weightspace.data.zoo import ZooConfig, generate_zoo\n"
        f"generate_zoo(ZooConfig(out={str(out)!r}, **{ {**ZOO, **ZOO_LIMITS}!r}), progress=False)\n"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    for rank in (1, 0):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": "2", "OMP_NUM_THREADS": "1"}
        env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
        subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    assert_same_store(out, zoo)


# ------------------------------------------------------------ INR header (#8)
def test_inr_header_dataset_must_match_its_images(inrs: Path, tmp_path: Path) -> None:
    folder = copy(inrs, tmp_path)
    edit_json(folder / "inrs.json", lambda h: h.update(dataset="mnist"))
    with pytest.raises(ValueError, match=r"inrs.json': field 'dataset' is 'mnist' but its config"):
        load_inrs(folder)
    edit_json(folder / "inrs.json", lambda h: h["config"].update(dataset="mnist"))
    with pytest.raises(
        ValueError,
        match=r"inrs.json': field 'image_shape' is \[1, 8, 8\], but dataset 'mnist' has images of "
        r"\[1, 28, 28\]",
    ):
        load_inrs(folder)
    edit_json(folder / "inrs.json", lambda h: h.update(dataset="cifar"))
    with pytest.raises(
        ValueError, match=r"inrs.json': field 'dataset' is 'cifar', expected one of"
    ):
        load_inrs(folder)
    edit_json(folder / "inrs.json", lambda h: h.update(num_inrs="8", dataset="digits"))
    with pytest.raises(ValueError, match=r"inrs.json': field 'num_inrs' is '8'"):
        load_inrs(folder)
