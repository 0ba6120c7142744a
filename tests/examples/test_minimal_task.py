"""examples/minimal_task.py: a task written against the framework trains, scores and evaluates."""

import json

from tests.examples import run_example


def test_minimal_task_trains_and_writes_its_outputs(tmp_path):
    run_example("minimal_task.py", str(tmp_path))
    run = tmp_path / "run"
    task = json.loads((run / "config.json").read_text())["task"]
    assert task["task"] == "weight-scale" and task["model"] == "hnp"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(1, 11))
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]  # it learned
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_test"] >= 2 and metrics["epochs_run"] == 10
    assert metrics["best_val_r2"] > 0  # better than predicting the mean on validation
    assert (run / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    evaluated = json.loads((run / "eval" / "zoo" / "metrics.json").read_text())
    assert evaluated["r2"] == metrics["r2"] and evaluated["run"] == str(run)
