"""weightspace.data.zoo_import: zoos from a folder of checkpoints and a CSV of targets."""

from __future__ import annotations

import csv
import json
import math
import pickle
import random
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from tests.nets import cnn
from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.cli import main
from weightspace.data.container import SPLITS, fixed_split
from weightspace.data.images import load_images
from weightspace.data.zoo import load_zoo
from weightspace.data.zoo_import import (
    import_zoo,
    layer_order,
    module_from_factory,
    read_checkpoint,
)
from weightspace.tasks.generalization import GeneralizationConfig, run_generalization

pytestmark = pytest.mark.usefixtures("one_thread")

#: Distinct widths, so that reading the layers in a wrong order cannot chain by accident.
SPEC = NetworkSpec((4, 6, 5, 3))


def make_mlp(seed: int | None = None) -> nn.Sequential:
    if seed is not None:
        torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def save(state: dict, path: Path) -> Path:
    if path.suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, path)
    else:
        torch.save(state, path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def folder_of(root: Path, n: int, *, shuffle: bool = False) -> tuple[Path, list[nn.Module]]:
    """``n`` MLPs saved as ``root/net{i:02d}.*``: the first half safetensors, then .pt (some
    wrapped in a training-checkpoint dict) and a few .pth; keys shuffled per file if asked."""
    root.mkdir(parents=True)
    rng = random.Random(0)
    modules = []
    for i in range(n):
        m = make_mlp(seed=i)
        modules.append(m)
        state = dict(m.state_dict())
        if shuffle:
            keys = list(state)
            rng.shuffle(keys)
            state = {k: state[k] for k in keys}
        suffix = ".safetensors" if i < n // 2 else (".pth" if i % 5 == 0 else ".pt")
        obj: dict = state
        if suffix == ".pt" and i % 3 == 0:
            obj = {"epoch": 7, "model_state_dict": state, "optimizer": {"lr": 0.1}}
        elif suffix == ".pt" and i % 3 == 1:
            obj = {"state_dict": state}
        save(obj, root / f"net{i:02d}{suffix}")
    return root, modules


def targets_of(n: int, seed: int = 0) -> list[float]:
    g = torch.Generator().manual_seed(seed)
    return [round(float(v), 4) for v in torch.rand(n, generator=g)]


@pytest.fixture(scope="module")
def thirty(tmp_path_factory):
    """30 checkpoints (15 safetensors, 15 .pt/.pth), their modules and a CSV."""
    root = tmp_path_factory.mktemp("thirty")
    folder, modules = folder_of(root / "ckpt", 30)
    acc = targets_of(30)
    # Names with and without extensions, rows in another order than the files.
    names = [p.name if i % 4 == 0 else p.stem for i, p in enumerate(sorted(folder.iterdir()))]
    rows = [[names[i], f"h{i}", acc[i], 0.01 * i] for i in range(30)][::-1]
    csv_path = write_csv(root / "targets.csv", ["name", "optimizer", "test_accuracy", "lr"], rows)
    return folder, modules, acc, csv_path


def test_thirty_checkpoints_in_both_formats_import_and_load_exactly(thirty, tmp_path):
    folder, modules, acc, csv_path = thirty
    suffixes = sorted(p.suffix for p in folder.iterdir())
    assert suffixes.count(".safetensors") == 15 and len(suffixes) == 30
    out = import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    zoo = load_zoo(out)
    assert zoo.spec == SPEC and len(zoo) == 30
    expected = WeightSpaceFeatures.from_modules(modules)
    for name, got, want in zip(
        [t.name for t in SPEC.tensors], zoo.features.tensors, expected.tensors
    ):
        assert torch.equal(got, want), name
    assert torch.equal(zoo.test_accuracy, torch.tensor(acc, dtype=torch.float32))
    # No split column: fixed_split 70/15/15 at load, from the loader's seed.
    assert torch.equal(zoo.split, fixed_split(30, 0))
    assert torch.equal(load_zoo(out, split_seed=4).split, fixed_split(30, 4))
    row = zoo.metadata[3]
    assert row["file"] == "net03.safetensors" and row["name"] == "net03"
    assert (row["optimizer"], row["lr"], row["test_accuracy"]) == ("h3", 0.03, acc[3])
    assert zoo.info["source"] == "import" and zoo.info["target"] == "test_accuracy"
    header = json.loads((out / "zoo.json").read_text())
    assert header["format"] == "weightspace-zoo" and header["spec"] == SPEC.to_dict()
    assert header["checkpoints"] == str(folder.resolve()) and header["template"] is None
    assert not list(tmp_path.glob(".*tmp"))  # the temporary folder was moved, not left


def test_shuffled_keys_import_with_a_template_and_fail_without(tmp_path):
    folder, modules = folder_of(tmp_path / "ckpt", 8, shuffle=True)
    csv_path = write_csv(
        tmp_path / "t.csv", ["name", "acc"], [[f"net{i:02d}", 0.5] for i in range(8)]
    )
    zoo = load_zoo(
        import_zoo(folder, csv_path, tmp_path / "zoo", module=make_mlp(), progress=False)
    )
    expected = WeightSpaceFeatures.from_modules(modules)
    assert all(torch.equal(a, b) for a, b in zip(zoo.features.tensors, expected.tensors))
    assert json.loads((tmp_path / "zoo" / "zoo.json").read_text())["template"].endswith(
        ":Sequential"
    )
    # Control: read in order, the shuffled .pt files do not chain, and the error says what helps.
    with pytest.raises(ValueError, match=r"net0[4-7]\.pt.*--module"):
        import_zoo(folder, csv_path, tmp_path / "zoo2", progress=False)
    assert not (tmp_path / "zoo2").exists()


def test_layer_order_restores_module_order_of_sorted_keys():
    m = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    text_sorted = dict(sorted(m.state_dict().items()))
    assert list(text_sorted)[:3] == ["0.bias", "0.weight", "1.bias"]
    assert list(layer_order(text_sorted)) == list(m.state_dict())


def _write_marker(path: str) -> None:
    Path(path).write_text("the pickle ran code")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (str(self.marker),))


def test_a_malicious_pickle_is_refused_and_never_runs(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save(make_mlp(0).state_dict(), folder / "net00.pt")
    marker = tmp_path / "marker.txt"
    torch.save(_Evil(marker), folder / "net01.pt")
    csv_path = write_csv(tmp_path / "t.csv", ["name", "acc"], [["net00", 0.5], ["net01", 0.6]])
    with pytest.raises(ValueError, match=r"net01\.pt.*weights_only=True.*needs code") as err:
        import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    assert "weights_only=False" not in str(err.value)
    assert not marker.exists() and not (tmp_path / "zoo").exists()
    # Control: the payload is live; unpickled without torch's restrictions it writes the marker.
    with zipfile.ZipFile(folder / "net01.pt") as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    pickle.loads(data)
    assert marker.read_text() == "the pickle ran code"


def test_a_truncated_safetensors_file_is_named(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    save(make_mlp(0).state_dict(), folder / "a.safetensors")
    path = save(make_mlp(1).state_dict(), folder / "b.safetensors")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    csv_path = write_csv(tmp_path / "t.csv", ["name", "acc"], [["a", 0.5], ["b", 0.6]])
    with pytest.raises(ValueError, match=r"b\.safetensors' is truncated or corrupt"):
        import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    with pytest.raises(ValueError, match=r"b\.safetensors' is truncated or corrupt"):
        read_checkpoint(path)


def _three(tmp_path: Path) -> tuple[Path, Path]:
    folder, _ = folder_of(tmp_path / "ckpt", 3)
    rows = [["net00", 0.1], ["net01", 0.2], ["net02", 0.3]]
    return folder, write_csv(tmp_path / "t.csv", ["name", "acc"], rows)


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("csv_text", "match"),
    [
        ("name,acc\nnet00,0.1\nnet01,0.2\n", r"checkpoints missing from .*t\.csv.*'net02\.pt"),
        (
            "name,acc\nnet00,0.1\nnet01,0.2\nnet02,0.3\nnet09,0.4\n",
            r"rows without a checkpoint file .*'net09' \(line 5\)",
        ),
        (
            "name,acc\nnet00,0.1\nnet01,high\nnet02,0.3\n",
            r"line 3 \(name 'net01'\): column 'acc' is 'high'",
        ),
        (
            "name,acc\nnet00,0.1\nnet01,\nnet02,0.3\n",
            r"line 3 \(name 'net01'\): column 'acc' is empty",
        ),
        (
            "name,acc\nnet00,0.1\nnet01,nan\nnet02,0.3\n",
            r"line 3 .*'nan'; expected a number in \[0, 1\]",
        ),
        ("name,acc\nnet00,0.1\nnet01,1.5\nnet02,0.3\n", r"column 'acc' is '1.5'.*rescale"),
        (
            "name,acc,split\nnet00,0.1,train\nnet01,0.2,training\nnet02,0.3,test\n",
            r"line 3 .*column 'split' is 'training'; expected one of train, val, test",
        ),
        ("name,acc\nnet00,0.1\nnet01,0.2\nnet00,0.3\n", r"name 'net00' appears on lines 2 and 4"),
        (
            "name,acc\nnet00,0.1\nnet01,0.2\nnet02.pt,0.3\nnet02,0.4\n",
            r"lines 4 .* and 5 .* both name the checkpoint 'net02\.pt'",
        ),
        ("file,acc\nnet00,0.1\n", r"no 'name' column"),
        ("name,optimizer\nnet00,sgd\nnet01,adam\nnet02,sgd\n", r"no numeric column.*--target"),
        ("name,acc\n", r"has a header but no rows"),
    ],
)
def test_csv_errors_name_the_row_and_column(tmp_path, csv_text, match):
    folder, _ = _three(tmp_path)
    with pytest.raises(ValueError, match=match):
        import_zoo(folder, _csv(tmp_path, csv_text), tmp_path / "zoo", progress=False)
    assert not (tmp_path / "zoo").exists()


def test_target_column_split_column_and_activation(tmp_path):
    folder, _ = _three(tmp_path)
    text = "name,optimizer,val_acc,split,test_acc\nnet00,sgd,0.1,train,0.9\nnet01,adam,0.2,VAL,0.8\nnet02,sgd,0.3,test,0.7\n"
    csv_path = _csv(tmp_path, text)
    zoo = load_zoo(import_zoo(folder, csv_path, tmp_path / "a", progress=False))
    assert zoo.info["target"] == "val_acc"  # the first numeric column
    assert torch.allclose(zoo.test_accuracy, torch.tensor([0.1, 0.2, 0.3]))
    assert zoo.split.tolist() == [SPLITS["train"], SPLITS["val"], SPLITS["test"]]
    assert torch.equal(load_zoo(tmp_path / "a", split_seed=5).split, zoo.split)  # the CSV's
    out = import_zoo(
        folder,
        csv_path,
        tmp_path / "b",
        target_column="test_acc",
        activation="tanh",
        progress=False,
    )
    zoo = load_zoo(out)
    assert torch.allclose(zoo.test_accuracy, torch.tensor([0.9, 0.8, 0.7]))
    assert [r["activation"] for r in zoo.metadata] == ["tanh"] * 3
    assert zoo.metadata[0]["val_acc"] == 0.1 and zoo.metadata[0]["test_acc"] == 0.9
    with pytest.raises(ValueError, match=r"target column 'accuracy' is not one of its columns"):
        import_zoo(folder, csv_path, tmp_path / "c", target_column="accuracy", progress=False)
    with pytest.raises(ValueError, match=r"has a 'split' column, and a split seed"):
        import_zoo(folder, csv_path, tmp_path / "c", split_seed=1, progress=False)
    with pytest.raises(ValueError, match=r"unknown activation 'swish'"):
        import_zoo(folder, csv_path, tmp_path / "c", activation="swish", progress=False)
    with pytest.raises(ValueError, match=r"epoch must be None"):
        load_zoo(out, epoch=1)


def test_split_seed_draws_the_split_at_import(tmp_path):
    folder, _ = folder_of(tmp_path / "ckpt", 20)
    csv_path = write_csv(
        tmp_path / "t.csv", ["name", "acc"], [[f"net{i:02d}", 0.5] for i in range(20)]
    )
    zoo = load_zoo(import_zoo(folder, csv_path, tmp_path / "zoo", split_seed=3, progress=False))
    assert torch.equal(zoo.split, fixed_split(20, 3))
    assert torch.equal(load_zoo(tmp_path / "zoo", split_seed=0).split, fixed_split(20, 3))


def test_checkpoint_errors_name_the_file_and_tensor(tmp_path):
    folder, csv_path = _three(tmp_path)
    # NaN weights: the file and the tensor key.
    bad = make_mlp(5).state_dict()
    bad["2.weight"][1, 2] = math.nan
    save(bad, folder / "net02.pt")
    with pytest.raises(ValueError, match=r"net02\.pt': tensor '2\.weight' holds NaN"):
        import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    # Mixed architectures: both files and both weight spaces.
    other = nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))
    save(other.state_dict(), folder / "net02.pt")
    with pytest.raises(
        ValueError,
        match=r"mixed architectures: .*net02\.pt' has weight space NetworkSpec\(widths=\(4, 7, 5, 3\).*net00\.safetensors' has NetworkSpec\(widths=\(4, 6, 5, 3\)",
    ):
        import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    # With a template: the file, the key and the shape the template expects.
    with pytest.raises(
        ValueError, match=r"net02\.pt'\['0\.weight'\]: shape \(7, 4\), expected \(6, 4\)"
    ):
        import_zoo(folder, csv_path, tmp_path / "zoo", module=make_mlp(), progress=False)
    # A key the template does not have.
    save({**make_mlp(5).state_dict(), "extra.weight": torch.ones(2, 2)}, folder / "net02.pt")
    with pytest.raises(ValueError, match=r"net02\.pt'.*unexpected key\(s\) \['extra\.weight'\]"):
        import_zoo(folder, csv_path, tmp_path / "zoo", module=make_mlp(), progress=False)
    # Not a state dict, and integer tensors (buffers).
    torch.save([torch.ones(2)], folder / "net02.pt")
    with pytest.raises(ValueError, match=r"net02\.pt' holds a list, not a state dict"):
        import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    torch.save({"0.weight": torch.ones(6, 4), "n": torch.tensor(3)}, folder / "net02.pt")
    with pytest.raises(ValueError, match=r"net02\.pt': tensor 'n' is torch\.int64"):
        import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    # Two files of one name.
    save(make_mlp(5).state_dict(), folder / "net02.pt")
    save(make_mlp(5).state_dict(), folder / "net02.safetensors")
    with pytest.raises(
        ValueError, match=r"'net02\.pt' and 'net02\.safetensors' have the same name"
    ):
        import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    assert not (tmp_path / "zoo").exists() and not list(tmp_path.glob(".zoo*"))


def test_folder_and_output_errors(tmp_path):
    folder, csv_path = _three(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no checkpoints here")
    with pytest.raises(
        ValueError, match=r"empty' holds no checkpoints; expected files ending in \.safetensors"
    ):
        import_zoo(empty, csv_path, tmp_path / "zoo", progress=False)
    with pytest.raises(ValueError, match=r"checkpoint folder .*nowhere' does not exist"):
        import_zoo(tmp_path / "nowhere", csv_path, tmp_path / "zoo", progress=False)
    with pytest.raises(ValueError, match=r"targets file .*none\.csv' does not exist"):
        import_zoo(folder, tmp_path / "none.csv", tmp_path / "zoo", progress=False)
    out = import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    with pytest.raises(
        ValueError, match=r"zoo' already holds a zoo; import into a new or empty folder"
    ):
        import_zoo(folder, csv_path, out, progress=False)
    (tmp_path / "empty_out").mkdir()
    assert (
        load_zoo(import_zoo(folder, csv_path, tmp_path / "empty_out", progress=False)).spec == SPEC
    )
    with pytest.raises(TypeError, match=r"module must be an nn.Module"):
        import_zoo(folder, csv_path, tmp_path / "x", module="mymodels:MLP", progress=False)


FACTORIES = """
import torch
from torch import nn

def mlp():
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))

class Net(nn.Sequential):
    def __init__(self):
        super().__init__(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))

class Custom(nn.Module):
    # A user's model class: fc2 registered first, a functional activation.

    def __init__(self):
        super().__init__()
        self.fc2 = nn.Linear(6, 3)
        self.fc1 = nn.Linear(4, 6)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))

def needs_args(width):
    return nn.Linear(4, width)

def broken():
    raise RuntimeError("no GPU here")

def not_a_module():
    return {"0.weight": 1}

CONSTANT = 3
"""


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """A module ``zi_factories`` in the current folder, as a user's ``models.py`` would be."""
    (tmp_path / "zi_factories.py").write_text(FACTORIES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(__import__("sys").modules, "zi_factories", raising=False)
    yield "zi_factories"
    __import__("sys").modules.pop("zi_factories", None)


def test_module_from_factory_builds_templates_and_names_each_mistake(factories):
    assert NetworkSpec.from_module(module_from_factory(f"{factories}:mlp")) == SPEC
    assert NetworkSpec.from_module(module_from_factory(f"{factories}:Net")) == SPEC
    for text, match in [
        ("zi_factories", r"expected 'package\.module:Factory'"),
        ("zi_factories:", r"expected 'package\.module:Factory'"),
        ("zi factories:mlp", r"expected 'package\.module:Factory'"),
        (
            "no_such_module_zi:mlp",
            r"cannot import module 'no_such_module_zi' \(ModuleNotFoundError",
        ),
        ("zi_factories:MLP", r"module 'zi_factories' has no attribute 'MLP'"),
        ("zi_factories:CONSTANT", r"'CONSTANT' is a int, expected a class or function"),
        ("zi_factories:needs_args", r"calling needs_args\(\) failed \(TypeError"),
        ("zi_factories:broken", r"calling broken\(\) failed \(RuntimeError: no GPU here\)"),
        (
            "zi_factories:not_a_module",
            r"not_a_module\(\) returned a dict, expected a torch\.nn\.Module",
        ),
    ]:
        with pytest.raises(ValueError, match=match):
            module_from_factory(text)


def test_cli_zoo_import_with_module_and_its_errors(factories, tmp_path, capsys):
    _, modules = folder_of(tmp_path / "ckpt", 4, shuffle=True)
    write_csv(tmp_path / "t.csv", ["name", "acc"], [[f"net{i:02d}", 0.25 * i] for i in range(4)])
    argv = ["zoo", "import", "--checkpoints", "ckpt", "--targets", "t.csv", "--out", "zoo"]
    assert main([*argv, "--module", f"{factories}:mlp", "--activation", "relu"]) == 0
    assert "zoo: zoo" in capsys.readouterr().out
    zoo = load_zoo(tmp_path / "zoo")
    assert torch.equal(
        zoo.features.weights[0], WeightSpaceFeatures.from_modules(modules).weights[0]
    )
    assert zoo.metadata[0]["activation"] == "relu"
    assert zoo.info["template"] == f"{factories}:mlp"
    assert main([*argv[:-1], "zoo2", "--module", f"{factories}:nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no attribute 'nope'" in err
    assert main([*argv[:-1], "zoo2"]) == 2  # shuffled keys without a template
    assert "--module" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["zoo", "import", "--checkpoints", "ckpt", "--out", "zoo2"])  # no --targets
    assert "--targets" in capsys.readouterr().err


def test_import_with_a_custom_module_class_reads_forward_order_and_its_activation(
    factories, tmp_path
):
    template = module_from_factory(f"{factories}:Custom")
    Custom = type(template)  # the user's class, from the module the fixture wrote
    folder = tmp_path / "ckpt"
    folder.mkdir()
    modules = []
    for i in range(6):
        torch.manual_seed(i)
        m = Custom()
        modules.append(m)
        save(m.state_dict(), folder / f"c{i}{'.pt' if i % 2 else '.safetensors'}")
    assert next(iter(modules[0].state_dict())) == "fc2.weight"  # saved in registration order
    write_csv(tmp_path / "t.csv", ["name", "acc"], [[f"c{i}", 0.1 * i] for i in range(6)])
    out = import_zoo(
        folder, tmp_path / "t.csv", tmp_path / "zoo", module=template, progress=False,
    )  # fmt: skip
    zoo = load_zoo(out)
    assert zoo.spec == NetworkSpec((4, 6, 3))
    expected = WeightSpaceFeatures.from_modules(modules)
    for a, b in zip(zoo.features.tensors, expected.tensors):
        assert torch.equal(a, b)
    assert zoo.features.weights[0].shape[2:] == (6, 4)  # fc1 first: the traced order
    assert {row["activation"] for row in zoo.metadata} == {"tanh"}  # from the template's forward
    # Without the template the keys come in registration order, fc2 first: no chain.
    with pytest.raises(ValueError, match="--module"):
        import_zoo(folder, tmp_path / "t.csv", tmp_path / "zoo2", progress=False)


# ------------------------------------------------------------------- end to end
def _digits_mlps(folder: Path, n: int) -> list[float]:
    """``n`` MLPs 64 → 8 → 10 trained for a few full-batch steps on real 8×8 digits, saved in
    both formats; returns their test accuracies (spread by the learning rate and step count)."""
    data = load_images("digits", limit_train=256, limit_test=128)
    x, y = data.train_x.flatten(1), data.train_y
    tx, ty = data.test_x.flatten(1), data.test_y
    folder.mkdir()
    accuracies = []
    for i in range(n):
        torch.manual_seed(i)
        model = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 10))
        opt = torch.optim.SGD(model.parameters(), lr=0.02 * 1.3**i)
        for _ in range(3 + i):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        with torch.no_grad():
            accuracies.append(round(float((model(tx).argmax(1) == ty).float().mean()), 4))
        save(model.state_dict(), folder / f"mlp{i:02d}{'.pt' if i % 2 else '.safetensors'}")
    return accuracies


def test_train_generalization_and_evaluate_on_an_imported_zoo(tmp_path, capsys):
    acc = _digits_mlps(tmp_path / "ckpt", 30)
    assert max(acc) - min(acc) > 0.3  # the targets are spread: something to predict
    write_csv(
        tmp_path / "t.csv",
        ["name", "test_accuracy"],
        [[f"mlp{i:02d}", a] for i, a in enumerate(acc)],
    )
    zoo_dir = str(tmp_path / "zoo")
    argv = [
        "zoo",
        "import",
        "--checkpoints",
        str(tmp_path / "ckpt"),
        "--targets",
        str(tmp_path / "t.csv"),
    ]
    assert main([*argv, "--out", zoo_dir, "--activation", "relu"]) == 0
    test_split = fixed_split(30, 0) == SPLITS["test"]
    expected = sorted(a for a, t in zip(acc, test_split.tolist()) if t)
    for model, epochs in (("statnet", "3"), ("hnp", "2")):
        run = tmp_path / model
        train = ["train", "generalization", "--zoo", zoo_dir, "--model", model, "--out", str(run)]
        assert main([*train, "--epochs", epochs]) == 0, capsys.readouterr().err
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["n_test"] == int(test_split.sum()) and metrics["dropped"] == 0
        with open(run / "predictions.csv") as f:
            actual = sorted(float(r["actual"]) for r in csv.DictReader(f))
        assert actual == pytest.approx(expected, abs=1e-6)  # the CSV's targets reached the task
        assert main(["evaluate", "--run", str(run), "--zoo", zoo_dir]) == 0
        evaluated = json.loads((run / "eval" / "zoo" / "metrics.json").read_text())
        assert evaluated["kendall_tau"] == pytest.approx(metrics["kendall_tau"])
        assert evaluated["mae"] == pytest.approx(metrics["mae"])


def test_a_cnn_zoo_imports_with_its_kernels_and_probe_models_refuse_it(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    modules = []
    for i in range(20):
        torch.manual_seed(i)
        modules.append(cnn(2))
        save(modules[-1].state_dict(), folder / f"cnn{i:02d}.safetensors")
    rows = [[f"cnn{i:02d}", 0.05 * i] for i in range(20)]
    write_csv(tmp_path / "t.csv", ["name", "acc"], rows)
    out = import_zoo(
        folder, tmp_path / "t.csv", tmp_path / "zoo", activation="relu", progress=False
    )
    zoo = load_zoo(out)
    assert zoo.spec == NetworkSpec.from_module(cnn(2)) and zoo.spec.is_cnn
    expected = WeightSpaceFeatures.from_modules(modules)
    assert all(torch.equal(a, b) for a, b in zip(zoo.features.tensors, expected.tensors))
    config = GeneralizationConfig(zoo=str(out), model="probe", out=str(tmp_path / "run"), epochs=1)
    with pytest.raises(ValueError, match=r"input size of the imported CNNs.*hnp, np, statnet"):
        run_generalization(config, progress=False)


def test_all_checkpoints_of_an_imported_zoo_is_its_one_checkpoint_per_network(thirty, tmp_path):
    """An imported zoo has one checkpoint per network, even with an 'epoch' column of its own:
    `--checkpoints all` must not cut its validation and test rows to the largest epoch."""
    from weightspace.tasks.sources import load_any_zoo

    folder, _, acc, _ = thirty
    names = [p.name for p in sorted(folder.iterdir())]
    rows = [[names[i], acc[i], 1 + i % 3] for i in range(30)]
    csv_path = write_csv(tmp_path / "t.csv", ["name", "test_accuracy", "epoch"], rows)
    out = import_zoo(folder, csv_path, tmp_path / "zoo", progress=False)
    final, every = load_any_zoo(out), load_any_zoo(out, checkpoints="all")
    assert len(every) == len(final) == 30
    assert torch.equal(every.split, final.split)
    assert {r["epoch"] for r in every.part("test").metadata} != {3}  # not cut to the largest
