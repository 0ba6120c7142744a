"""examples/own_networks.py: README's "Your own networks" walkthrough runs as written."""

import csv
import json
import re
import runpy
import shlex
import sys

import pytest
import torch

from tests.examples import ROOT, run_example
from weightspace.cli import main as cli
from weightspace.data.zoo import load_zoo

pytestmark = pytest.mark.usefixtures("one_thread")


def test_own_networks_walkthrough_imports_trains_and_evaluates(tmp_path):
    run_example("own_networks.py", str(tmp_path), "--epochs", "3")
    header = json.loads((tmp_path / "zoo" / "zoo.json").read_text())
    assert header["networks"] == 20 and header["template"] == "own_networks:SmallCNN"
    zoo = load_zoo(tmp_path / "zoo")
    with open(tmp_path / "targets.csv") as f:
        accuracy = [float(r["test_accuracy"]) for r in csv.DictReader(f)]
    assert torch.equal(zoo.test_accuracy, torch.tensor(accuracy, dtype=torch.float32))
    assert max(accuracy) - min(accuracy) > 0.5  # the loop made networks worth telling apart
    saved = torch.load(tmp_path / "checkpoints" / "net07.pt", weights_only=True)
    assert torch.equal(zoo.features.weights[2][7, 0], saved["classifier.weight"])
    assert zoo.spec.kernel_shapes == (
        (3, 3),
        (3, 3),
        (),
    )  # traced: features.0, features.2, classifier
    assert [r["activation"] for r in zoo.metadata] == ["relu"] * 20
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (14, 3, 3)
    evaluated = json.loads((tmp_path / "run" / "eval" / "zoo" / "metrics.json").read_text())
    assert evaluated["mae"] == metrics["mae"] and evaluated["zoo"] == str(tmp_path / "zoo")


def _readme_blocks() -> list[str]:
    """The code blocks of README's "Your own networks" section, in order."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Your own networks", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:python|bash)\n(.*?)```", section, flags=re.S)


def test_readme_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    models, train, commands, custom = _readme_blocks()
    namespace: dict = {}
    exec(custom, namespace)  # the custom-class example: traced, in forward order
    assert namespace["NetworkSpec"].from_module(namespace["MLP"]()).widths == (4, 8, 3)
    assert models.startswith("# models.py") and train.startswith("# train.py")
    (tmp_path / "models.py").write_text(models)
    (tmp_path / "train.py").write_text(train)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "models", raising=False)
    lines = [shlex.split(line) for line in commands.replace("\\\n", " ").splitlines() if line]
    assert lines[0] == ["python", "train.py"] and all(w[0] == "weightspace" for w in lines[1:])
    runpy.run_path("train.py", run_name="__main__")
    for argv in lines[1:]:
        argv = ["2" if a == "30" and argv[i - 1] == "--epochs" else a for i, a in enumerate(argv)]
        assert cli(argv[1:]) == 0, capsys.readouterr().err  # a short predictor run
    assert len(list((tmp_path / "checkpoints").glob("net*.pt"))) == 20
    zoo = load_zoo(tmp_path / "zoo")
    assert zoo.info["template"] == "models:SmallCNN" and len(zoo) == 20
    assert json.loads((tmp_path / "run" / "config.json").read_text())["task"]["epochs"] == 2
    assert (tmp_path / "run" / "eval" / "zoo" / "metrics.json").exists()
