import itertools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from weightspace.train import FitResult, TrainConfig, fit, load_checkpoint, predict
from weightspace.train.loop import lr_scale


def make_data(n: int = 48, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = x @ torch.randn(4, generator=g) + 0.1 * torch.randn(n, generator=g)
    return list(zip(x, y))


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))


def mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((out.reshape(-1) - y) ** 2).mean()


def neg_mse(out: torch.Tensor, y: torch.Tensor) -> float:
    return -float(mse(out, y))


def scripted(values: list[float]):
    """A metric that reports ``values`` in turn, one per validation pass."""
    it = iter(values)
    return lambda out, y: next(it)


def run(tmp_path: Path, name: str = "run", *, metric_fn=neg_mse, model=None, **overrides):
    cfg = {"epochs": 3, "batch_size": 8, "lr": 1e-2, "progress": False, **overrides}
    data = make_data()
    return fit(
        model if model is not None else make_model(),
        data[:32],
        data[32:],
        loss_fn=mse,
        metric_fn=metric_fn,
        config=TrainConfig(**cfg),
        run_dir=tmp_path / name,
        task_config={"task": "toy", "width": 16},
    )


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_writes_run_files(tmp_path):
    result = run(tmp_path)
    run_dir = tmp_path / "run"
    assert isinstance(result, FitResult)
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "best.pt",
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
    ]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == {"task": "toy", "width": 16}
    assert config["train"]["epochs"] == 3 and config["train"]["lr"] == 1e-2
    rows = read_lines(run_dir / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert {"epoch", "train_loss", "val_loss", "val_metric", "time"} <= r.keys()
        assert r["val_metric"] == pytest.approx(-r["val_loss"])
    assert result.history == rows
    assert result.best_metric == max(r["val_metric"] for r in rows)
    assert rows[0]["train_loss"] > rows[-1]["train_loss"]  # it learns
    # Checkpoints are plain data, readable with weights_only=True.
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["bad_epochs"] >= 0
    assert isinstance(ckpt["rng"]["torch"], torch.Tensor)
    assert torch.load(run_dir / "best.pt", weights_only=True)["epoch"] == result.best_epoch


def test_best_checkpoint_is_restored(tmp_path):
    model = make_model()
    result = run(tmp_path, model=model, metric_fn=scripted([0.1, 0.5, 0.3, 0.2]), epochs=4)
    assert (result.best_epoch, result.best_metric) == (2, 0.5)
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    last = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert best["epoch"] == 2 and last["epoch"] == 4
    assert states_equal(model.state_dict(), best["model"])
    assert not states_equal(best["model"], last["model"])


def test_lower_is_better(tmp_path):
    data = make_data()
    result = fit(
        make_model(),
        data[:32],
        data[32:],
        loss_fn=mse,
        metric_fn=scripted([0.3, 0.1, 0.2]),
        higher_is_better=False,
        config=TrainConfig(epochs=3, batch_size=8, progress=False),
        run_dir=tmp_path / "run",
    )
    assert (result.best_epoch, result.best_metric) == (2, 0.1)


def test_early_stopping_and_rerun_after_it(tmp_path):
    result = run(tmp_path, metric_fn=scripted([0.5, 0.4, 0.3, 0.2, 0.1]), epochs=5, patience=2)
    assert result.stopped_early and result.epochs_run == 3
    assert (result.best_epoch, result.best_metric) == (1, 0.5)
    assert len(read_lines(tmp_path / "run" / "metrics.jsonl")) == 3
    again = run(tmp_path, metric_fn=scripted([]), epochs=5, patience=2)  # trains nothing
    assert again.resumed_from == 3 and again.epochs_run == 3 and again.stopped_early


def test_undefined_metric_never_counts_as_best(tmp_path):
    nan = float("nan")
    result = run(tmp_path, "a", metric_fn=scripted([nan, 0.2, nan, 0.1]), epochs=4)
    assert (result.best_epoch, result.best_metric) == (2, 0.2)
    rows = read_lines(tmp_path / "a" / "metrics.jsonl")
    assert rows[0]["val_metric"] is None  # NaN is written as null: the file stays valid JSON
    result = run(tmp_path, "b", metric_fn=scripted([nan, nan]), epochs=2, patience=1)
    assert result.best_metric is None and result.best_epoch == 1
    assert result.stopped_early and result.epochs_run == 1
    assert (tmp_path / "b" / "best.pt").exists()


def test_without_validation_keeps_last(tmp_path):
    model = make_model()
    data = make_data()
    result = fit(
        model,
        data,
        None,
        loss_fn=mse,
        config=TrainConfig(epochs=2, batch_size=8, patience=1, progress=False),
        run_dir=tmp_path / "run",
    )
    assert result.best_epoch == 2 and result.best_metric is None and not result.stopped_early
    assert read_lines(tmp_path / "run" / "metrics.jsonl")[-1]["val_metric"] is None


def test_config_mismatch_names_fields(tmp_path):
    run(tmp_path, epochs=2)
    with pytest.raises(ValueError, match=r"train\.lr: 0\.01 in config\.json, 0\.02 now") as err:
        run(tmp_path, epochs=2, lr=2e-2)
    assert "train.epochs" not in str(err.value)
    data = make_data()
    with pytest.raises(ValueError, match=r"task\.width: 16 in config\.json, 32 now"):
        fit(
            make_model(),
            data[:32],
            data[32:],
            loss_fn=mse,
            config=TrainConfig(epochs=2, batch_size=8, lr=1e-2, progress=False),
            run_dir=tmp_path / "run",
            task_config={"task": "toy", "width": 32},
        )
    # Where and how visibly it runs may change between a run and its resumption.
    again = run(tmp_path, epochs=2, device="cpu", progress=True, eval_batch_size=4)
    assert again.resumed_from == 2


def test_seeds_are_honoured(tmp_path):
    a = make_model()
    b = make_model()
    c = make_model()
    run(tmp_path, "a", model=a, seed=3)
    run(tmp_path, "b", model=b, seed=3)
    run(tmp_path, "c", model=c, seed=4)  # another shuffle and other dropout masks
    assert states_equal(a.state_dict(), b.state_dict())
    assert not states_equal(a.state_dict(), c.state_dict())
    rows_a = read_lines(tmp_path / "a" / "metrics.jsonl")
    rows_b = read_lines(tmp_path / "b" / "metrics.jsonl")
    assert [r["train_loss"] for r in rows_a] == [r["train_loss"] for r in rows_b]


def test_errors(tmp_path):
    with pytest.raises(ValueError, match=r"TrainConfig\.epochs must be a positive int, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match=r"TrainConfig\.patience"):
        TrainConfig(patience=0)
    with pytest.raises(ValueError, match="device must be"):
        TrainConfig(device="tpu")
    with pytest.raises(ValueError, match="train_set is empty"):
        fit(
            make_model(),
            [],
            None,
            loss_fn=mse,
            config=TrainConfig(progress=False),
            run_dir=tmp_path / "empty",
        )
    with pytest.raises(ValueError, match="training loss is nan at epoch 1"):
        run(tmp_path, "nan", lr=1e-2, metric_fn=neg_mse, model=_NaNModel())
    run(tmp_path, "bad", epochs=1)
    stale = tmp_path / "bad" / ".checkpoint.pt.12345.tmp"  # left by a run killed mid-write
    stale.write_bytes(b"half a checkpoint")
    assert run(tmp_path, "bad", epochs=1).resumed_from == 1
    assert not stale.exists()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"checkpoint\.pt: not a readable weightspace checkpoint"):
        run(tmp_path, "bad", epochs=1)
    run(tmp_path, "other", epochs=1)
    with pytest.raises(ValueError, match="holds a state for another model"):
        run(tmp_path, "other", epochs=1, model=nn.Linear(4, 1))


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(1, keepdim=True) * self.w * float("nan")


def test_predict_runs_in_eval_mode():
    model = make_model()
    data = make_data(10)
    out, y = predict(model, data, batch_size=3)
    assert out.shape == (10, 1) and torch.equal(y, torch.stack([t for _, t in data]))
    # Dropout is off: batching changes only the rounding.
    assert torch.allclose(out, predict(model, data, batch_size=10)[0], atol=1e-6)
    assert model.training


_SCRIPT = """
import os, sys, time
import torch
from torch import nn
from weightspace.train import TrainConfig, fit

torch.set_num_threads(1)
slow = float(os.environ.get("SLOW", "0"))

class Data(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items
    def __len__(self):
        return len(self.items)
    def __getitem__(self, i):
        time.sleep(slow)
        return self.items[i]

g = torch.Generator().manual_seed(0)
x = torch.randn(40, 4, generator=g)
y = x @ torch.randn(4, generator=g)
items = list(zip(x, y))
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1))
mse = lambda out, t: ((out.reshape(-1) - t) ** 2).mean()
fit(model, Data(items[:32]), Data(items[32:]), loss_fn=mse,
    metric_fn=lambda out, t: -float(mse(out, t)),
    config=TrainConfig(epochs=6, batch_size=4, lr=1e-2, seed=5, progress=False),
    run_dir=sys.argv[1])
"""


def _python(script: Path, run_dir: Path, slow: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "SLOW": str(slow), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(run_dir)], env=env)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    reference = _python(script, tmp_path / "reference")

    # Kill a slowed-down copy while it trains its third epoch, then rerun it at full speed.
    victim = _python(script, tmp_path / "resumed", slow=0.04)
    metrics = tmp_path / "resumed" / "metrics.jsonl"
    deadline = time.monotonic() + 60
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert victim.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "the run wrote no second epoch within 60 s"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    interrupted_at = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"]
    assert 2 <= interrupted_at < 6
    assert _python(script, tmp_path / "resumed").wait(timeout=60) == 0
    assert reference.wait(timeout=60) == 0

    for name in ("checkpoint.pt", "best.pt"):
        ref = load_checkpoint(tmp_path / "reference" / name)
        res = load_checkpoint(tmp_path / "resumed" / name)
        assert ref["epoch"] == res["epoch"]
        assert states_equal(ref["model"], res["model"]), name
    ref = load_checkpoint(tmp_path / "reference" / "checkpoint.pt")
    res = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    for k, v in ref["optimizer"]["state"].items():
        assert states_equal(v, res["optimizer"]["state"][k])
    rows_ref = read_lines(tmp_path / "reference" / "metrics.jsonl")
    rows_res = read_lines(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["epoch"] for r in rows_res] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(rows_ref, rows_res):
        assert a["train_loss"] == b["train_loss"] and a["val_metric"] == b["val_metric"]
    assert not [p for p in (tmp_path / "resumed").iterdir() if p.name.startswith(".")]
    assert math.isfinite(rows_res[-1]["train_loss"])


# ------------------------------------------------------------------ any objective, any output
def test_fit_trains_a_model_whose_output_is_weight_space_features(tmp_path):
    """An equivariant layer learns to double a network's weights: output and target are
    WeightSpaceFeatures, and the metric sees the whole validation set collated as features."""
    from weightspace import NetworkSpec, WeightSpaceFeatures
    from weightspace.nn import NPLinear
    from weightspace.testing import random_features

    spec = NetworkSpec((3, 5, 2))
    x = random_features(spec, 40, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    items = [(x[i], x[i] * 2.0) for i in range(40)]

    def objective(model, batch, epoch):
        inputs, targets = batch
        out = model(inputs)
        assert isinstance(out, WeightSpaceFeatures)
        return sum(((a - b) ** 2).mean() for a, b in zip(out.tensors, targets.tensors)), {}

    seen = []

    def metric(outputs, targets):
        seen.append((type(outputs), outputs.batch_size, targets.batch_size))
        return -float(sum(((a - b) ** 2).mean() for a, b in zip(outputs.tensors, targets.tensors)))

    torch.manual_seed(0)
    result = fit(
        NPLinear(spec, 1, 1),
        items[:32],
        items[32:],
        objective=objective,
        metric_fn=metric,
        config=TrainConfig(epochs=6, batch_size=8, lr=1e-1, progress=False),
        run_dir=tmp_path / "run",
    )
    rows = result.history
    assert rows[-1]["train_loss"] < 0.2 * rows[0]["train_loss"]  # it learns
    assert rows[-1]["val_loss"] < rows[0]["val_loss"]
    assert seen == [(WeightSpaceFeatures, 8, 8)] * 6
    assert result.best_metric == pytest.approx(max(r["val_metric"] for r in rows))
    outputs, targets = predict(result_model := NPLinear(spec, 1, 1), items[32:], batch_size=3)
    assert isinstance(outputs, WeightSpaceFeatures) and outputs.batch_size == 8
    assert isinstance(targets, WeightSpaceFeatures) and result_model.training


class _TinyVAE(nn.Module):
    """4 → (mean, log-variance) of a 2-d code → 4; returns (reconstruction, mu, logvar)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.dec = nn.Linear(4, 4), nn.Linear(2, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.enc(x).chunk(2, dim=1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return self.dec(z), mu, logvar


def kl_weight(epoch: int) -> float:
    return min(1.0, 0.25 * epoch)  # the KL term warms up over four epochs


def vae_objective(model, batch, epoch):
    x, _ = batch
    recon, mu, logvar = model(x)
    rec = ((recon - x) ** 2).sum(1).mean()
    kl = (-0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)).mean()
    beta = kl_weight(epoch)
    return rec + beta * kl, {"recon": rec, "kl": kl, "kl_weight": beta}


def test_fit_trains_a_tuple_output_with_an_epoch_dependent_loss_weight(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g) @ torch.randn(2, 4, generator=g)  # rank-2 data
    items = [(row, torch.tensor(0)) for row in x]
    shapes = []

    def metric(outputs, targets):
        recon, mu, logvar = outputs
        shapes.append((recon.shape, mu.shape, logvar.shape, targets.shape))
        return -float(((recon - x[48:]) ** 2).sum(1).mean())

    torch.manual_seed(0)
    result = fit(
        _TinyVAE(),
        items[:48],
        items[48:],
        objective=vae_objective,
        metric_fn=metric,
        config=TrainConfig(epochs=6, batch_size=8, lr=2e-2, progress=False),
        run_dir=tmp_path / "vae",
    )
    rows = read_lines(tmp_path / "vae" / "metrics.jsonl")
    assert rows == result.history
    # The weight the objective used at each epoch, averaged into the log: it was applied.
    assert [r["kl_weight"] for r in rows] == [kl_weight(e) for e in range(1, 7)]
    assert [r["val_kl_weight"] for r in rows] == [kl_weight(e) for e in range(1, 7)]
    for r in rows:
        assert r["train_loss"] == pytest.approx(r["recon"] + r["kl_weight"] * r["kl"], rel=1e-6)
        assert r["val_loss"] == pytest.approx(r["val_recon"] + r["kl_weight"] * r["val_kl"])
    assert rows[-1]["recon"] < 0.5 * rows[0]["recon"]  # it learns to reconstruct
    assert shapes == [((16, 4), (16, 2), (16, 2), (16,))] * 6


def test_optimizer_factory_and_its_checkpoint(tmp_path):
    data = make_data()
    sgd = lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.5)  # noqa: E731
    cfg = TrainConfig(epochs=3, batch_size=8, progress=False)
    result = fit(
        make_model(), data[:32], data[32:], loss_fn=mse, optimizer=sgd, config=cfg,
        run_dir=tmp_path / "run",
    )  # fmt: skip
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["optimizer_class"] == "SGD"
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == 0.05  # not TrainConfig.lr
    with pytest.raises(ValueError, match="holds the state of a SGD optimiser, this run uses Adam"):
        fit(make_model(), data[:32], data[32:], loss_fn=mse, config=cfg, run_dir=tmp_path / "run")
    with pytest.raises(TypeError, match="returned a list, not an Optimizer"):
        fit(
            make_model(), data[:32], None, loss_fn=mse, optimizer=lambda p: list(p), config=cfg,
            run_dir=tmp_path / "other",
        )  # fmt: skip
    with pytest.raises(TypeError, match="exactly one of objective= and loss_fn="):
        fit(make_model(), data, None, config=cfg, run_dir=tmp_path / "none")


class _RecordingSGD(torch.optim.SGD):
    """SGD that records every group's learning rate at each step."""

    seen: list[list[float]]

    def step(self, closure=None):  # type: ignore[override]
        self.seen.append([group["lr"] for group in self.param_groups])
        return super().step(closure)


def _two_group_sgd(record: list[list[float]]):
    def make(params):
        params = list(params)
        opt = _RecordingSGD(
            [{"params": params[:2], "lr": 0.1}, {"params": params[2:], "lr": 0.02}], momentum=0.5
        )
        opt.seen = record
        return opt

    return make


def _warmup_fit(tmp_path: Path, name: str, record: list, loss_fn=mse, **overrides) -> FitResult:
    data = make_data()
    cfg = {"epochs": 3, "batch_size": 8, "progress": False, **overrides}
    return fit(
        make_model(), data[:32], data[32:], loss_fn=loss_fn, metric_fn=neg_mse,
        optimizer=_two_group_sgd(record), config=TrainConfig(**cfg), run_dir=tmp_path / name,
    )  # fmt: skip


def test_warmup_ramps_each_groups_own_learning_rate(tmp_path):
    seen: list[list[float]] = []
    result = _warmup_fit(tmp_path, "warm", seen, warmup_steps=6)  # 4 steps per epoch, 12 in all
    ramp = [(s + 1) / 6 for s in range(6)] + [1.0] * 6
    assert seen == [[0.1 * r, 0.02 * r] for r in ramp]
    assert [row["lr"] for row in result.history] == [0.1 * (4 / 6), 0.1, 0.1]
    config = json.loads((tmp_path / "warm" / "config.json").read_text())
    assert config["train"]["warmup_steps"] == 6
    # Without warm-up the optimiser's own rates are used untouched.
    seen.clear()
    result = _warmup_fit(tmp_path, "cold", seen)
    assert seen == [[0.1, 0.02]] * 12
    assert [row["lr"] for row in result.history] == [0.1] * 3


def test_cosine_decay_follows_the_warmup_down_to_near_zero(tmp_path):
    seen: list[list[float]] = []
    _warmup_fit(tmp_path, "cos", seen, warmup_steps=4, lr_decay="cosine")  # 12 steps in all
    ramp = [(s + 1) / 4 for s in range(4)]
    ramp += [0.5 * (1 + math.cos(math.pi * (s - 4) / 8)) for s in range(4, 12)]
    assert [pytest.approx(row) for row in seen] == [[0.1 * r, 0.02 * r] for r in ramp]
    assert seen[4] == pytest.approx([0.1, 0.02]) and 0 < seen[-1][0] < 0.01
    assert all(a[0] > b[0] for a, b in itertools.pairwise(seen[4:]))  # down after the warm-up
    assert lr_scale(0, 12, 0, "cosine") == 1.0 and lr_scale(5, 12, 0, "none") == 1.0
    saved = json.loads((tmp_path / "cos" / "config.json").read_text())["train"]
    assert saved["lr_decay"] == "cosine"
    # A resumed run keeps the schedule: interrupted in epoch 2, it ends where one pass ends.
    calls = []

    def dies_in_epoch_2(out, y):
        calls.append(1)
        if len(calls) == 6:
            raise _Interrupt
        return mse(out, y)

    with pytest.raises(_Interrupt):
        _warmup_fit(tmp_path, "cos2", [], dies_in_epoch_2, warmup_steps=4, lr_decay="cosine")
    resumed: list[list[float]] = []
    _warmup_fit(tmp_path, "cos2", resumed, warmup_steps=4, lr_decay="cosine")
    assert [pytest.approx(row) for row in resumed] == seen[4:]
    with pytest.raises(ValueError, match=r"lr_decay must be one of \('none', 'cosine'\)"):
        TrainConfig(lr_decay="linear")


class _Interrupt(Exception):
    pass


def test_resume_in_the_middle_of_warmup_matches_an_uninterrupted_run(tmp_path):
    _warmup_fit(tmp_path, "reference", [], warmup_steps=10)
    calls = []

    def dies_in_epoch_2(out, y):
        calls.append(1)
        if len(calls) == 6:  # the second batch of epoch 2 (4 batches per epoch)
            raise _Interrupt
        return mse(out, y)

    with pytest.raises(_Interrupt):
        _warmup_fit(tmp_path, "resumed", [], loss_fn=dies_in_epoch_2, warmup_steps=10)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["epoch"] == 1
    seen: list[list[float]] = []
    result = _warmup_fit(tmp_path, "resumed", seen, warmup_steps=10)
    assert result.resumed_from == 1
    # Steps 4..11 of the ramp, from each group's rate as created, not the checkpoint's last one.
    assert seen == [[0.1 * min(1, (s + 1) / 10), 0.02 * min(1, (s + 1) / 10)] for s in range(4, 12)]
    ref = load_checkpoint(tmp_path / "reference" / "checkpoint.pt")
    res = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert states_equal(ref["model"], res["model"])
    assert ref["optimizer"]["param_groups"] == res["optimizer"]["param_groups"]
    rows_ref = read_lines(tmp_path / "reference" / "metrics.jsonl")
    rows_res = read_lines(tmp_path / "resumed" / "metrics.jsonl")
    for a, b in zip(rows_ref, rows_res, strict=True):
        assert (a["train_loss"], a["val_metric"], a["lr"]) == (
            b["train_loss"],
            b["val_metric"],
            b["lr"],
        )


def test_warmup_zero_changes_nothing_and_old_run_folders_resume(tmp_path):
    a, b, c = make_model(), make_model(), make_model()
    run(tmp_path, "default", model=a)
    run(tmp_path, "zero", model=b, warmup_steps=0)
    run(tmp_path, "one", model=c, warmup_steps=1)  # scale 1 from the first step: same updates
    assert states_equal(a.state_dict(), b.state_dict())
    assert states_equal(a.state_dict(), c.state_dict())
    assert (tmp_path / "default" / "config.json").read_bytes() == (
        tmp_path / "zero" / "config.json"
    ).read_bytes()
    # config.json holds warmup_steps only when it is set, as folders written before it existed.
    saved = json.loads((tmp_path / "zero" / "config.json").read_text())
    assert "warmup_steps" not in saved["train"]
    assert json.loads((tmp_path / "one" / "config.json").read_text())["train"]["warmup_steps"] == 1
    assert run(tmp_path, "zero").resumed_from == 3
    with pytest.raises(
        ValueError, match=r"train\.warmup_steps: '<missing>' in config\.json, 5 now"
    ):
        run(tmp_path, "zero", warmup_steps=5)
    with pytest.raises(
        ValueError, match=r"train\.warmup_steps: 1 in config\.json, '<missing>' now"
    ):
        run(tmp_path, "one")


@pytest.mark.parametrize("bad", [-1, 1.5, True, "3"])
def test_warmup_steps_is_checked(bad):
    with pytest.raises(ValueError, match=r"TrainConfig\.warmup_steps must be an int >= 0, got "):
        TrainConfig(warmup_steps=bad)


def test_objective_logs_are_checked(tmp_path):
    data = make_data()
    cfg = TrainConfig(epochs=1, batch_size=8, progress=False)

    def reserved(model, batch, epoch):
        x, y = batch
        return mse(model(x), y), {"time": 1.0}

    with pytest.raises(ValueError, match=r"logs may not be named \['time'\]"):
        fit(make_model(), data, None, objective=reserved, config=cfg, run_dir=tmp_path / "a")
    calls = iter(range(100))

    def changing(model, batch, epoch):
        x, y = batch
        return mse(model(x), y), {f"k{min(next(calls), 1)}": 1.0}

    with pytest.raises(ValueError, match=r"logged \['k1'\], before \['k0'\]"):
        fit(make_model(), data, None, objective=changing, config=cfg, run_dir=tmp_path / "b")

    def text(model, batch, epoch):
        x, y = batch
        return mse(model(x), y), {"note": "fine"}

    with pytest.raises(ValueError, match="objective log 'note': expected a number, got str"):
        fit(make_model(), data, None, objective=text, config=cfg, run_dir=tmp_path / "c")


def test_collate_outputs():
    from weightspace.train import collate_outputs

    a = {"x": torch.ones(2, 3), "pair": (torch.zeros(2), None)}
    b = {"x": torch.zeros(1, 3), "pair": (torch.ones(1), None)}
    out = collate_outputs([a, b])
    assert out["x"].shape == (3, 3) and torch.equal(out["pair"][0], torch.tensor([0.0, 0, 1]))
    assert out["pair"][1] is None
    with pytest.raises(TypeError, match=r"outputs\['s'\]: cannot collate a str"):
        collate_outputs([{"s": "a"}, {"s": "b"}])
    with pytest.raises(TypeError, match=r"outputs\[0\]: a 0-d tensor per batch"):
        collate_outputs([(torch.tensor(1.0),), (torch.tensor(2.0),)])


def test_a_checkpoint_that_needs_code_is_refused_without_pytorchs_hint(tmp_path):
    """#9b: never suggest re-running with weights_only=False."""
    import argparse

    run(tmp_path, epochs=1)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    state = load_checkpoint(ckpt)
    torch.save({**state, "args": argparse.Namespace(lr=1.0)}, ckpt)  # unpickling runs code
    for path in (ckpt, tmp_path / "run" / "best.pt"):
        if path.name == "best.pt":
            torch.save({"model": state["model"], "x": argparse.Namespace()}, path)
        with pytest.raises(ValueError) as err:
            load_checkpoint(path)
        message = str(err.value)
        assert message.startswith(f"{path}: not a readable weightspace checkpoint")
        assert "needs code to unpickle (argparse.Namespace)" in message
        assert "weights_only" not in message and "False" not in message
        assert "still be loaded" not in message  # PyTorch's advice to load it anyway
        assert "\n" not in message
    with pytest.raises(ValueError, match="needs code to unpickle") as err:
        run(tmp_path, epochs=1)  # resuming reads checkpoint.pt
    assert "weights_only" not in str(err.value)
