import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from weightspace.train import distributed

TORCHRUN = Path(sys.executable).parent / "torchrun"

_SCRIPT = """
import sys
import torch
from torch import nn
from weightspace.train import TrainConfig, cleanup_distributed, fit, init_distributed

rank, world, device = init_distributed()
torch.set_num_threads(1)
out = sys.argv[1]
g = torch.Generator().manual_seed(0)
x = torch.randn(45, 4, generator=g)
y = x @ torch.randn(4, generator=g)
items = list(zip(x, y))
torch.manual_seed(100 + rank)  # other initial weights on each rank: DDP must broadcast rank 0's
model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
mse = lambda o, t: ((o.reshape(-1) - t) ** 2).mean()
seen = []

def metric(o, t):
    seen.append(t.clone())
    return -float(mse(o, t))

result = fit(model, items[:32], items[32:], loss_fn=mse, metric_fn=metric,
             config=TrainConfig(epochs=3, batch_size=4, lr=1e-2, progress=False),
             run_dir=out + "/run", restore_best=False)

# Any objective with tuple outputs: its logs are averaged over both ranks' batches, its
# validation loss over the whole validation set (each item once), its metric on gathered outputs.
class Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 1), nn.Linear(4, 1)
    def forward(self, x):
        return self.a(x).reshape(-1), self.b(x).reshape(-1)

def objective(m, batch, epoch):
    x, t = batch
    a, b = m(x)
    return ((a - t) ** 2).mean() + epoch * ((b - t) ** 2).mean(), {"n": float(len(t)), "w": epoch}

pair_seen = []
torch.manual_seed(0)
pair = fit(Pair(), items[:32], items[32:], objective=objective,
           metric_fn=lambda o, t: pair_seen.append((o[0].shape[0], o[1].shape[0], t.clone())) or 0.0,
           config=TrainConfig(epochs=2, batch_size=4, lr=1e-2, progress=False),
           run_dir=out + "/pair")
torch.save({
    "pair_history": pair.history,
    "pair_seen": pair_seen,
    "params": model.state_dict(),
    "world": world,
    "device": str(device),
    "val_targets": torch.stack(seen),  # what metric_fn saw: the whole val set, in order
    "history": [r["val_metric"] for r in result.history],
}, f"{out}/rank{rank}.pt")
cleanup_distributed()
"""


@pytest.mark.skipif(not TORCHRUN.exists(), reason=f"torchrun not found next to {sys.executable}")
def test_two_processes_train_in_step(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    assert [r["device"] for r in ranks] == ["cpu", "cpu"]
    for key, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][key]), key
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == [
        "best.pt",
        "checkpoint.pt",
        "config.json",
        "metrics.jsonl",
    ]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    # Validation outputs are gathered from both ranks: 13 targets in dataset order, no padding.
    g = torch.Generator().manual_seed(0)
    x = torch.randn(45, 4, generator=g)
    y = x @ torch.randn(4, generator=g)
    for r in ranks:
        assert r["val_targets"].shape == (3, 13)
        assert torch.equal(r["val_targets"], y[32:].expand(3, 13))
        assert r["history"] == [row["val_metric"] for row in rows]
    for r in ranks:
        assert [h["w"] for h in r["pair_history"]] == [1.0, 2.0]
        assert [h["val_w"] for h in r["pair_history"]] == [1.0, 2.0]
        assert [(a, b) for a, b, _ in r["pair_seen"]] == [(13, 13), (13, 13)]
        assert all(torch.equal(t, y[32:]) for _, _, t in r["pair_seen"])
        # Batch sizes, weighted by themselves over both ranks: 7 items (4 + 3) on rank 0 and 6
        # (4 + 2) on rank 1 cover the 13 validation items once, without the sampler's padding.
        assert [h["val_n"] for h in r["pair_history"]] == [pytest.approx(45 / 13)] * 2
        assert [h["n"] for h in r["pair_history"]] == [4.0, 4.0]
    untimed = [
        [{k: v for k, v in h.items() if k != "time"} for h in r["pair_history"]] for r in ranks
    ]
    assert untimed[0] == untimed[1]
    final = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], v) for k, v in ranks[0]["params"].items())


def test_single_process_defaults(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    rank, world, device = distributed.init_distributed()
    assert (rank, world) == (0, 1)
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert not distributed.is_distributed() and distributed.is_main_process()
    local = torch.arange(6.0).reshape(3, 2)
    assert torch.equal(distributed.gather_ordered(local, 2), local[:2])


def test_bad_environment(monkeypatch):
    monkeypatch.setenv("RANK", "two")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK='two' must be an integer"):
        distributed.init_distributed()
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match=r"RANK=3 must lie in \[0, WORLD_SIZE=2\)"):
        distributed.init_distributed()


def test_rank_and_world_reads_torchrun_variables_without_a_group(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.rank_and_world() == (0, 1)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed.rank_and_world() == (1, 3)
    # The process-group view is unaffected: no group exists.
    assert (distributed.get_rank(), distributed.get_world_size()) == (0, 1)
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(ValueError, match=r"RANK=3 must lie in \[0, WORLD_SIZE=3\)"):
        distributed.rank_and_world()
    monkeypatch.setenv("WORLD_SIZE", "x")
    with pytest.raises(ValueError, match="WORLD_SIZE='x' must be an integer"):
        distributed.rank_and_world()
