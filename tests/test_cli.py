import importlib.util
import json
import subprocess
import sys

import pytest

from weightspace import __version__
from weightspace.cli import build_parser, main

HAVE_ZOO = importlib.util.find_spec("weightspace.data.zoo") is not None


def test_parse_train_generalization():
    args = build_parser().parse_args(
        ["train", "generalization", "--zoo", "z", "--model", "np", "--out", "r", "--seed", "3"]
    )
    assert (args.command, args.task, args.zoo, args.model, args.out) == (
        "train",
        "generalization",
        "z",
        "np",
        "r",
    )
    assert (args.seed, args.epochs, args.batch_size, args.lr, args.patience) == (
        3,
        50,
        8,
        1e-3,
        None,
    )


def test_parse_zoo_evaluate_demo():
    parser = build_parser()
    args = parser.parse_args(
        ["zoo", "--dataset", "digits", "--networks", "5", "--out", "z", "--chunk-size", "4"]
    )
    assert (args.dataset, args.networks, args.out, args.seed, args.epochs) == (
        "digits",
        5,
        "z",
        0,
        None,
    )
    assert args.chunk_size == 4 and args.limit_train is None
    args = parser.parse_args(["evaluate", "--run", "r", "--zoo", "z"])
    assert (args.run, args.zoo) == ("r", "z")
    args = parser.parse_args(["demo"])
    assert (args.out, args.networks, args.epochs) == ("runs/demo", None, None)


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["train", "generalization", "--zoo", "z", "--out", "r"],  # no --model
        ["train", "generalization", "--zoo", "z", "--model", "cnn", "--out", "r"],
        ["train", "generalization", "--zoo", "z", "--model", "hnp", "--out", "r", "--epochs", "0"],
        ["train", "generalization", "--zoo", "z", "--model", "hnp", "--out", "r", "--lr", "-1"],
        ["evaluate", "--run", "r"],  # no data to evaluate on
        ["zoo", "--dataset", "digits", "--networks", "many", "--out", "z"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "usage: weightspace" in capsys.readouterr().err


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"weightspace {command}: error: ")
    return err


def test_value_errors_exit_2_with_one_line(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    argv = ["train", "generalization", "--zoo", str(missing), "--model", "hnp", "--out"]
    assert main([*argv, str(tmp_path / "run")]) == 2
    assert "does not exist" in _one_line_error(capsys, "train")
    assert main(["evaluate", "--run", str(tmp_path), "--zoo", str(missing)]) == 2
    assert "config.json is missing" in _one_line_error(capsys, "evaluate")


@pytest.mark.skipif(not HAVE_ZOO, reason="waits on weightspace.data.zoo")
def test_unknown_dataset_exits_2(tmp_path, capsys):
    assert main(["zoo", "--dataset", "cifar", "--networks", "2", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'cifar'" in _one_line_error(capsys, "zoo")


def test_handlers_pass_the_arguments_on(tmp_path, monkeypatch):
    import weightspace.tasks.generalization as gen

    seen = {}
    monkeypatch.setattr(gen, "run_generalization", lambda config: seen.update(c=config) or {})
    monkeypatch.setattr(gen, "evaluate", lambda run, zoo, device: seen.update(e=(run, zoo)) or {})
    argv = ["train", "generalization", "--zoo", "z", "--model", "statnet", "--out", "r"]
    assert main([*argv, "--epochs", "7", "--batch-size", "4", "--patience", "2"]) == 0
    config = seen["c"]
    assert (config.zoo, config.model, config.out) == ("z", "statnet", "r")
    assert (config.epochs, config.batch_size, config.patience, config.seed) == (7, 4, 2, 0)
    assert main(["evaluate", "--run", "r", "--zoo", "z"]) == 0
    assert seen["e"] == ("r", "z")


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "weightspace", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"weightspace {__version__}"


@pytest.mark.skipif(not HAVE_ZOO, reason="waits on weightspace.data.zoo")
def test_end_to_end_on_digits(tmp_path, capsys):
    zoo, run = tmp_path / "zoo", tmp_path / "run"
    tiny = ["--limit-train", "200", "--limit-test", "100"]
    argv = ["zoo", "--dataset", "digits", "--networks", "16", "--out", str(zoo), "--epochs", "1"]
    assert main([*argv, "--chunk-size", "16", *tiny]) == 0
    assert (zoo / "zoo.json").is_file()

    argv = ["train", "generalization", "--zoo", str(zoo), "--model", "hnp", "--out", str(run)]
    assert main([*argv, "--epochs", "2"]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["model"] == "hnp" and trained["n_test"] == 3 and trained["epochs_run"] == 2

    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--zoo", str(zoo)]) == 0
    printed = capsys.readouterr().out
    evaluated = json.loads(printed[: printed.rindex("}") + 1])
    for key in ("kendall_tau", "r2", "mae"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6, nan_ok=True)

    demo = tmp_path / "demo"
    argv = ["demo", "--out", str(demo), "--networks", "16", "--epochs", "1", "--zoo-epochs", "1"]
    assert main([*argv, "--dataset", "digits", *tiny]) == 0
    report = (demo / "report.md").read_text()
    assert "NFN_HNP" in report and "StatNN" in report
    assert "](hnp/scatter.png)" in report and (demo / "hnp" / "scatter.png").is_file()
    assert "weightspace zoo --dataset digits --networks 16" in report
    for model in ("hnp", "statnet"):
        assert json.loads((demo / model / "metrics.json").read_text())["epochs_run"] == 1
    # A second run reuses the zoo and the finished predictors.
    assert main([*argv, "--dataset", "digits", *tiny]) == 0
    assert "(this one reused the zoo)" in (demo / "report.md").read_text()
    assert json.loads((demo / "timings.json").read_text()).keys() == {"zoo", "hnp", "statnet"}
