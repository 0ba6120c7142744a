import dataclasses
import json
import subprocess
import sys

import pytest

from weightspace import __version__
from weightspace.cli import build_parser, main


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


def test_parse_zoo_import_beside_zoo_generation():
    parser = build_parser()
    argv = ["zoo", "import", "--checkpoints", "c", "--targets", "t.csv", "--out", "z"]
    args = parser.parse_args([*argv, "--module", "m:F", "--split-seed", "3"])
    assert (args.zoo_command, args.checkpoints, args.targets, args.out) == (
        "import",
        "c",
        "t.csv",
        "z",
    )
    assert (args.module, args.target, args.activation, args.split_seed) == ("m:F", None, None, 3)
    assert args.handler.__name__ == "_zoo_import"
    args = parser.parse_args(["zoo", "--dataset", "digits", "--networks", "5", "--out", "z"])
    assert args.zoo_command is None and args.handler.__name__ == "_zoo"


def test_zoo_without_dataset_names_the_missing_options(capsys):
    with pytest.raises(SystemExit):
        main(["zoo", "--networks", "5"])
    assert "required: --dataset, --out" in capsys.readouterr().err


INR_NP = ["train", "inr-classify", "--inrs", "i", "--model", "np", "--out", "r"]


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
        ["zoo", "--networks", "5", "--out", "z"],  # no --dataset, no import
        ["zoo"],
        ["zoo", "import", "--checkpoints", "c", "--out", "z"],  # no --targets
        [
            "zoo",
            "import",
            "--checkpoints",
            "c",
            "--targets",
            "t",
            "--out",
            "z",
            "--split-seed",
            "x",
        ],
        ["zoo", "export", "--out", "z"],
        ["inr"],  # no action
        ["inr", "fit", "--dataset", "digits"],  # no --out
        ["inr", "show", "--inrs", "i", "--out", "p.png", "--n", "0"],
        ["train", "inr-classify", "--inrs", "i", "--model", "cnn", "--out", "r"],
        ["train", "inr-classify", "--inrs", "i", "--model", "np", "--out", "r", "--epochs", "0"],
        ["evaluate", "--run", "r", "--zoo", "z", "--inrs", "i"],  # one kind of data only
        [*INR_NP, "--sign-flips", "x"],
        [*INR_NP, "--fourier-features", "-1"],
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


def test_unknown_dataset_exits_2(tmp_path, capsys):
    assert main(["zoo", "--dataset", "cifar", "--networks", "2", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'cifar'" in _one_line_error(capsys, "zoo")


def fake_runner(monkeypatch) -> dict:
    """Replace the runner's run and evaluate by recorders of what the CLI passes them."""
    from weightspace.tasks import runner

    seen: dict = {}

    def run(task, config):
        seen["c"] = (task.name, config)
        return {}

    def evaluate(task, run, data, device):
        seen["e"] = (task.name, run, data, device)
        return {"out": f"{run}/eval/x"}

    monkeypatch.setattr(runner, "run", run)
    monkeypatch.setattr(runner, "evaluate", evaluate)
    return seen


def test_handlers_pass_the_arguments_on(tmp_path, monkeypatch, capsys):
    seen = fake_runner(monkeypatch)
    argv = ["train", "generalization", "--zoo", "z", "--model", "statnet", "--out", "r"]
    assert main([*argv, "--epochs", "7", "--batch-size", "4", "--patience", "2", "--augment"]) == 0
    task, config = seen["c"]
    assert task == "generalization" and (config.zoo, config.model, config.out) == (
        "z",
        "statnet",
        "r",
    )
    assert (config.epochs, config.batch_size, config.patience, config.seed) == (7, 4, 2, 0)
    assert config.augment and config.zoo_kind == "auto"
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": {"task": "generalization"}}))
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--zoo", "z"]) == 0
    assert seen["e"] == ("generalization", str(run), "z", "auto")
    assert capsys.readouterr().out.endswith(f"written: {run}/eval/x/metrics.json\n")


def test_train_defaults_are_the_config_dataclasses(monkeypatch):
    """Every `train` option of every task defaults to its config field's default."""
    from weightspace.tasks.registry import TASKS

    seen = fake_runner(monkeypatch)
    for task in TASKS.values():
        fields = dataclasses.fields(task.config_class)
        # Options without a default (inr-edit's --edit) get their first choice.
        required = {f.name: f.metadata["choices"][0] for f in fields if f.metadata.get("required")}
        given = [a for k, v in required.items() for a in (f"--{k.replace('_', '-')}", v)]
        argv = ["train", task.command, f"--{task.data_field}", "d", *given, "--model"]
        assert main([*argv, task.config_class.models[-1], "--out", "r"]) == 0
        expected = task.config_class("d", task.config_class.models[-1], "r", **required)
        assert seen["c"] == (task.name, expected)
        defaults = {f.name: f.default for f in fields}
        args = build_parser().parse_args([*argv, task.config_class.models[0], "--out", "r"])
        for name in task.cli_fields:
            if name not in required:
                assert getattr(args, name) == defaults[name], (task.name, name)


def test_python_dash_m():
    proc = subprocess.run(
        [sys.executable, "-m", "weightspace", "--version"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"weightspace {__version__}"


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
    assert printed.endswith(f"written: {run}/eval/zoo/metrics.json\n")
    assert json.loads((run / "metrics.json").read_text()) == trained  # #2: left as trained

    demo = tmp_path / "demo"
    argv = ["demo", "--out", str(demo), "--networks", "16", "--epochs", "1", "--zoo-epochs", "1"]
    assert main([*argv, "--dataset", "digits", *tiny]) == 0
    report = (demo / "report.md").read_text()
    assert "NFN_HNP + probes" in report and "StatNN" in report
    assert "](hnp-probe/scatter.png)" in report and (demo / "hnp-probe" / "scatter.png").is_file()
    assert "weightspace zoo --dataset digits --networks 16" in report
    # The report says how its zoo differs from the Small CNN Zoo, with this zoo's own figures.
    assert "## How this zoo differs from the Small CNN Zoo" in report
    assert "| CNNs | 16 | about 30 000 per dataset |" in report
    assert "| training per CNN | 1 epoch of" in report
    for model in ("hnp-probe", "statnet"):
        assert json.loads((demo / model / "metrics.json").read_text())["epochs_run"] == 1
    # A second run reuses the zoo and the finished predictors.
    assert main([*argv, "--dataset", "digits", *tiny]) == 0
    assert "(this one reused the zoo)" in (demo / "report.md").read_text()
    timings = json.loads((demo / "timings.json").read_text())
    assert timings.keys() == {"zoo", "hnp-probe", "statnet"}


# ------------------------------------------------------------------ INRs
def test_parse_inr_commands():
    parser = build_parser()
    args = parser.parse_args(["inr", "fit", "--dataset", "digits", "--out", "i", "--limit", "5"])
    assert (args.command, args.inr_command, args.dataset, args.out, args.limit) == (
        "inr",
        "fit",
        "digits",
        "i",
        5,
    )
    assert (args.seed, args.augment, args.steps) == (None, None, None)
    args = parser.parse_args(["inr", "show", "--inrs", "i", "--out", "g.png"])
    assert (args.inrs, args.out, args.n) == ("i", "g.png", 16)
    args = parser.parse_args(
        ["train", "inr-classify", "--inrs", "i", "--model", "mlp-aug", "--out", "r"]
    )
    assert (args.task, args.inrs, args.model, args.out, args.seed) == (
        "inr-classify",
        "i",
        "mlp-aug",
        "r",
        0,
    )
    assert (args.epochs, args.batch_size, args.lr, args.patience, args.device) == (
        30,
        32,
        1e-3,
        None,
        "auto",
    )
    args = parser.parse_args(["evaluate", "--run", "r", "--inrs", "i"])
    assert (args.run, args.inrs, args.zoo) == ("r", "i", None)


def test_inr_handlers_pass_the_arguments_on(monkeypatch, tmp_path):
    import weightspace.data.inr as inr
    import weightspace.tasks.inr_classification as cls

    seen = fake_runner(monkeypatch)
    monkeypatch.setattr(inr, "fit_inrs", lambda config: seen.update(f=config) or config.out)
    argv = ["inr", "fit", "--dataset", "mnist", "--out", "i", "--seed", "2", "--augment", "3"]
    assert main([*argv, "--steps", "40"]) == 0
    config = seen["f"]
    assert (config.dataset, config.out, config.seed, config.augment, config.steps) == (
        "mnist",
        "i",
        2,
        3,
        40,
    )
    assert config.limit is None and config.lr == inr.InrConfig("mnist", "x").lr
    argv = ["train", "inr-classify", "--inrs", "i", "--model", "hnp", "--out", "r", "--lr", "0.01"]
    assert main([*argv, "--epochs", "7", "--batch-size", "4", "--patience", "2"]) == 0
    config = seen["c"][1]
    assert (config.inrs, config.model, config.out, config.lr) == ("i", "hnp", "r", 0.01)
    assert (config.epochs, config.batch_size, config.patience, config.seed) == (7, 4, 2, 0)
    argv = ["train", "inr-classify", "--inrs", "i", "--model", "np", "--out", "r"]
    assert main([*argv, "--fourier-features", "0", "--sign-flips", "off"]) == 0
    config = seen["c"][1]
    assert (config.fourier_features, config.sign_flips) == (None, False)
    assert main(["train", "inr-classify", "--inrs", "i", "--model", "np", "--out", "r"]) == 0
    assert seen["c"][1] == cls.InrClassifyConfig("i", "np", "r")  # fourier 64, sign flips on
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": {"task": "inr-classification"}}))
    assert main(["evaluate", "--run", str(run), "--inrs", "i", "--device", "cpu"]) == 0
    assert seen["e"] == ("inr-classification", str(run), "i", "cpu")


def test_evaluate_refuses_a_run_of_the_other_task(tmp_path, capsys):
    for task, wrong, right in (
        ("generalization", "--inrs", "--zoo"),
        ("inr-classification", "--zoo", "--inrs"),
    ):
        run = tmp_path / task
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"train": {}, "task": {"task": task}}))
        assert main(["evaluate", "--run", str(run), wrong, str(tmp_path)]) == 2
        err = _one_line_error(capsys, "evaluate")
        assert f"is a {task} run; evaluate it with {right} DIR, not {wrong}" in err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"task": {"task": "editing"}}))
    assert main(["evaluate", "--run", str(tmp_path / "other"), "--inrs", str(tmp_path)]) == 2
    assert "task 'editing' is not one `weightspace evaluate` knows" in _one_line_error(
        capsys, "evaluate"
    )
    assert main(["evaluate", "--run", str(tmp_path), "--inrs", str(tmp_path)]) == 2
    assert "config.json is missing" in _one_line_error(capsys, "evaluate")


def test_inr_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["inr", "show", "--inrs", str(tmp_path), "--out", str(tmp_path / "g.png")]) == 2
    assert "needs a folder written by `weightspace inr fit`" in _one_line_error(capsys, "inr")
    assert main(["inr", "fit", "--dataset", "cifar", "--out", str(tmp_path / "i")]) == 2
    assert "unknown dataset 'cifar'" in _one_line_error(capsys, "inr")
    argv = ["train", "inr-classify", "--inrs", str(tmp_path), "--model", "np", "--out"]
    assert main([*argv, str(tmp_path / "run")]) == 2
    assert "is not an INR folder" in _one_line_error(capsys, "train")


def test_inr_end_to_end_on_digits(tmp_path, capsys):
    inrs, run = tmp_path / "inrs", tmp_path / "run"
    argv = ["inr", "fit", "--dataset", "digits", "--out", str(inrs), "--limit", "20"]
    assert main([*argv, "--steps", "20", "--seed", "1"]) == 0
    header = json.loads((inrs / "inrs.json").read_text())
    assert header["num_inrs"] == 40 and header["config"]["steps"] == 20

    grid = tmp_path / "grid.png"
    assert main(["inr", "show", "--inrs", str(inrs), "--out", str(grid), "--n", "6"]) == 0
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    argv = ["train", "inr-classify", "--inrs", str(inrs), "--model", "np", "--out", str(run)]
    assert main([*argv, "--epochs", "2", "--batch-size", "8"]) == 0
    trained = json.loads((run / "metrics.json").read_text())
    assert trained["model"] == "np" and trained["n_test"] == 20 and trained["epochs_run"] == 2
    assert (run / "confusion.png").is_file()

    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--inrs", str(inrs)]) == 0
    printed = capsys.readouterr().out
    evaluated = json.loads(printed[: printed.rindex("}") + 1])
    assert evaluated["test_accuracy"] == trained["test_accuracy"]
    assert evaluated["confusion_matrix"] == trained["confusion_matrix"]
    # A generalization flag on an INR run is refused before anything is read.
    assert main(["evaluate", "--run", str(run), "--zoo", str(inrs)]) == 2
    assert "evaluate it with --inrs DIR" in _one_line_error(capsys, "evaluate")


# ------------------------------------------------------------------ OS errors (#6)
def test_os_errors_exit_2_with_one_line_naming_the_path(tmp_path, capsys, monkeypatch):
    """An --out that is a file, or inside one, or in a missing or read-only folder: one line,
    the path and the cause, no traceback, and no temporary file left behind."""
    afile = tmp_path / "a-file"
    afile.write_text("not a folder")
    argv = ["inr", "show", "--inrs", str(tmp_path / "inrs"), "--out"]
    inrs = tmp_path / "inrs"
    fit = ["inr", "fit", "--dataset", "digits", "--out", str(inrs), "--limit", "20"]
    assert main([*fit, "--steps", "2"]) == 0
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "nodir" / "x.png")]) == 2
    err = _one_line_error(capsys, "inr")
    assert f"{tmp_path / 'nodir' / 'x.png'}: No such file or directory" in err
    assert ".tmp" not in err
    assert main([*argv, str(afile / "x.png")]) == 2
    assert f"{afile / 'x.png'}: Not a directory" in _one_line_error(capsys, "inr")
    train = ["train", "inr-classify", "--inrs", str(inrs), "--model", "mlp", "--epochs", "1"]
    assert main([*train, "--out", str(afile)]) == 2
    assert f"{afile}: File exists" in _one_line_error(capsys, "train")
    assert main([*train, "--out", str(afile / "run")]) == 2
    assert f"{afile}" in _one_line_error(capsys, "train")
    assert not [p for p in tmp_path.rglob(".*.tmp")]
    # A read-only folder (tests may run as root, whom permissions do not stop: the refusal is
    # simulated where the OS would give it, in the move of the finished temp file).
    import errno
    import os

    def refuse(src, dst, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", src)

    monkeypatch.setattr(os, "replace", refuse)
    assert main([*argv, str(tmp_path / "grid.png")]) == 2
    err = _one_line_error(capsys, "inr")
    assert f"{tmp_path / 'grid.png'}: Permission denied" in err and ".tmp" not in err
    monkeypatch.undo()
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_an_unreadable_run_file_is_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "config.json").mkdir(parents=True)  # a folder where a file should be
    assert main(["evaluate", "--run", str(run), "--zoo", str(tmp_path)]) == 2
    assert "config.json" in _one_line_error(capsys, "evaluate")
