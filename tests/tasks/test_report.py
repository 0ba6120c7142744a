import csv

import pytest

from weightspace.cli import main
from weightspace.io import write_json
from weightspace.tasks.report import learning_curve


def fake_run(root, name, model, n_train, seed, accuracy, task="inr-classification"):
    run = root / name
    run.mkdir()
    write_json(
        {"train": {"seed": seed}, "task": {"task": task, "model": model}}, run / "config.json"
    )
    metrics = {"model": model, "n_train": n_train, "seed": seed, "test_accuracy": accuracy}
    if task == "generalization":
        metrics["kendall_tau"] = metrics.pop("test_accuracy")
    write_json(metrics, run / "metrics.json")
    return run


def test_learning_curve_tables_means_over_seeds_per_model_and_size(tmp_path):
    runs = [
        fake_run(tmp_path, "a", "probe", 100, 0, 0.5),
        fake_run(tmp_path, "b", "probe", 100, 1, 0.7),
        fake_run(tmp_path, "c", "probe", 1000, 0, 0.9),
        fake_run(tmp_path, "d", "np", 1000, 0, 0.2),
    ]
    rows = learning_curve(runs, tmp_path / "out", title="t")
    assert [(r["model"], r["n_train"]) for r in rows] == [
        ("np", 1000), ("probe", 100), ("probe", 100), ("probe", 1000)
    ]  # fmt: skip
    table = (tmp_path / "out" / "learning_curve.md").read_text().splitlines()
    assert "| model | 100 | 1000 |" in table
    assert "| probe | 0.600 (n=2) | 0.900 |" in table
    assert "| np |  | 0.200 |" in table
    with open(tmp_path / "out" / "learning_curve.csv") as f:
        got = list(csv.DictReader(f))
    assert len(got) == 4 and got[0]["test_accuracy"] == "0.2"
    assert (tmp_path / "out" / "learning_curve.png").stat().st_size > 1000


def test_report_command_and_its_errors(tmp_path, capsys):
    a = fake_run(tmp_path, "a", "probe", 100, 0, 0.5)
    assert main(["report", "--runs", str(a), "--out", str(tmp_path / "out")]) == 0
    assert "| probe | 0.500 |" in capsys.readouterr().out
    unfinished = tmp_path / "u"
    unfinished.mkdir()
    write_json({"task": {"task": "inr-classification"}}, unfinished / "config.json")
    with pytest.raises(ValueError, match=r"has not finished: metrics\.json is missing"):
        learning_curve([unfinished], tmp_path / "o2")
    with pytest.raises(ValueError, match="is not a training run"):
        learning_curve([tmp_path], tmp_path / "o3")
    g = fake_run(tmp_path, "g", "hnp", 10, 0, 0.3, task="generalization")
    with pytest.raises(ValueError, match="runs of several tasks"):
        learning_curve([a, g], tmp_path / "o4")
