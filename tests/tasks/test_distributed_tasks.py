"""Both training tasks run under ``torchrun`` with 2 processes (DDP over gloo) from the CLI.

The run a 2-process job writes must be a complete, valid run: its metrics log covers every epoch,
its ``metrics.json`` holds the test metrics, and a single-process ``evaluate`` of the saved model
reproduces them (so the checkpoint is the model DDP trained and the test outputs gathered from
both ranks were all of them, in order). Only rank 0 writes: every file weightspace writes is
moved into place by ``os.replace`` (:func:`weightspace.io.atomic_path`), which the wrapper below
records per rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from weightspace.data.inr import InrConfig, fit_inrs
from weightspace.tasks.generalization import evaluate
from weightspace.tasks.inr_classification import evaluate_inrs

from ._zoos import digits_zoo

TORCHRUN = Path(sys.executable).parent / "torchrun"
pytestmark = pytest.mark.skipif(
    not TORCHRUN.exists(), reason=f"torchrun not found next to {sys.executable}"
)


_CLI = """
import json, os, sys
from weightspace.cli import main

written, replace = [], os.replace
def recording(src, dst, *args, **kwargs):
    written.append(os.path.basename(dst))
    return replace(src, dst, *args, **kwargs)
os.replace = recording
status = main(sys.argv[2:])
with open(f"{sys.argv[1]}/written-{os.environ['RANK']}.json", "w") as f:
    json.dump(written, f)
sys.exit(status)
"""


def torchrun(tmp_path: Path, *args: str) -> list[list[str]]:
    """Run the CLI under torchrun with 2 processes; the files each rank wrote."""
    script = tmp_path / "cli.py"
    script.write_text(_CLI)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)]
    proc = subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((tmp_path / f"written-{r}.json").read_text()) for r in (0, 1)]


def epochs_logged(run: Path) -> list[int]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def test_inr_classification_under_torchrun(tmp_path: Path) -> None:
    inrs = fit_inrs(
        InrConfig(dataset="digits", out=str(tmp_path / "inrs"), limit=24, steps=20, chunk_size=16),
        progress=False,
    )
    run = tmp_path / "run"
    rank0, rank1 = torchrun(
        tmp_path,
        *("train", "inr-classify", "--inrs", str(inrs), "--model", "np", "--out", str(run)),
        *("--epochs", "2", "--batch-size", "8"),
    )
    assert rank1 == []
    assert {"config.json", "metrics.json", "confusion.png", "predictions.csv"} <= set(rank0)
    assert epochs_logged(run) == [1, 2]
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["n_test"] == 24 and sum(map(sum, trained["confusion_matrix"])) == 24
    again = evaluate_inrs(run, inrs)
    assert again["test_accuracy"] == trained["test_accuracy"]
    assert again["confusion_matrix"] == trained["confusion_matrix"]


def test_generalization_under_torchrun(tmp_path: Path) -> None:
    zoo = digits_zoo(tmp_path / "zoo", 48, 16, limit_train=128, limit_test=64)
    run = tmp_path / "run"
    rank0, rank1 = torchrun(
        tmp_path,
        *("train", "generalization", "--zoo", str(zoo), "--model", "hnp", "--out", str(run)),
        *("--epochs", "2"),
    )
    assert rank1 == []
    assert {"config.json", "metrics.json", "scatter.png", "predictions.csv"} <= set(rank0)
    assert epochs_logged(run) == [1, 2]
    trained = json.loads((run / "metrics.json").read_text())
    again = evaluate(run, zoo)
    for key in ("kendall_tau", "r2", "mae"):
        assert again[key] == pytest.approx(trained[key], abs=1e-6), key
