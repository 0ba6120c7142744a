"""weightspace.data.zoo: batched, resumable, shardable generation of Small-CNN-Zoo-style zoos."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data import zoo as zoo_lib
from weightspace.data.container import SPLITS, fixed_split
from weightspace.data.images import load_images
from weightspace.data.zoo import (
    ACTIVATIONS,
    INITS,
    OPTIMIZERS,
    TRAIN_FRACTIONS,
    ZOO_SPEC,
    Hyperparameters,
    ZooConfig,
    checkpoint_epochs,
    gather_batches,
    generate_zoo,
    init_network,
    load_zoo,
    sample_hyperparameters,
    zoo_module,
    zoo_trainer,
)

ROOT = Path(__file__).resolve().parents[2]
# The zoo most tests compare against: 3 chunks of 2 networks, 2 epochs on digits.
BASE = {"dataset": "digits", "networks": 6, "seed": 3, "epochs": 2, "chunk_size": 2}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


@pytest.fixture(scope="module")
def reference_zoo(tmp_path_factory) -> Path:
    """An uninterrupted single-process run of BASE."""
    out = tmp_path_factory.mktemp("zoo") / "reference"
    return generate_zoo(ZooConfig(out=str(out), **BASE), progress=False, threads=1)


def chunk_files(folder: Path) -> list[str]:
    return sorted(p.name for p in (folder / "chunks").iterdir())


def assert_same_zoo(a: Path, b: Path, atol: float = 0.0) -> None:
    """Same chunk files, same rows (exactly) and same tensors (within ``atol``)."""
    assert chunk_files(a) == chunk_files(b)
    header_a = json.loads((a / "zoo.json").read_text())
    header_b = json.loads((b / "zoo.json").read_text())
    assert header_a == header_b
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


def copy_zoo(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------- architecture
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("size", [28, 8])
def test_zoo_module_spec_and_shapes(activation: str, size: int) -> None:
    module = zoo_module(activation)
    assert NetworkSpec.from_module(module) == ZOO_SPEC
    assert ZOO_SPEC.num_params == 4970 == sum(p.numel() for p in module.parameters())
    assert module(torch.randn(5, 1, size, size)).shape == (5, 10)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        zoo_module("gelu")


# ------------------------------------------------------------ hyperparameters
def test_hyperparameter_ranges_and_determinism() -> None:
    hps = [sample_hyperparameters(0, i) for i in range(300)]
    assert {hp.optimizer for hp in hps} == set(OPTIMIZERS)
    assert {hp.init for hp in hps} == set(INITS)
    assert {hp.train_fraction for hp in hps} == set(TRAIN_FRACTIONS)
    assert {hp.activation for hp in hps} == set(ACTIVATIONS)
    lr = torch.tensor([hp.learning_rate for hp in hps])
    l2 = torch.tensor([hp.l2 for hp in hps])
    dropout = torch.tensor([hp.dropout for hp in hps])
    assert lr.min() >= 5e-4 and lr.max() <= 5e-2
    assert l2.min() >= 1e-8 and l2.max() <= 1e-2
    assert dropout.min() >= 0 and dropout.max() <= 0.7
    # Log-uniform: the median sits near the geometric mean of the range, not the middle.
    assert abs(lr.log().median() - math.log(math.sqrt(5e-4 * 5e-2))) < 0.5
    assert abs(l2.log10().median() + 5) < 0.7
    for hp in hps:
        if hp.init in ("normal", "truncated_normal"):
            assert hp.init_std is not None and 1e-3 <= hp.init_std <= 0.5
        else:
            assert hp.init_std is None
    assert [sample_hyperparameters(0, i) for i in range(300)] == hps
    other = [sample_hyperparameters(1, i) for i in range(300)]
    assert sum(a != b for a, b in zip(hps, other)) > 290


@pytest.mark.parametrize("init", INITS)
def test_init_families(init: str) -> None:
    hp = Hyperparameters("sgd", 0.01, 0.0, 0.0, init, 0.05, 1.0, "relu")
    tensors = init_network(hp, torch.Generator().manual_seed(0))
    assert [tuple(t.shape) for t in tensors] == [t.shape for t in ZOO_SPEC.tensors]
    assert all(t.dtype == torch.float32 for t in tensors)
    assert all(not b.any() for b in tensors[4:])
    w1, w2 = tensors[0], tensors[1]  # (16, 1, 3, 3), (16, 16, 3, 3)
    if init == "orthogonal":
        m = w1.reshape(16, 9)  # more rows than columns: orthonormal columns
        torch.testing.assert_close(m.T @ m, torch.eye(9), atol=1e-5, rtol=0)
        m = w2.reshape(16, 144)  # more columns: orthonormal rows
        torch.testing.assert_close(m @ m.T, torch.eye(16), atol=1e-5, rtol=0)
        return
    std = {"he_normal": math.sqrt(2 / 144), "glorot_normal": math.sqrt(2 / 288), "normal": 0.05}
    std["truncated_normal"] = 0.05 * 0.8796  # truncation at 2 std shrinks the std
    assert abs(w2.std().item() / std[init] - 1) < 0.1
    if init != "normal":
        bound = 2 * std[init] / (0.8796 if init != "truncated_normal" else 0.8796**2)
        assert w2.abs().max() <= bound * 1.0001
    again = init_network(hp, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(tensors, again))


# ------------------------------------------------------------- batched training
def test_gather_batches_equals_indexing() -> None:
    x = torch.randn(50, 1, 8, 8)
    index = torch.randint(0, 50, (4, 7))
    assert torch.equal(gather_batches(x, index), x[index])


def reference_step(net: nn.Module, opt: torch.optim.Optimizer, x, y) -> float:
    opt.zero_grad()
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    opt.step()
    return loss.item()


def torch_optimizer(net: nn.Sequential, hp: Hyperparameters) -> torch.optim.Optimizer:
    """torch.optim with the zoo's constants; L2 λ·ΣW² is weight decay 2λ on weights only."""
    weights = [p for n, p in net.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in net.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": 2 * hp.l2}, {"params": biases, "weight_decay": 0}]
    if hp.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=hp.learning_rate)
    if hp.optimizer == "adam":
        return torch.optim.Adam(groups, lr=hp.learning_rate, betas=(0.9, 0.999), eps=1e-7)
    return torch.optim.RMSprop(groups, lr=hp.learning_rate, alpha=0.9, eps=1e-7)


def test_batched_training_matches_per_network_reference(digits) -> None:
    """Step for step against nn.Modules with torch.optim: same init, batches and recipe."""
    recipes = [
        ("sgd", 0.05, 1e-3, "he_normal", "relu"),
        ("adam", 0.01, 1e-2, "glorot_normal", "tanh"),
        ("rmsprop", 0.003, 1e-5, "orthogonal", "relu"),
        ("adam", 0.002, 1e-8, "truncated_normal", "relu"),
        ("sgd", 0.02, 0.0, "normal", "tanh"),
    ]
    hps = [
        Hyperparameters(opt, lr, l2, 0.0, init, 0.2, 1.0, act) for opt, lr, l2, init, act in recipes
    ]
    inits = [init_network(hp, torch.Generator().manual_seed(n)) for n, hp in enumerate(hps)]
    trainer = zoo_trainer([torch.stack(ts) for ts in zip(*inits)], hps)
    nets = []
    for hp, init in zip(hps, inits):
        net = zoo_module(hp.activation)
        WeightSpaceFeatures.from_tensors([t[None, None] for t in init]).load_into(net)
        nets.append(net)
    opts = [torch_optimizer(net, hp) for net, hp in zip(nets, hps)]
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        idx = torch.randint(0, len(digits.train_y), (len(hps), 16), generator=g)
        x, y = digits.train_x[idx], digits.train_y[idx]
        losses = trainer.step(x, y)
        expected = [
            reference_step(net, opt, x[b], y[b]) for b, (net, opt) in enumerate(zip(nets, opts))
        ]
        torch.testing.assert_close(losses, torch.tensor(expected), atol=1e-5, rtol=0)
    got = trainer.tensors
    for b, net in enumerate(nets):
        want = WeightSpaceFeatures.from_modules([net]).tensors
        for j, (g_t, w_t) in enumerate(zip(got, want)):
            torch.testing.assert_close(
                g_t[b], w_t[0, 0], atol=1e-5, rtol=0, msg=f"network {b} {ZOO_SPEC.tensors[j].name}"
            )
        assert not torch.equal(got[0][b], inits[b][0])  # it did train
    # Evaluation agrees with the modules too.
    loss, correct = trainer.evaluate(digits.test_x, digits.test_y)
    for b, net in enumerate(nets):
        with torch.no_grad():
            logits = net(digits.test_x)
        torch.testing.assert_close(
            loss[b], F.cross_entropy(logits, digits.test_y, reduction="none"), atol=1e-5, rtol=0
        )
        assert torch.equal(correct[b], logits.argmax(1) == digits.test_y)


def test_diverging_network_is_isolated(digits) -> None:
    """A network blowing up in a chunk does not disturb its neighbour."""
    good = Hyperparameters("adam", 0.01, 1e-4, 0.0, "he_normal", None, 1.0, "relu")
    bad = replace(good, optimizer="sgd", learning_rate=1e6)
    inits = [init_network(good, torch.Generator().manual_seed(n)) for n in range(2)]
    pair = zoo_trainer([torch.stack(ts) for ts in zip(*inits)], [bad, good])
    alone = zoo_trainer([t[None] for t in inits[1]], [good])
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(8):
        idx = torch.randint(0, 1500, (2, 16), generator=g)
        x, y = digits.train_x[idx], digits.train_y[idx]
        losses.append(pair.step(x, y))
        alone.step(x[1:], y[1:])
    losses = torch.stack(losses)
    assert not torch.isfinite(losses[:, 0]).all()
    assert torch.isfinite(losses[:, 1]).all()
    for a, b in zip(pair.tensors, alone.tensors):
        torch.testing.assert_close(a[1], b[0], atol=1e-6, rtol=0)


def test_networks_learn(digits) -> None:
    """A sound recipe reaches high digits accuracy in 2 epochs; random recipes beat chance."""
    hp = Hyperparameters("adam", 0.01, 1e-6, 0.1, "he_normal", None, 1.0, "relu")
    inits = [init_network(hp, torch.Generator().manual_seed(n)) for n in range(2)]
    trainer = zoo_trainer(
        [torch.stack(ts) for ts in zip(*inits)],
        [hp, hp],
        generator=torch.Generator().manual_seed(0),
    )
    g = torch.Generator().manual_seed(0)
    for _ in range(2 * 47):
        idx = torch.randint(0, 1500, (2, 32), generator=g)
        trainer.step(digits.train_x[idx], digits.train_y[idx])
    _, correct = trainer.evaluate(digits.test_x, digits.test_y)
    assert correct.float().mean(1).min() > 0.85


def test_generated_zoo_learns(reference_zoo: Path) -> None:
    zoo = load_zoo(reference_zoo)
    assert zoo.test_accuracy.mean() > 0.3  # chance is 0.1
    assert zoo.test_accuracy.max() > 0.6
    first = load_zoo(reference_zoo, epoch=1)
    # Training moved every network between the saved epochs.
    assert (zoo.features.flatten() != first.features.flatten()).any(dim=1).all()


# ---------------------------------------------------------------- generation
def test_store_layout_and_load(reference_zoo: Path) -> None:
    header = json.loads((reference_zoo / "zoo.json").read_text())
    assert header["format"] == "weightspace-zoo" and header["version"] == 1
    assert header["spec"] == {"widths": [1, 16, 16, 16, 10], "kernel_shapes": [[3, 3]] * 3 + [[]]}
    assert header["save_epochs"] == [1, 2] and header["dataset"] == "digits"
    assert header["config"]["seed"] == 3 and "out" not in header["config"]
    assert chunk_files(reference_zoo) == [
        f"chunk-{k:05d}.{ext}" for k in range(3) for ext in ("json", "safetensors")
    ]
    tensors = load_file(reference_zoo / "chunks" / "chunk-00001.safetensors")
    assert sorted(tensors) == sorted(f"epoch{e}.{t.name}" for e in (1, 2) for t in ZOO_SPEC.tensors)
    assert tensors["epoch2.W2"].shape == (2, 16, 16, 3, 3)
    assert tensors["epoch2.W2"].dtype == torch.float32
    rows = json.loads((reference_zoo / "chunks" / "chunk-00001.json").read_text())["rows"]
    assert [r["index"] for r in rows] == [2, 3]
    assert Hyperparameters(
        **{k: rows[0][k] for k in Hyperparameters.__dataclass_fields__}
    ) == sample_hyperparameters(3, 2)
    assert [m["epoch"] for m in rows[0]["metrics"]] == [1, 2]

    zoo = load_zoo(reference_zoo)
    assert len(zoo) == 6 and zoo.spec == ZOO_SPEC
    assert torch.equal(zoo.split, fixed_split(6, 0))
    assert set(zoo.split.tolist()) <= set(SPLITS.values())
    assert zoo.info["source"] == "weightspace-zoo" and zoo.info["epoch"] == 2
    assert zoo.info["dataset"] == "digits" and zoo.info["seed"] == 3
    assert zoo.info["num_diverged"] == 0
    assert torch.equal(zoo.features.weights[1][2:4, 0], tensors["epoch2.W2"])
    assert zoo.test_accuracy[3].item() == pytest.approx(rows[1]["metrics"][1]["test_accuracy"])
    assert zoo.metadata[3]["index"] == 3 and zoo.metadata[3]["epoch"] == 2
    assert all(isinstance(v, str | int | float) for m in zoo.metadata for v in m.values())
    # A stored network computes the metrics recorded for it.
    digits = load_images("digits")
    net = zoo.features.load_into(zoo_module(zoo.metadata[3]["activation"]), 3)
    with torch.no_grad():
        acc = (net(digits.test_x).argmax(1) == digits.test_y).float().mean().item()
    assert acc == pytest.approx(zoo.metadata[3]["test_accuracy"], abs=1e-6)
    assert torch.equal(load_zoo(reference_zoo, split_seed=5).split, fixed_split(6, 5))


def test_deterministic_for_a_seed(reference_zoo: Path, tmp_path: Path) -> None:
    again = generate_zoo(ZooConfig(out=str(tmp_path / "again"), **BASE), progress=False, threads=1)
    assert_same_zoo(reference_zoo, again)
    small = {**BASE, "networks": 2, "epochs": 1}
    a = load_zoo(generate_zoo(ZooConfig(out=str(tmp_path / "a"), **small), progress=False))
    b = load_zoo(
        generate_zoo(ZooConfig(out=str(tmp_path / "b"), **{**small, "seed": 4}), progress=False)
    )
    assert not torch.equal(a.features.flatten(), b.features.flatten())
    assert a.metadata[0]["learning_rate"] != b.metadata[0]["learning_rate"]


def test_resume_after_sigkill(reference_zoo: Path, tmp_path: Path) -> None:
    """Kill a real generation once its first chunk is on disk; the re-run completes it."""
    out = tmp_path / "killed"
    code = (
        "from weightspace.data.zoo import ZooConfig, generate_zoo\n"
        f"generate_zoo(ZooConfig(out={str(out)!r}, **{BASE!r}), progress=False, threads=1)\n"
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
    assert "chunk-00002.json" not in done  # killed before the end: resuming has work to do
    # What a kill in the middle of a write leaves behind: a temp file; and a half-finished chunk.
    (out / "chunks" / ".chunk-00002.safetensors.999-dead.tmp").write_bytes(b"half a file")
    (out / "chunks" / "chunk-00001.json").unlink(missing_ok=True)
    with pytest.raises(ValueError, match="incomplete"):
        load_zoo(out)
    mtime = first.stat().st_mtime_ns
    generate_zoo(ZooConfig(out=str(out), **BASE), progress=False, threads=1)
    assert first.stat().st_mtime_ns == mtime  # a finished chunk is not redone
    assert not any(p.name.endswith(".tmp") for p in (out / "chunks").iterdir())
    assert_same_zoo(reference_zoo, out)
    # Running a finished zoo again changes nothing.
    generate_zoo(ZooConfig(out=str(out), **BASE), progress=False, threads=1)
    assert_same_zoo(reference_zoo, out)


def test_corrupt_chunk_is_regenerated(reference_zoo: Path, tmp_path: Path) -> None:
    out = copy_zoo(reference_zoo, tmp_path)
    path = out / "chunks" / "chunk-00001.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    generate_zoo(ZooConfig(out=str(out), **BASE), progress=False, threads=1)
    assert_same_zoo(reference_zoo, out)


def test_torchrun_two_processes_equal_single_process(reference_zoo: Path, tmp_path: Path) -> None:
    out = tmp_path / "torchrun"
    script = tmp_path / "make_zoo.py"
    script.write_text(
        "import os\n"
        "from weightspace.data.zoo import ZooConfig, generate_zoo\n"
        f"generate_zoo(ZooConfig(out={str(out)!r}, **{BASE!r}), progress=False)\n"
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
    assert_same_zoo(reference_zoo, out)


def test_rank_shards_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "1")
    config = ZooConfig(out=str(tmp_path / "z"), **{**BASE, "networks": 5, "epochs": 1})
    generate_zoo(config, progress=False)
    assert chunk_files(tmp_path / "z") == ["chunk-00001.json", "chunk-00001.safetensors"]
    assert not (tmp_path / "z" / "zoo.json").exists()  # rank 0's job
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match=r"RANK=3 must lie in \[0, WORLD_SIZE=3\)"):
        generate_zoo(config, progress=False)


# -------------------------------------------------------------------- errors
def test_config_errors(tmp_path: Path, reference_zoo: Path) -> None:
    with pytest.raises(ValueError, match="unknown dataset 'cifar10'"):
        ZooConfig("cifar10", 4, str(tmp_path))
    config = ZooConfig(out=str(tmp_path / "x"), **BASE)
    config.dataset = "svhn"
    with pytest.raises(ValueError, match="generate_zoo: unknown dataset 'svhn'"):
        generate_zoo(config, progress=False)
    with pytest.raises(ValueError, match="networks must be an int >= 1"):
        ZooConfig("digits", 0, str(tmp_path))
    with pytest.raises(ValueError, match=r"save_epochs must be increasing ints in 0\.\.2"):
        ZooConfig("digits", 4, str(tmp_path), epochs=2, save_epochs=(1, 3))
    with pytest.raises(ValueError, match="save_epochs must be increasing"):
        ZooConfig("digits", 4, str(tmp_path), epochs=2, save_epochs=(2, 1))
    assert ZooConfig("digits", 1, "o", epochs=6).saved_epochs == (2, 4, 6)
    assert ZooConfig("digits", 1, "o", epochs=1).saved_epochs == (1,)
    assert ZooConfig("digits", 1, "o", epochs=18).saved_epochs == (6, 12, 18)
    # Resuming with another config names every field that differs.
    out = copy_zoo(reference_zoo, tmp_path)
    other = ZooConfig(out=str(out), **{**BASE, "epochs": 3, "seed": 9})
    with pytest.raises(ValueError, match=r"seed: stored 3, requested 9; epochs: stored 2"):
        generate_zoo(other, progress=False)
    (out / "zoo.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="is not a weightspace zoo"):
        generate_zoo(ZooConfig(out=str(out), **BASE), progress=False)


def test_load_errors(reference_zoo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"zoo\.json' is missing"):
        load_zoo(tmp_path)
    with pytest.raises(ValueError, match=r"epoch 0 was not saved; saved epochs are \[1, 2\]"):
        load_zoo(reference_zoo, epoch=0)

    out = copy_zoo(reference_zoo, tmp_path)
    (out / "chunks" / "chunk-00001.safetensors").unlink()
    (out / "chunks" / "chunk-00002.json").unlink()
    with pytest.raises(
        ValueError,
        match=r"incomplete: chunk-00001\.safetensors, chunk-00002\.json missing .*re-run "
        r"generate_zoo with the same config to resume",
    ):
        load_zoo(out)

    shutil.rmtree(out)
    out = copy_zoo(reference_zoo, tmp_path)
    path = out / "chunks" / "chunk-00001.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"chunk-00001\.safetensors' is truncated or corrupt"):
        load_zoo(out)

    shutil.rmtree(out)
    out = copy_zoo(reference_zoo, tmp_path)
    path = out / "chunks" / "chunk-00002.json"
    doc = json.loads(path.read_text())
    doc["rows"] = doc["rows"][:1]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"chunk-00002\.json' has 1 metadata rows, expected 2"):
        load_zoo(out)

    shutil.rmtree(out)
    out = copy_zoo(reference_zoo, tmp_path)
    path = out / "chunks" / "chunk-00000.safetensors"
    tensors = load_file(path)
    tensors["epoch2.W2"] = torch.zeros(2, 16, 8, 3, 3)  # another architecture's layer
    tensors["epoch2.W3"] = torch.zeros(2, 16, 8, 3, 3)
    save_file(tensors, path)
    with pytest.raises(ValueError, match=r"'epoch2\.W2' is torch\.float32 \(2, 16, 8, 3, 3\)"):
        load_zoo(out)
    load_zoo(out, epoch=1)  # the other epoch is still intact

    (out / "zoo.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"zoo\.json' is not valid JSON"):
        load_zoo(out)


# ------------------------------------------------------------------ divergence
def test_diverged_networks_are_flagged_and_dropped(tmp_path: Path, monkeypatch) -> None:
    draw = zoo_lib._draw

    def explosive(seed: int):
        hp, init_seed, data_seed = draw(seed)
        if seed == zoo_lib.network_seed(0, 1):
            hp = replace(hp, optimizer="sgd", learning_rate=1e8, dropout=0.0)
        return hp, init_seed, data_seed

    monkeypatch.setattr(zoo_lib, "_draw", explosive)
    config = ZooConfig("digits", 3, str(tmp_path / "z"), epochs=1, chunk_size=3)
    generate_zoo(config, progress=False)
    rows = json.loads((tmp_path / "z" / "chunks" / "chunk-00000.json").read_text())["rows"]
    assert [r["diverged"] for r in rows] == [False, True, False]
    assert (
        isinstance(rows[1]["diverged_step"], int) and rows[1]["metrics"][0]["test_accuracy"] is None
    )
    zoo = load_zoo(tmp_path / "z")
    assert zoo.info["num_diverged"] == 1 and zoo.metadata[1]["diverged"]
    assert math.isnan(zoo.test_accuracy[1])
    kept, dropped = zoo.finite()
    assert dropped == 1 and [m["index"] for m in kept.metadata] == [0, 2]


def test_nan_weights_in_store_count_as_diverged(reference_zoo: Path, tmp_path: Path) -> None:
    out = copy_zoo(reference_zoo, tmp_path)
    path = out / "chunks" / "chunk-00001.safetensors"
    tensors = load_file(path)
    tensors["epoch2.b3"][1, 4] = float("nan")  # network 3
    save_file(tensors, path)
    zoo = load_zoo(out)
    assert zoo.info["num_diverged"] == 1 and zoo.metadata[3]["diverged"]
    kept, dropped = zoo.finite()
    assert dropped == 1 and 3 not in [m["index"] for m in kept.metadata]


def test_all_checkpoints_keep_the_split_by_network(reference_zoo: Path) -> None:
    final = load_zoo(reference_zoo)
    both = load_zoo(reference_zoo, checkpoints="all")
    n = len(final)
    assert len(both) == 2 * n and both.info["epochs"] == [1, 2]
    assert [r["epoch"] for r in both.metadata] == [1] * n + [2] * n
    # Every checkpoint of a network lands in that network's split.
    assert torch.equal(both.split[:n], final.split) and torch.equal(both.split[n:], final.split)
    assert [r["index"] for r in both.metadata[:n]] == [r["index"] for r in both.metadata[n:]]
    assert torch.equal(both.features[n:].flatten(), final.features.flatten())
    assert torch.equal(
        both.features[:n].flatten(), load_zoo(reference_zoo, epoch=1).features.flatten()
    )
    with pytest.raises(ValueError, match="checkpoints='all' reads every saved epoch"):
        load_zoo(reference_zoo, epoch=1, checkpoints="all")
    with pytest.raises(ValueError, match="checkpoints must be one of"):
        load_zoo(reference_zoo, checkpoints="some")


def test_checkpoint_epochs_spread_over_training() -> None:
    assert checkpoint_epochs(10, 5) == (2, 4, 6, 8, 10)
    assert checkpoint_epochs(10, 10) == tuple(range(1, 11))
    assert checkpoint_epochs(3, 1) == (3,)
    with pytest.raises(ValueError, match=r"checkpoints must be an int in 1\.\.3"):
        checkpoint_epochs(3, 4)
