"""weightspace.data.inr: SIRENs fitted in batches, stored resumably, loaded and rendered."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.container import SPLITS
from weightspace.data.images import load_images
from weightspace.data.inr import (
    OMEGA_0,
    SIREN_SPEC,
    InrConfig,
    InrDataset,
    Sine,
    fit_inrs,
    init_sirens,
    inr_seed,
    load_inrs,
    pixel_grid,
    psnr,
    render,
    show_grid,
    siren_activation,
    siren_module,
    source_images,
)
from weightspace.functional import forward

# The run most tests compare against: 12 train (1 of them validation) and 12 test digits,
# 2 augmentation copies: 12 + 12 + 2 * 11 = 46 INRs in 10 chunks of 5.
BASE = {
    "dataset": "digits",
    "seed": 3,
    "limit": 12,
    "augment": 2,
    "steps": 30,
    "chunk_size": 5,
    "batch_networks": 3,
}
NUM_INRS = 46


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", limit_train=BASE["limit"], limit_test=BASE["limit"])


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """An uninterrupted single-process run of BASE."""
    out = tmp_path_factory.mktemp("inrs") / "reference"
    return fit_inrs(InrConfig(out=str(out), **BASE), progress=False, threads=1)


def chunk_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "chunks").iterdir())


def assert_same_run(a: Path, b: Path, atol: float = 0.0) -> None:
    """Same files, same header and rows (exactly), same tensors (within ``atol``)."""
    assert chunk_files(a) == chunk_files(b)
    assert json.loads((a / "inrs.json").read_text()) == json.loads((b / "inrs.json").read_text())
    for name in chunk_files(a):
        if name.endswith(".json"):
            assert json.loads((a / "chunks" / name).read_text()) == json.loads(
                (b / "chunks" / name).read_text()
            ), name
        else:
            ta, tb = load_file(a / "chunks" / name), load_file(b / "chunks" / name)
            assert ta.keys() == tb.keys()
            for key in ta:
                torch.testing.assert_close(ta[key], tb[key], atol=atol, rtol=0, msg=key)


def copy_run(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# ------------------------------------------------------------- the SIREN itself
def test_siren_module_and_render_agree_on_the_omega_convention() -> None:
    module = siren_module(generator=torch.Generator().manual_seed(0)).double()
    assert NetworkSpec.from_module(module) == SIREN_SPEC == NetworkSpec((2, 32, 32, 1))
    assert [type(m) for m in module] == [torch.nn.Linear, Sine, torch.nn.Linear, Sine] + [
        torch.nn.Linear
    ]
    assert module[1].w0 == OMEGA_0 == 30.0 and "w0=30" in repr(module)
    assert not list(module[1].parameters())
    features = WeightSpaceFeatures.from_modules([module])
    image = render(features, 5, 7)
    assert image.shape == (1, 1, 5, 7)
    expected = module(pixel_grid(5, 7, dtype=torch.float64)).reshape(1, 1, 5, 7)
    torch.testing.assert_close(image, expected, atol=1e-12, rtol=0)
    # The convention: ω0 inside the activation, the output layer linear.
    direct = forward(features, pixel_grid(5, 7, dtype=torch.float64), lambda t: torch.sin(30 * t))
    torch.testing.assert_close(direct.reshape(1, 1, 5, 7), image, atol=0, rtol=0)
    t = torch.linspace(-2, 2, 11)
    torch.testing.assert_close(siren_activation(t), torch.sin(30 * t))
    # A control that must break: without ω0 the rendering differs.
    assert not torch.allclose(
        forward(features, pixel_grid(5, 7, dtype=torch.float64), "sin"), direct
    )


def test_render_is_differentiable_and_handles_channels() -> None:
    tensors = init_sirens(2, generator=torch.Generator().manual_seed(1))
    features = WeightSpaceFeatures.from_tensors([t.unsqueeze(1).requires_grad_() for t in tensors])
    render(features, 4, 4).square().sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in features.tensors)
    colour = NetworkSpec((2, 8, 3))
    rgb = WeightSpaceFeatures.from_tensors(
        [t.unsqueeze(1) for t in init_sirens(2, spec=colour, generator=torch.Generator())]
    )
    assert render(rgb, 3, 5).shape == (2, 3, 3, 5)
    with pytest.raises(ValueError, match="expected a dense network with 2 inputs"):
        render(WeightSpaceFeatures.from_modules([torch.nn.Linear(3, 1)]), 2, 2)


def test_siren_initialisation() -> None:
    n = 400
    W1, W2, W3, b1, b2, b3 = init_sirens(n, generator=torch.Generator().manual_seed(0))
    assert W1.shape == (n, 32, 2) and W3.shape == (n, 1, 32) and b3.shape == (n, 1)
    hidden = math.sqrt(6 / 32) / 30
    for t, bound in ((W1, 1 / 2), (W2, hidden), (W3, hidden), (b1, 2**-0.5), (b2, 32**-0.5)):
        assert t.abs().max() <= bound
        assert t.abs().max() > 0.99 * bound  # uniform on the whole interval
        assert abs(t.mean().item()) < 0.02 * bound
        # The variance of U(-a, a) is a² / 3.
        assert t.var().item() == pytest.approx(bound**2 / 3, rel=0.05)
    assert b3.abs().max() <= 32**-0.5
    again = init_sirens(n, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(again, (W1, W2, W3, b1, b2, b3)))
    # siren_module draws the same as one network of init_sirens.
    one = init_sirens(1, generator=torch.Generator().manual_seed(5))
    module = siren_module(generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(module[2].weight, one[1][0], atol=0, rtol=0)
    torch.testing.assert_close(module[4].bias, one[5][0], atol=0, rtol=0)


def test_pixel_grid_order() -> None:
    grid = pixel_grid(3, 4)
    assert grid.shape == (12, 2)
    # Row-major: coordinate 0 is the row, coordinate 1 the column, both from -1 to 1.
    assert grid[0].tolist() == [-1.0, -1.0] and grid[3].tolist() == [-1.0, 1.0]
    assert grid[4].tolist() == [0.0, -1.0] and grid[-1].tolist() == [1.0, 1.0]
    assert torch.equal(grid.reshape(3, 4, 2)[:, 0, 0], torch.linspace(-1, 1, 3))
    with pytest.raises(ValueError, match="height must be a positive int"):
        pixel_grid(0, 3)


def test_psnr_on_minus_one_to_one_scale() -> None:
    target = torch.zeros(2, 1, 4, 4)
    prediction = target.clone()
    prediction[0] += 0.1  # MSE 0.01 → 10 log10(4 / 0.01)
    prediction[1, 0, 0, 0] = 2.0  # MSE 4 / 16 = 0.25
    scores = psnr(prediction, target)
    assert scores.dtype == torch.float64
    assert scores[0].item() == pytest.approx(10 * math.log10(400), abs=1e-5)
    assert scores[1].item() == pytest.approx(10 * math.log10(16), abs=1e-9)
    assert psnr(target, target).isinf().all()
    with pytest.raises(ValueError, match="expected the same shape"):
        psnr(target, target[:, :, :2])


# ------------------------------------------------------------------- storage
def test_store_layout_and_load(reference_run: Path, digits) -> None:
    assert chunk_files(reference_run) == [
        f"chunk-{k:05d}.{ext}" for k in range(10) for ext in ("json", "safetensors")
    ]
    header = json.loads((reference_run / "inrs.json").read_text())
    assert header["format"] == "weightspace-inrs" and header["version"] == 1
    assert header["spec"] == {"widths": [2, 32, 32, 1], "kernel_shapes": [[], [], []]}
    assert header["dataset"] == "digits" and header["seed"] == 3 and header["omega_0"] == 30.0
    assert header["config"] == InrConfig(out="x", **BASE).to_json()
    assert header["num_inrs"] == NUM_INRS and header["weightspace_version"]
    stored = load_file(reference_run / "chunks" / "chunk-00000.safetensors")
    assert {k: tuple(v.shape) for k, v in stored.items()} == {
        "W1": (5, 32, 2),
        "W2": (5, 32, 32),
        "W3": (5, 1, 32),
        "b1": (5, 32),
        "b2": (5, 32),
        "b3": (5, 1),
    }
    data = load_inrs(reference_run)
    assert isinstance(data, InrDataset) and len(data) == NUM_INRS
    assert data.spec == SIREN_SPEC and data.features.spec == SIREN_SPEC
    assert data.num_classes == 10 and data.info["dataset"] == "digits"
    assert [r["index"] for r in data.metadata] == list(range(NUM_INRS))
    assert set(data.metadata[0]) == {
        "index",
        "label",
        "image_index",
        "source",
        "split",
        "copy",
        "seed",
        "psnr",
    }
    for row, label in zip(data.metadata, data.labels.tolist()):
        pool = digits.train_y if row["source"] == "train" else digits.test_y
        assert label == row["label"] == int(pool[row["image_index"]])
        assert row["seed"] == inr_seed(3, row["source"], row["image_index"], row["copy"])
    # Stored PSNRs are those of the stored weights, rendered against the original images.
    originals = source_images(data, digits)
    torch.testing.assert_close(
        psnr(render(data.features, 8, 8), originals),
        torch.tensor([r["psnr"] for r in data.metadata], dtype=torch.float64),
        atol=1e-3,
        rtol=0,
    )
    assert data.info["mean_psnr"] > 20


def test_augmentation_counts_and_splits_do_not_leak(reference_run: Path) -> None:
    data = load_inrs(reference_run)
    rows = data.metadata
    train = [r for r in rows if r["split"] == "train"]
    val = [r for r in rows if r["split"] == "val"]
    test = [r for r in rows if r["split"] == "test"]
    # 12 training digits: the last one (10 % rounded down, at least by index) is validation.
    assert sorted({r["image_index"] for r in val}) == [11]
    assert len(val) == 1 and val[0]["copy"] == 0
    assert len(test) == 12 and {r["copy"] for r in test} == {0}
    assert {r["source"] for r in test} == {"test"} and {r["source"] for r in train} == {"train"}
    assert len(train) == 11 * 3
    for i in range(11):
        assert sorted(r["copy"] for r in train if r["image_index"] == i) == [0, 1, 2]
    # No validation image has a training INR (no augmented copy leaks across).
    assert not {r["image_index"] for r in val} & {r["image_index"] for r in train}
    assert len({r["seed"] for r in rows}) == NUM_INRS  # every fit starts from its own init
    assert len(data.part("train")) == 33 and len(data.part("val")) == 1
    assert torch.equal(data.part("test").split, torch.full((12,), SPLITS["test"]))
    # Augmented copies are different networks of the same image.
    copies = data.subset(
        [r["index"] for r in rows if r["image_index"] == 0 and r["source"] == "train"]
    )
    assert (copies.features.flatten()[0] - copies.features.flatten()[1]).abs().max() > 0.01


def test_inr_dataset_subset_and_validation(reference_run: Path) -> None:
    data = load_inrs(reference_run)
    mask = data.labels == data.labels[0]
    sub = data.subset(mask)
    assert len(sub) == int(mask.sum()) and (sub.labels == data.labels[0]).all()
    assert torch.equal(sub.features.flatten(), data.features.flatten()[mask])
    with pytest.raises(ValueError, match="unknown split 'holdout'"):
        data.part("holdout")
    with pytest.raises(ValueError, match=r"labels has shape \(3,\), expected \(46,\)"):
        InrDataset(data.spec, data.features, data.labels[:3], data.split, data.metadata)
    with pytest.raises(ValueError, match="split holds unknown codes"):
        InrDataset(data.spec, data.features, data.labels, data.split + 5, data.metadata)


def test_deterministic_for_a_seed(reference_run: Path, tmp_path: Path) -> None:
    again = fit_inrs(InrConfig(out=str(tmp_path / "again"), **BASE), progress=False, threads=1)
    assert_same_run(reference_run, again)
    other = load_inrs(
        fit_inrs(
            InrConfig(out=str(tmp_path / "other"), **{**BASE, "seed": 4, "augment": 0}),
            progress=False,
        )
    )
    ref = load_inrs(reference_run)
    assert not torch.equal(other.features.flatten()[:5], ref.features.flatten()[:5])
    assert [r["label"] for r in other.metadata[:24]] == [r["label"] for r in ref.metadata[:24]]
    # An INR's seed depends on (seed, source, image, copy) only, never on its chunk.
    assert inr_seed(3, "train", 4, 1) == inr_seed(3, "train", 4, 1) != inr_seed(3, "test", 4, 1)


def test_resume_after_sigkill(reference_run: Path, tmp_path: Path) -> None:
    """Kill a real run once its first chunk is on disk; the re-run completes it."""
    out = tmp_path / "killed"
    # Each chunk sleeps 0.3 s first, so the run is still busy when the first chunk appears.
    code = (
        "import time\n"
        "from weightspace.data import inr\n"
        "from weightspace.train import siren\n"
        "real = siren.fit_sirens\n"
        "def slow(*args, **kwargs):\n"
        "    time.sleep(0.3)\n"
        "    return real(*args, **kwargs)\n"
        "siren.fit_sirens = slow\n"
        f"inr.fit_inrs(inr.InrConfig(out={str(out)!r}, **{BASE!r}), progress=False, threads=1)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    first = out / "chunks" / "chunk-00000.json"
    deadline = time.monotonic() + 60
    try:
        while not first.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no chunk appeared within 60 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    done = [n for n in chunk_files(out) if n.endswith(".json")]
    assert "chunk-00009.json" not in done  # killed before the end: resuming has work to do
    # What a kill in the middle of a write leaves behind: a temp file; and a half-written chunk.
    (out / "chunks" / ".chunk-00009.safetensors.999-dead.tmp").write_bytes(b"half a file")
    (out / "chunks" / "chunk-00005.safetensors").write_bytes(b"truncated")
    with pytest.raises(ValueError, match="incomplete"):
        load_inrs(out)
    mtime = first.stat().st_mtime_ns
    fit_inrs(InrConfig(out=str(out), **BASE), progress=False, threads=1)
    assert first.stat().st_mtime_ns == mtime  # a finished chunk is not redone
    assert not any(p.name.endswith(".tmp") for p in (out / "chunks").iterdir())
    assert_same_run(reference_run, out)
    # Running a finished run again changes nothing.
    fit_inrs(InrConfig(out=str(out), **BASE), progress=False, threads=1)
    assert_same_run(reference_run, out)


def test_torchrun_two_processes_equal_single_process(reference_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "torchrun"
    script = tmp_path / "fit.py"
    script.write_text(
        "import os\n"
        "from weightspace.data.inr import InrConfig, fit_inrs\n"
        f"fit_inrs(InrConfig(out={str(out)!r}, **{BASE!r}), progress=False)\n"
        "print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'])\n"
    )
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rank 0 of 2" in result.stdout and "rank 1 of 2" in result.stdout
    # Rank r wrote chunks k with k % 2 == r, one thread each; the folder equals the
    # single-process one-thread run exactly (a chunk's bytes depend on threads, not on ranks).
    assert_same_run(reference_run, out)


def test_rank_shards_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    config = InrConfig(out=str(tmp_path / "r"), **{**BASE, "augment": 0, "steps": 2})
    fit_inrs(config, progress=False)  # 24 INRs, chunks 0..4: rank 1 of 3 owns chunks 1 and 4
    assert chunk_files(tmp_path / "r") == [
        f"chunk-{k:05d}.{ext}" for k in (1, 4) for ext in ("json", "safetensors")
    ]
    assert not (tmp_path / "r" / "inrs.json").exists()  # rank 0's job
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match=r"RANK=3 must lie in \[0, WORLD_SIZE=3\)"):
        fit_inrs(config, progress=False)


# -------------------------------------------------------------------- errors
def test_config_errors(tmp_path: Path, reference_run: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        InrConfig(dataset="cifar10", out="x")
    with pytest.raises(ValueError, match=r"InrConfig.augment must be an int >= 0"):
        InrConfig(dataset="digits", out="x", augment=-1)
    with pytest.raises(ValueError, match=r"InrConfig.steps must be an int >= 1"):
        InrConfig(dataset="digits", out="x", steps=0)
    with pytest.raises(ValueError, match=r"InrConfig.lr must be a positive finite number"):
        InrConfig(dataset="digits", out="x", lr=float("nan"))
    with pytest.raises(ValueError, match=r"InrConfig.limit must be a positive int"):
        InrConfig(dataset="digits", out="x", limit=0)
    with pytest.raises(ValueError, match=r"val_fraction must be a number in \[0, 1\)"):
        InrConfig(dataset="digits", out="x", val_fraction=1.0)
    with pytest.raises(ValueError, match="config must be an InrConfig"):
        fit_inrs({"dataset": "digits"}, progress=False)
    out = copy_run(reference_run, tmp_path)
    with pytest.raises(ValueError, match=r"another config \(steps: stored 30, requested 31\)"):
        fit_inrs(InrConfig(out=str(out), **{**BASE, "steps": 31}), progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "inrs.json").write_text(json.dumps({"format": "weightspace-zoo"}))
    with pytest.raises(ValueError, match="is not a weightspace INR folder"):
        fit_inrs(InrConfig(out=str(foreign), **BASE), progress=False)


def _edit_header(folder: Path, **changes) -> None:
    path = folder / "inrs.json"
    header = json.loads(path.read_text())
    header.update(changes)
    path.write_text(json.dumps(header))


def _edit_rows(folder: Path, k: int, edit) -> None:
    path = folder / "chunks" / f"chunk-{k:05d}.json"
    doc = json.loads(path.read_text())
    edit(doc["rows"])
    path.write_text(json.dumps(doc))


def test_load_errors(reference_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"inrs.json' is missing"):
        load_inrs(tmp_path / "nowhere")
    out = copy_run(reference_run, tmp_path)
    header = (out / "inrs.json").read_text()

    (out / "inrs.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"inrs.json' is not valid JSON"):
        load_inrs(out)
    (out / "inrs.json").write_text(header)
    _edit_header(out, format="weightspace-zoo")
    with pytest.raises(ValueError, match="format 'weightspace-zoo', expected 'weightspace-inrs'"):
        load_inrs(out)
    (out / "inrs.json").write_text(header)
    _edit_header(out, version=2)
    with pytest.raises(ValueError, match="format version 2, expected 1"):
        load_inrs(out)
    (out / "inrs.json").write_text(header)
    _edit_header(out, spec={"widths": [2, 16, 1], "kernel_shapes": [[], []]})
    with pytest.raises(ValueError, match="expected the SIREN architecture"):
        load_inrs(out)
    (out / "inrs.json").write_text(header)
    _edit_header(out, spec={"widths": [2, 32]})
    with pytest.raises(ValueError, match=r"inrs.json' is malformed"):
        load_inrs(out)
    (out / "inrs.json").write_text(header)

    chunk = out / "chunks" / "chunk-00002.safetensors"
    original = chunk.read_bytes()
    chunk.unlink()
    with pytest.raises(ValueError, match=r"incomplete: chunk-00002.safetensors missing"):
        load_inrs(out)
    chunk.write_bytes(original[:200])
    with pytest.raises(ValueError, match=r"chunk-00002.safetensors' is truncated or corrupt"):
        load_inrs(out)
    # A SIREN file whose shapes disagree with inrs.json (another architecture).
    tensors = load_file(reference_run / "chunks" / "chunk-00002.safetensors")
    save_file({**tensors, "W2": torch.zeros(5, 16, 32)}, str(chunk))
    with pytest.raises(
        ValueError,
        match=r"chunk-00002.safetensors': tensor 'W2' is torch.float32 \(5, 16, 32\), expected float32 \(5, 32, 32\)",
    ):
        load_inrs(out)
    save_file({k: v for k, v in tensors.items() if k != "b3"}, str(chunk))
    with pytest.raises(ValueError, match="has no tensor 'b3'"):
        load_inrs(out)
    # NaN weights: refused, naming the file and the INR.
    bad = dict(tensors)
    bad["W1"] = bad["W1"].clone()
    bad["W1"][3, 0, 0] = math.nan
    save_file(bad, str(chunk))
    with pytest.raises(ValueError, match=r"chunk-00002.safetensors': tensor 'W1' of INR 13 .*NaN"):
        load_inrs(out)
    chunk.write_bytes(original)
    load_inrs(out)  # restored: loads again

    rows = (out / "chunks" / "chunk-00001.json").read_text()
    _edit_rows(out, 1, lambda r: r.pop())
    with pytest.raises(
        ValueError,
        match=r"chunk-00001.json' has 4 metadata rows, expected 5 \(INRs 5..9 of chunk 1",
    ):
        load_inrs(out)
    (out / "chunks" / "chunk-00001.json").write_text(rows)
    _edit_rows(out, 1, lambda r: r[2].pop("label"))
    with pytest.raises(
        ValueError, match=r"chunk-00001.json': INR 7 has label None; expected an int"
    ):
        load_inrs(out)
    (out / "chunks" / "chunk-00001.json").write_text(rows)
    _edit_rows(out, 1, lambda r: r[2].update(label=10))
    with pytest.raises(ValueError, match=r"INR 7 has label 10, out of range 0..9"):
        load_inrs(out)
    (out / "chunks" / "chunk-00001.json").write_text(rows)
    _edit_rows(out, 1, lambda r: r[0].update(split="holdout"))
    with pytest.raises(ValueError, match=r"INR 5 has split 'holdout'"):
        load_inrs(out)
    (out / "chunks" / "chunk-00001.json").write_text("[]")
    with pytest.raises(ValueError, match="expected an object with 'chunk': 1"):
        load_inrs(out)


# ------------------------------------------------------------------ pictures
def test_show_grid_writes_a_png(reference_run: Path, digits, tmp_path: Path) -> None:
    data = load_inrs(reference_run)
    path = show_grid(data, digits, tmp_path / "grid.png", n=10)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 2000
    first = data.part("test")
    out = show_grid(first.features, source_images(first, digits), tmp_path / "test.png", n=4)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="n must be a positive int"):
        show_grid(data, digits, tmp_path / "x.png", n=0)
    with pytest.raises(ValueError, match="with at least 4 images aligned"):
        show_grid(first.features, digits.test_x[:2], tmp_path / "x.png", n=4)
    with pytest.raises(ValueError, match="an ImageData needs an InrDataset"):
        show_grid(first.features, digits, tmp_path / "x.png")
