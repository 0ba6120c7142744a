"""weightspace.tasks.inr_classification: classify images from their SIRENs' weights."""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from weightspace import WeightSpaceFeatures
from weightspace.data.container import SPLITS
from weightspace.data.inr import (
    SIREN_SPEC,
    InrDataset,
    Sine,
    init_sirens,
    load_inrs,
    render,
    siren_module,
)
from weightspace.data.siren_format import PAPER_PREFIX, PAPER_SPLIT_POINTS
from weightspace.models import FlatMLP, InvariantNFN
from weightspace.tasks.inr_classification import (
    IMAGE_AUGMENT,
    MODELS,
    PAPER_CONFIG,
    InrClassification,
    InrClassifier,
    InrClassifyConfig,
    build_classifier,
    detect_inr_source,
    evaluate_inrs,
    load_any_inrs,
    paper_config,
    run_inr_classification,
)
from weightspace.tasks.metrics import accuracy
from weightspace.testing import (
    assert_invariant,
    inconsistent_permutation,
    invariance_error,
    random_features,
)

# Small enough that every run here takes about a second.
TINY = {"epochs": 2, "batch_size": 8, "hidden_channels": (8, 8), "head_hidden": (16,)}
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(model: str, inrs, out, **overrides) -> InrClassifyConfig:
    return InrClassifyConfig(inrs=str(inrs), model=model, out=str(out), **{**TINY, **overrides})


@pytest.fixture(scope="module")
def runs(digits_inrs, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model in MODELS:
        config = tiny(model, digits_inrs, root / model)
        out[model] = (root / model, run_inr_classification(config, progress=False))
    return out


def write_siren_folder(
    root: Path,
    labels: list[int],
    *,
    prefix: str = PAPER_PREFIX,
    module=None,
    first_seed: int = 0,
) -> Path:
    """A folder in the NFN release's layout: ``{prefix}_{label}s/net{i}.pth`` state dicts."""
    for i, label in enumerate(labels):
        folder = root / f"{prefix}_{label}s"
        folder.mkdir(parents=True, exist_ok=True)
        generator = torch.Generator().manual_seed(first_seed + i)
        net = module(generator) if module else siren_module(generator=generator)
        torch.save(net.state_dict(), folder / f"net{i}.pth")
    return root


def small_siren(generator: torch.Generator) -> nn.Sequential:
    """A SIREN of another architecture: 2 → 16 → 16 → 1."""
    net = nn.Sequential(nn.Linear(2, 16), Sine(), nn.Linear(16, 16), Sine(), nn.Linear(16, 1))
    with torch.no_grad():
        for p in net.parameters():
            p.uniform_(-0.3, 0.3, generator=generator)
    return net


# ------------------------------------------------------------------ runs
@pytest.mark.parametrize("model", MODELS)
def test_every_model_trains_and_writes_its_metrics(runs, model) -> None:
    out, metrics = runs[model]
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert (metrics["model"], metrics["seed"], metrics["n_test"]) == (model, 0, 20)
    assert (metrics["n_train"], metrics["n_val"], metrics["epochs_run"]) == (18, 2, 2)
    assert metrics["classes"] == [str(i) for i in range(10)]
    assert list(metrics["per_class_accuracy"]) == metrics["classes"]
    matrix = torch.tensor(metrics["confusion_matrix"])
    assert matrix.shape == (10, 10) and int(matrix.sum()) == 20
    assert metrics["test_accuracy"] == pytest.approx(float(matrix.trace()) / 20)
    for i, name in enumerate(metrics["classes"]):
        support = int(matrix[i].sum())
        expected = None if support == 0 else float(matrix[i, i]) / support
        assert metrics["per_class_accuracy"][name] == pytest.approx(expected)
    # The predictions file agrees with the reported accuracy.
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20 and [int(r["index"]) for r in rows] == list(range(20, 40))
    labels = [int(r["label"]) for r in rows]
    assert metrics["test_accuracy"] == pytest.approx(
        accuracy([int(r["predicted"]) for r in rows], labels)
    )
    assert (out / "confusion.png").read_bytes()[:8] == PNG
    saved = json.loads((out / "config.json").read_text())["task"]
    assert saved["task"] == "inr-classification" and saved["model"] == model
    assert saved["spec"]["widths"] == [2, 32, 32, 1] and saved["num_classes"] == 10


def test_models_are_the_named_architectures() -> None:
    np_model = build_classifier("np", SIREN_SPEC, 10, hidden_channels=(4,), head_hidden=(8,))
    hnp_model = build_classifier("hnp", SIREN_SPEC, 10, hidden_channels=(4,), head_hidden=(8,))
    assert isinstance(np_model.net, InvariantNFN) and np_model.net.mode == "np"
    assert "SinusoidalIOEncoding" in repr(np_model.net.encoder)
    assert isinstance(hnp_model.net, InvariantNFN) and hnp_model.net.mode == "hnp"
    assert "IOEncoding" not in repr(hnp_model.net.encoder)
    fourier = build_classifier("np", SIREN_SPEC, 3, hidden_channels=(4,), fourier_features=8)
    assert "GaussianFourierFeatures" in repr(fourier.net.encoder)
    for name in ("mlp", "mlp-aug"):  # the same network; mlp-aug trains on permuted SIRENs
        model = build_classifier(name, SIREN_SPEC, 10, head_hidden=(8,))
        assert isinstance(model.net, FlatMLP)
    x = random_features(SIREN_SPEC, 5, dtype=torch.float32)
    assert np_model(x).shape == (5, 10) and fourier(x).shape == (5, 3)


def test_evaluate_reproduces_the_test_accuracy(runs, digits_inrs, tmp_path) -> None:
    for model in ("np", "mlp-aug"):
        trained = runs[model][1]
        out = tmp_path / model
        shutil.copytree(runs[model][0], out)
        own = {
            f: (out / f).read_bytes() for f in ("metrics.json", "confusion.png", "predictions.csv")
        }
        evaluated = evaluate_inrs(out, digits_inrs)
        assert evaluated["test_accuracy"] == trained["test_accuracy"]
        assert evaluated["confusion_matrix"] == trained["confusion_matrix"]
        assert evaluated["run"] == str(out) and evaluated["inrs"] == str(digits_inrs)
        # #2: beside the run's own results, under the INR folder's name; those stay as trained.
        folder = out / "eval" / digits_inrs.name
        assert json.loads((folder / "metrics.json").read_text())["run"] == str(out)
        assert (folder / "confusion.png").is_file() and (folder / "predictions.csv").is_file()
        assert {f: (out / f).read_bytes() for f in own} == own
        # The in-memory dataset gives the same.
        again = evaluate_inrs(out, load_inrs(digits_inrs))
        assert again["test_accuracy"] == trained["test_accuracy"]


def test_a_finished_run_is_rescored_not_retrained(runs, digits_inrs, tmp_path) -> None:
    trained = runs["hnp"][1]
    out = shutil.copytree(runs["hnp"][0], tmp_path / "hnp")
    best = (out / "best.pt").read_bytes()
    again = run_inr_classification(tiny("hnp", digits_inrs, out), progress=False)
    assert again["test_accuracy"] == trained["test_accuracy"] and again["epochs_run"] == 2
    assert (out / "best.pt").read_bytes() == best


def test_standardisation_uses_the_training_split(runs, digits_inrs) -> None:
    out, _ = runs["mlp"]
    state = torch.load(out / "best.pt", weights_only=True)["model"]
    train = load_inrs(digits_inrs).part("train").features
    for k, t in enumerate(train.tensors):
        std, mean = torch.std_mean(t.double(), correction=0)
        assert float(state["shift"][k]) == pytest.approx(float(mean), rel=1e-5, abs=1e-7)
        assert float(state["scale"][k]) == pytest.approx(float(std), rel=1e-5)


# ------------------------------------------------------------------ symmetry
def _with_statistics(model: InrClassifier) -> InrClassifier:
    """Non-trivial standardisation, so the test covers it too."""
    g = torch.Generator().manual_seed(1)
    tensors = [
        (0.1 * (k + 1)) * torch.randn(6, 1, *t.shape, generator=g) + 0.05 * k
        for k, t in enumerate(SIREN_SPEC.tensors)
    ]
    model.set_statistics(WeightSpaceFeatures.from_tensors(tensors, SIREN_SPEC))
    assert not torch.allclose(model.scale, torch.ones_like(model.scale))
    return model


@pytest.mark.parametrize(
    "model, fourier", [("np", None), ("np", 8), ("hnp", None)], ids=["np", "np-fourier", "hnp"]
)
def test_nfn_classifiers_are_invariant_to_hidden_neuron_permutations(model, fourier) -> None:
    torch.manual_seed(0)
    net = build_classifier(
        model, SIREN_SPEC, 10, hidden_channels=(6, 6), head_hidden=(16,), fourier_features=fourier
    )
    classifier = _with_statistics(net)
    assert_invariant(classifier, SIREN_SPEC, "hnp", trials=3)
    # Controls that must break: a permutation that changes the SIREN's function.
    broken = invariance_error(
        classifier, SIREN_SPEC, perturb=lambda x, g: inconsistent_permutation(x, 1, g)
    )
    assert broken > 1e-4
    if model == "np":
        # The IO encoding tells input neurons apart: swapping the 2 inputs is not a symmetry.
        swap = [torch.tensor([1, 0]), None, None, None]
        x = random_features(SIREN_SPEC, 3)
        with torch.no_grad():
            model64 = classifier.double().eval()
            assert not torch.allclose(model64(x.permute(swap)), model64(x), atol=1e-4)


def test_the_flat_mlp_is_not_invariant() -> None:
    torch.manual_seed(0)
    for name in ("mlp", "mlp-aug"):
        mlp = build_classifier(name, SIREN_SPEC, 10, head_hidden=(16,))
        assert invariance_error(mlp, SIREN_SPEC, "hnp") > 1e-4


def augmented_batch(model: str, x: WeightSpaceFeatures, *, training: bool = True, **settings):
    """What the classifier's network sees of batch ``x`` under the task's training objective."""
    task = InrClassification({"model": model, "spec": SIREN_SPEC.to_dict(), **settings})
    classifier = build_classifier(model, SIREN_SPEC, 10, head_hidden=(8,)).double()
    seen: list[WeightSpaceFeatures] = []
    classifier.net.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    classifier.train(training)
    task.objective()(classifier, (x, torch.zeros(x.batch_size, dtype=torch.long)), 1)
    return seen[0]


def test_mlp_aug_permutes_each_example_in_training_only(digits_inrs) -> None:
    torch.manual_seed(0)
    siren = load_inrs(digits_inrs).features[:1].to(torch.float64)
    x = WeightSpaceFeatures.cat([siren] * 4)  # four copies of one SIREN
    aug_train = augmented_batch("mlp-aug", x)
    # Without statistics the standardisation is the identity: the hook sees the raw weights.
    for same in (
        augmented_batch("mlp-aug", x, training=False),
        augmented_batch("mlp", x),
        augmented_batch("mlp", x, training=False),
    ):
        for a, b in zip(same.tensors, x.tensors):
            assert torch.equal(a, b)
    # Training mode: every copy is permuted differently, and the weights really change ...
    flat = aug_train.flatten()
    assert not torch.equal(flat, x.flatten())
    assert all(not torch.equal(flat[i], flat[j]) for i in range(4) for j in range(i + 1, 4))
    # ... by a permutation of each tensor's entries ...
    for a, b in zip(aug_train.tensors, x.tensors):
        sort = a.reshape(4, -1).sort(dim=1).values
        assert torch.equal(sort, b.reshape(4, -1).sort(dim=1).values)
    # ... that keeps the image each SIREN draws (inputs and outputs stay in place).
    torch.testing.assert_close(render(aug_train, 8, 8), render(x, 8, 8), atol=1e-10, rtol=0)
    assert not torch.allclose(
        render(inconsistent_permutation(x, 1, torch.Generator().manual_seed(0)), 8, 8),
        render(x, 8, 8),
    )
    # Sign flips (the NFNs' default) change signs only, and keep the image too.
    flipped = augmented_batch("np", x, sign_flips=True)
    assert not torch.equal(flipped.flatten(), x.flatten())
    assert torch.equal(flipped.flatten().abs(), x.flatten().abs())
    torch.testing.assert_close(render(flipped, 8, 8), render(x, 8, 8), atol=1e-10, rtol=0)


# ------------------------------------------------------------------ learning
def invariant_task(n: int = 200, seed: int = 0) -> InrDataset:
    """SIREN-initialised networks whose class is the sign of the mean hidden bias (b_1).

    Each class shifts b_1 by ±0.25, 3.5 standard deviations of the mean of 32 initial biases, so
    the label is a simple statistic that every permutation leaves alone.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 2, (n,), generator=g)
    tensors = [t.unsqueeze(1) for t in init_sirens(n, generator=g)]
    tensors[3] = tensors[3] + 0.25 * (2 * labels.float() - 1).view(n, 1, 1)
    split = torch.full((n,), SPLITS["train"])
    split[int(0.6 * n) : int(0.75 * n)], split[int(0.75 * n) :] = SPLITS["val"], SPLITS["test"]
    return InrDataset(
        SIREN_SPEC,
        WeightSpaceFeatures.from_tensors(tensors, SIREN_SPEC),
        labels,
        split,
        [{"index": i} for i in range(n)],
        {"classes": ["negative", "positive"]},
    )


def test_np_nfn_learns_an_invariant_label_well_above_chance(tmp_path) -> None:
    data = invariant_task()
    # The label is a property of the weights, not of the function (a sign flip of hidden neurons
    # negates b_1 but keeps the function), so the sign-flip augmentation would destroy it; and a
    # shift of a mean is read straight off the raw weights, without Fourier features.
    config = tiny(
        "np",
        "synthetic",
        tmp_path / "np",
        epochs=5,
        batch_size=16,
        lr=3e-3,
        sign_flips=False,
        fourier_features=None,
    )
    metrics = run_inr_classification(config, dataset=data, progress=False)
    assert metrics["majority_accuracy"] < 0.65  # a constant guess; about one half
    # Reached 1.0 from the third epoch when written; the margin absorbs numeric noise.
    assert metrics["test_accuracy"] >= 0.85
    assert metrics["best_val_accuracy"] >= 0.85


# ------------------------------------------------------------------ SIREN folders
def test_siren_release_folder_trains_and_evaluates(tmp_path) -> None:
    labels = [i % 3 for i in range(12)]
    root = write_siren_folder(tmp_path / "release", labels)
    write_siren_folder(root, labels, prefix=f"{PAPER_PREFIX}_aug0", first_seed=100)
    assert detect_inr_source(root) == "siren-folder"
    data = load_any_inrs(root, split_points=(8, 10), augment_prefixes=[f"{PAPER_PREFIX}_aug0"])
    # The originals, then the augmentation copies of the 8 training images only.
    assert len(data) == 20 and data.info["prefix"] == PAPER_PREFIX
    assert int((data.split == SPLITS["train"]).sum()) == 16
    config = tiny("hnp", root, tmp_path / "run", split_points=(8, 10))
    metrics = run_inr_classification(config, progress=False)
    assert metrics["n_train"] == 8 and metrics["n_test"] == 2
    assert metrics["classes"] == ["0", "1", "2"]
    assert evaluate_inrs(tmp_path / "run", root)["test_accuracy"] == metrics["test_accuracy"]
    # The release's split points leave a small folder without validation INRs.
    with pytest.raises(ValueError, match=r"the val split holds no INRs \(set split_points"):
        run_inr_classification(tiny("hnp", root, tmp_path / "x"), progress=False)


# ------------------------------------------------------------------ errors
def test_config_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'cnn'; expected one of \('np'"):
        InrClassifyConfig(inrs="i", model="cnn", out="o")
    with pytest.raises(ValueError, match="unknown model 'cnn'"):
        build_classifier("cnn", SIREN_SPEC, 10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_classifier("np", SIREN_SPEC, 1)
    with pytest.raises(
        ValueError, match="fourier_features must be None: it applies to the NFN models"
    ):
        InrClassifyConfig(inrs="i", model="mlp", out="o", fourier_features=16)
    with pytest.raises(ValueError, match="source must be one of"):
        InrClassifyConfig(inrs="i", model="np", out="o", source="zip")
    with pytest.raises(ValueError, match="hidden_channels must hold positive ints"):
        InrClassifyConfig(inrs="i", model="np", out="o", hidden_channels=(8, 0))
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        InrClassifyConfig(inrs="i", model="np", out="o", dropout=1.0)


def test_folder_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        run_inr_classification(tiny("np", tmp_path / "nowhere", tmp_path / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is not an INR folder"):
        run_inr_classification(tiny("np", tmp_path / "empty", tmp_path / "run"))


def _rewrite_rows(folder: Path, edit) -> None:
    path = folder / "chunks" / "chunk-00001.json"
    doc = json.loads(path.read_text())
    edit(doc["rows"])
    path.write_text(json.dumps(doc))


def test_broken_inr_stores_are_refused_end_to_end(digits_inrs, tmp_path) -> None:
    store = tmp_path / "store"
    shutil.copytree(digits_inrs, store)
    config = tiny("mlp", store, tmp_path / "run")
    chunk = store / "chunks" / "chunk-00001.safetensors"
    tensors = load_file(chunk)
    rows = (store / "chunks" / "chunk-00001.json").read_text()

    # SIRENs of the wrong architecture.
    save_file({**tensors, "W2": torch.zeros(16, 16, 32)}, str(chunk))
    with pytest.raises(ValueError, match=r"chunk-00001.safetensors': tensor 'W2' is .*expected"):
        run_inr_classification(config, progress=False)
    # NaN weights, naming the INR.
    nan = {**tensors, "b1": tensors["b1"].clone()}
    nan["b1"][2, 5] = math.nan
    save_file(nan, str(chunk))
    with pytest.raises(ValueError, match=r"chunk-00001.safetensors': tensor 'b1' of INR 18 .*NaN"):
        run_inr_classification(config, progress=False)
    save_file(tensors, str(chunk))
    # A missing label, then one out of range.
    _rewrite_rows(store, lambda r: r[3].pop("label"))
    with pytest.raises(ValueError, match=r"chunk-00001.json': INR 19 has label None"):
        run_inr_classification(config, progress=False)
    (store / "chunks" / "chunk-00001.json").write_text(rows)
    _rewrite_rows(store, lambda r: r[3].update(label=12))
    with pytest.raises(ValueError, match=r"INR 19 has label 12, out of range 0..9"):
        run_inr_classification(config, progress=False)
    (store / "chunks" / "chunk-00001.json").write_text(rows)
    assert not (tmp_path / "run").exists()  # nothing trained on broken data


def test_broken_siren_folders_are_refused_end_to_end(tmp_path) -> None:
    labels = [i % 2 for i in range(8)]
    config = {"split_points": (4, 6)}

    mixed = write_siren_folder(tmp_path / "mixed", labels)
    torch.save(small_siren(torch.Generator()).state_dict(), mixed / f"{PAPER_PREFIX}_1s/net9.pth")
    with pytest.raises(ValueError, match=r"net9.pth' holds a network on .*widths=\(2, 16, 16, 1\)"):
        run_inr_classification(tiny("np", mixed, tmp_path / "a", **config), progress=False)

    nan = write_siren_folder(tmp_path / "nan", labels)
    state = siren_module().state_dict()
    state["2.weight"][0, 0] = math.nan
    torch.save(state, nan / f"{PAPER_PREFIX}_0s/net10.pth")
    with pytest.raises(ValueError, match=r"net10.pth': tensors \['W2'\] hold NaN"):
        run_inr_classification(tiny("np", nan, tmp_path / "b", **config), progress=False)

    unlabelled = write_siren_folder(tmp_path / "unlabelled", labels)
    (unlabelled / f"{PAPER_PREFIX}_xs").mkdir()
    torch.save(siren_module().state_dict(), unlabelled / f"{PAPER_PREFIX}_xs/net11.pth")
    with pytest.raises(ValueError, match=r"randinit_smaller_xs' holds .pth files but its name"):
        run_inr_classification(tiny("np", unlabelled, tmp_path / "c", **config), progress=False)


def test_in_memory_labels_and_splits_are_checked(tmp_path) -> None:
    data = invariant_task(40)
    bad = InrDataset(
        data.spec,
        data.features,
        torch.where(torch.arange(40) == 7, 2, data.labels),
        data.split,
        data.metadata,
        data.info,
    )
    with pytest.raises(ValueError, match=r"INR 7 has label 2, outside the classes 0..1"):
        run_inr_classification(tiny("mlp", "mem", tmp_path / "a"), dataset=bad, progress=False)
    no_test = data.subset(data.split != SPLITS["test"])
    with pytest.raises(ValueError, match="the test split holds no INRs"):
        run_inr_classification(tiny("mlp", "mem", tmp_path / "b"), dataset=no_test, progress=False)
    one_class = data.subset(data.labels == 0)
    one_class.info = {"classes": ["only"]}
    with pytest.raises(ValueError, match=r"hold 1 class\(es\); need at least 2"):
        run_inr_classification(tiny("mlp", "mem", tmp_path / "c"), dataset=one_class)


def test_a_classifier_refuses_another_weight_space(runs, digits_inrs, tmp_path) -> None:
    out, _ = runs["np"]
    other = write_siren_folder(tmp_path / "small", [0, 1] * 4, module=small_siren)
    with pytest.raises(
        ValueError,
        match=re.escape("networks on NetworkSpec(widths=(2, 16, 16, 1), kernels=(dense, dense, ")
        + r".*trained on NetworkSpec\(widths=\(2, 32, 32, 1\)",
    ):
        evaluate_inrs(out, other)
    # Resuming a run folder with INRs of another weight space: config.json names the field.
    run = tmp_path / "run"
    shutil.copytree(out, run)
    config = tiny("np", other, run, split_points=(4, 6))
    with pytest.raises(ValueError, match=r"another config \(.*task.spec.widths"):
        run_inr_classification(config, progress=False)
    # Labels the classifier has no class for, and class names of another dataset.
    labels = write_siren_folder(tmp_path / "labels", [0, 12, 1, 3])
    with pytest.raises(ValueError, match=r"INR 1 \(randinit_smaller_12s/net1.pth\) has label 12"):
        evaluate_inrs(out, labels)
    renamed = load_inrs(digits_inrs)
    renamed.info["classes"] = list("abcdefghij")
    with pytest.raises(ValueError, match=r"have classes \['a', 'b'.*trained on classes \['0'"):
        evaluate_inrs(out, renamed)


def test_evaluate_refuses_other_runs(digits_inrs, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"config\.json is missing"):
        evaluate_inrs(tmp_path, digits_inrs)
    (tmp_path / "config.json").write_text(json.dumps({"task": {"task": "generalization"}}))
    with pytest.raises(ValueError, match="expected an 'inr-classification' run, found task"):
        evaluate_inrs(tmp_path, digits_inrs)


def test_paper_config() -> None:
    assert PAPER_CONFIG["hidden_channels"] == (512, 512, 512)
    assert PAPER_CONFIG["head_hidden"] == (1000,) and PAPER_CONFIG["dropout"] == 0.5
    assert PAPER_CONFIG["steps"] == 200_000 and PAPER_CONFIG["io_encoding"] == "sinusoidal"
    config = paper_config("inrs", "run", num_train=45_000 * 11, device="cuda")
    assert config.model == "np" and config.hidden_channels == (512, 512, 512)
    assert config.epochs == math.ceil(200_000 * 32 / 495_000) == 13
    assert config.device == "cuda" and config.dropout == 0.5
    assert config.split_points == PAPER_SPLIT_POINTS


# ------------------------------------------------------------------ issue 10 options
def test_training_options_run_end_to_end_and_evaluate_alike(digits_inrs, tmp_path) -> None:
    options = {
        "probe": {
            "image_augment": True,
            "canonicalize": True,
            "train_limit": 10,
            "probes": 16,
            "probe_gradients": True,
        },
        "np": {
            "half_periods": True,
            "channel_dropout": 0.1,
            "warmup_steps": 3,
            "fourier_scale": 3.0,
        },
    }
    for model, extra in options.items():
        out = tmp_path / model
        metrics = run_inr_classification(tiny(model, digits_inrs, out, **extra), progress=False)
        assert metrics["n_train"] == extra.get("train_limit", 18)
        saved = json.loads((out / "config.json").read_text())["task"]
        assert all(saved[k] == v for k, v in extra.items())
        again = evaluate_inrs(out, digits_inrs)
        assert again["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
        # Probe models also show where their probes look.
        assert (out / "probes.png").is_file() == (model == "probe")


def test_canonicalised_classifiers_see_sign_flips_and_half_shifts_as_the_same_siren() -> None:
    from weightspace import symmetry
    from weightspace.tasks.inr_classification import Canonicalized

    torch.manual_seed(0)
    x = WeightSpaceFeatures.from_tensors([t.unsqueeze(1).double() for t in init_sirens(4)])
    signs = symmetry.sample_signs(SIREN_SPEC, 4, dtype=torch.float64)
    shifts = symmetry.sample_half_period_shifts(SIREN_SPEC, 4)
    copy = symmetry.shift_half_periods(symmetry.flip_signs(x, signs), shifts)
    net = build_classifier("np", SIREN_SPEC, 10, hidden_channels=(4,), head_hidden=(8,)).double()
    net.eval()
    with torch.no_grad():
        assert (net(copy) - net(x)).abs().max() > 1e-6  # the NFN alone tells them apart
        canonical = Canonicalized(net)
        torch.testing.assert_close(canonical(copy), canonical(x), rtol=1e-9, atol=1e-9)


def test_issue_10_config_errors(digits_inrs, tmp_path) -> None:
    with pytest.raises(ValueError, match="channel_dropout must be 0: it applies to the NFN"):
        InrClassifyConfig(inrs="i", model="mlp", out="o", channel_dropout=0.1)
    with pytest.raises(ValueError, match=r"channel_dropout must be a number in \[0, 1\)"):
        InrClassifyConfig(inrs="i", model="np", out="o", channel_dropout=1.5)
    with pytest.raises(ValueError, match="fourier_scale must be a positive number"):
        InrClassifyConfig(inrs="i", model="np", out="o", fourier_scale=0)
    with pytest.raises(ValueError, match="probe_gradients must be False: it applies to the probe"):
        InrClassifyConfig(inrs="i", model="np", out="o", probe_gradients=True)
    with pytest.raises(ValueError, match="probe_gradients must be True or False"):
        InrClassifyConfig(inrs="i", model="probe", out="o", probe_gradients="yes")
    with_slopes = build_classifier("probe", SIREN_SPEC, 10, probes=8, probe_gradients=True)
    assert with_slopes.probe.gradients and with_slopes.probe.output_size == 8 * 3
    with pytest.raises(ValueError, match="probe_generator must be one of"):
        InrClassifyConfig(inrs="i", model="probe", out="o", probe_generator="gan")
    with pytest.raises(ValueError, match="train_limit=99, but the train split holds 18 INRs"):
        run_inr_classification(tiny("probe", digits_inrs, tmp_path, train_limit=99), progress=False)


def test_image_augment_auto_is_on_for_probe_models_only() -> None:
    from weightspace.tasks.inputs import AffineAugmentation

    def kinds(model: str, **extra) -> list[str]:
        config = InrClassifyConfig(inrs="i", model=model, out="o", **extra)
        task = InrClassification({**config.settings(), "spec": SIREN_SPEC.to_dict()})
        return [type(a).__name__ for a in task.augmentation()]

    assert "AffineAugmentation" in kinds("probe") and "AffineAugmentation" in kinds("np-probe")
    assert "AffineAugmentation" not in kinds("np")
    assert "AffineAugmentation" in kinds("np", image_augment=True)
    assert "AffineAugmentation" not in kinds("probe", image_augment=False)
    # At its default the field is not written, so runs from before it existed still resume.
    assert "image_augment" not in InrClassifyConfig(inrs="i", model="probe", out="o").settings()
    assert AffineAugmentation(10.0, 1.1, 0.1).active and not AffineAugmentation().active
    assert AffineAugmentation(mirror=1).active


def test_mirror_images_adds_a_left_right_mirror_to_the_moves() -> None:
    from weightspace.tasks.inputs import AffineAugmentation

    def affine(model: str, **extra) -> list[AffineAugmentation]:
        config = InrClassifyConfig(inrs="i", model=model, out="o", **extra)
        task = InrClassification({**config.settings(), "spec": SIREN_SPEC.to_dict()})
        return [a for a in task.augmentation() if isinstance(a, AffineAugmentation)]

    (moves,) = affine("probe", mirror_images=True)
    assert moves.mirror == 1 and moves.degrees == IMAGE_AUGMENT[0]
    assert affine("probe")[0].mirror is None
    (alone,) = affine("np", mirror_images=True)  # image moves off: the mirror only
    assert alone.mirror == 1 and alone.degrees == 0 and alone.shift == 0
    assert affine("np") == []
    assert "mirror_images" not in InrClassifyConfig(inrs="i", model="probe", out="o").settings()
    with pytest.raises(ValueError, match="mirror_images"):
        InrClassifyConfig(inrs="i", model="probe", out="o", mirror_images="yes")
