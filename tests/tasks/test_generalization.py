import json
import math
import shutil

import pytest
import torch

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.container import Zoo, fixed_split
from weightspace.tasks import runner
from weightspace.tasks.generalization import (
    Generalization,
    GeneralizationConfig,
    build_predictor,
    detect_zoo_kind,
    evaluate,
    load_any_zoo,
    run_generalization,
)
from weightspace.tasks.metrics import kendall_tau

SPEC = NetworkSpec((1, 4, 4, 3), ((3, 3), (3, 3), ()))
TRAINED_FILES = ("metrics.json", "scatter.png", "predictions.csv", "config.json", "best.pt")


def synthetic_zoo(n: int = 150, spec: NetworkSpec = SPEC, seed: int = 0) -> Zoo:
    """Networks whose weights have a per-network scale; accuracy rises with the scale.

    An invariant model can read the scale off the weights (e.g. the mean of relu(w)), so a
    predictor that learns anything ranks these networks well.
    """
    g = torch.Generator().manual_seed(seed)
    log_scale = torch.rand(n, generator=g) * 2 - 1.5
    tensors = [
        log_scale.exp().view(n, 1, *[1] * len(t.shape)) * torch.randn(n, 1, *t.shape, generator=g)
        for t in spec.tensors
    ]
    features = WeightSpaceFeatures.from_tensors(tensors, spec)
    accuracy = 0.1 + 0.8 * torch.sigmoid(3 * (log_scale + 0.5))
    accuracy = (accuracy + 0.02 * torch.randn(n, generator=g)).clamp(0, 1)
    return Zoo(
        spec,
        features,
        accuracy,
        [{"i": i} for i in range(n)],
        fixed_split(n, seed),
        {"path": "syn"},
    )


def small(model: str, out, **overrides) -> GeneralizationConfig:
    kwargs = {
        "zoo": "synthetic",
        "epochs": 4,
        "batch_size": 16,
        "lr": 3e-3,
        "hidden_channels": (8, 8),
        "head_hidden": (32,),
        **overrides,
    }
    return GeneralizationConfig(model=model, out=str(out), **kwargs)


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return synthetic_zoo()


@pytest.fixture(scope="module")
def hnp_run(zoo, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "hnp"
    metrics = run_generalization(small("hnp", out), zoo=zoo, progress=False)
    return out, metrics


def test_hnp_beats_a_constant_predictor(zoo, hnp_run):
    _, metrics = hnp_run
    test = zoo.part("test")
    constant = torch.full((len(test),), float(zoo.part("train").test_accuracy.mean()))
    assert math.isnan(kendall_tau(constant, test.test_accuracy))  # ranks nothing
    assert metrics["kendall_tau"] > 0.5
    assert metrics["mae"] < float((constant - test.test_accuracy).abs().mean())


def test_run_files_and_metrics(zoo, hnp_run):
    out, metrics = hnp_run
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "scatter.png"):
        assert (out / name).is_file(), name
    assert (out / "scatter.png").read_bytes()[:4] == b"\x89PNG"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == metrics
    assert {"kendall_tau", "r2", "mae", "n_test", "dropped", "model", "seed"} <= saved.keys()
    assert saved["n_test"] == len(zoo.part("test")) and saved["dropped"] == 0
    assert (saved["model"], saved["seed"]) == ("hnp", 0)
    assert 1 <= saved["best_epoch"] <= saved["epochs_run"] == 4
    rows = (out / "predictions.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted" and len(rows) == saved["n_test"] + 1
    task = json.loads((out / "config.json").read_text())["task"]
    assert task["task"] == "generalization" and task["model"] == "hnp"
    assert task["spec"] == {"widths": [1, 4, 4, 3], "kernel_shapes": [[3, 3], [3, 3], []]}
    assert task["hidden_channels"] == [8, 8] and task["head_hidden"] == [32]


def test_evaluate_reproduces_metrics_beside_the_runs_own(zoo, hnp_run):
    """#2: evaluate writes RUN/eval/<zoo name>/, never over the training run's results."""
    out, metrics = hnp_run
    own = {name: (out / name).read_bytes() for name in TRAINED_FILES}
    again = evaluate(out, zoo)
    for key in ("kendall_tau", "r2", "mae"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-6)
    assert again["n_test"] == metrics["n_test"]
    assert {name: (out / name).read_bytes() for name in TRAINED_FILES} == own
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] == metrics["best_epoch"]
    folder = out / "eval" / "syn"  # the zoo's name (an in-memory zoo: info["path"])
    assert again["out"] == str(folder)
    assert json.loads((folder / "metrics.json").read_text()) == json.loads(json.dumps(again))
    assert (folder / "scatter.png").is_file() and (folder / "predictions.csv").is_file()


def test_evaluate_names_each_zoo_apart(tmp_path, hnp_run):
    out, _ = hnp_run
    run = tmp_path / "run"
    shutil.copytree(out, run)
    saved = []
    for path in (tmp_path / "a" / "zoo", tmp_path / "b" / "zoo", tmp_path / "a" / "zoo"):
        path.mkdir(parents=True, exist_ok=True)
        (path / "zoo.json").write_text("{}")
        saved.append(runner.eval_folder(run, str(path)))
        saved[-1].mkdir(parents=True, exist_ok=True)
        (saved[-1] / "metrics.json").write_text(json.dumps({"source": str(path.resolve())}))
    # Two zoos named zoo: the second gets a hash of its path; the first keeps its folder.
    assert saved[0] == run / "eval" / "zoo" and saved[2] == saved[0]
    assert saved[1].parent == run / "eval" and saved[1].name.startswith("zoo-")


def test_rerun_resumes_and_rescores(zoo, hnp_run):
    out, metrics = hnp_run
    again = run_generalization(small("hnp", out), zoo=zoo, progress=False)
    assert again["kendall_tau"] == pytest.approx(metrics["kendall_tau"], abs=1e-6)
    assert again["epochs_run"] == 4
    with pytest.raises(ValueError, match=r"task\.lr: 0\.003 in config\.json, 0\.01 now"):
        run_generalization(small("hnp", out, lr=1e-2), zoo=zoo, progress=False)


def test_evaluate_refuses_another_architecture(hnp_run):
    out, _ = hnp_run
    other = synthetic_zoo(40, NetworkSpec((1, 5, 4, 3), ((3, 3), (3, 3), ())))
    with pytest.raises(ValueError) as err:
        evaluate(out, other)
    message = str(err.value)
    assert "widths=(1, 5, 4, 3)" in message and "widths=(1, 4, 4, 3)" in message
    assert "trained on" in message


@pytest.mark.parametrize("model", ["np", "statnet", "mlp"])
def test_other_predictors_train(zoo, tmp_path, model):
    metrics = run_generalization(small(model, tmp_path, epochs=2), zoo=zoo, progress=False)
    assert metrics["model"] == model
    assert math.isfinite(metrics["mae"]) and -1 <= metrics["kendall_tau"] <= 1
    assert evaluate(tmp_path, zoo)["mae"] == pytest.approx(metrics["mae"], abs=1e-6)


def test_stats_pool_predictor_trains_evaluates_and_is_recorded(zoo, tmp_path):
    from weightspace.nn import StatsPool

    run = tmp_path / "stats"
    metrics = run_generalization(small("hnp", run, epochs=2, pool="stats"), zoo=zoo, progress=False)
    assert math.isfinite(metrics["mae"])
    assert json.loads((run / "config.json").read_text())["task"]["pool"] == "stats"
    assert evaluate(run, zoo)["mae"] == pytest.approx(metrics["mae"], abs=1e-6)
    assert isinstance(build_predictor("hnp", SPEC, (4, 4), (8,), pool="stats").pool, StatsPool)
    # The default is not written into the settings: runs from before the option still resume.
    assert "pool" not in small("hnp", tmp_path / "mean").settings()
    with pytest.raises(ValueError, match=r"pool 'stats' applies to the NFNs .* not 'statnet'"):
        build_predictor("statnet", SPEC, (4, 4), (8,), pool="stats")
    with pytest.raises(ValueError, match="pool"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", pool="max")


def test_standardised_predictor_trains_evaluates_and_is_recorded(zoo, tmp_path):
    from weightspace.models import Standardized

    run = tmp_path / "norm"
    config = small("hnp", run, epochs=2, normalize=True, dropout=0.1)
    metrics = run_generalization(config, zoo=zoo, progress=False)
    assert math.isfinite(metrics["mae"])
    task = json.loads((run / "config.json").read_text())["task"]
    assert task["normalize"] is True and task["dropout"] == 0.1
    assert evaluate(run, zoo)["mae"] == pytest.approx(metrics["mae"], abs=1e-6)
    # The statistics were measured on the training split and saved with the model.
    state = torch.load(run / "best.pt", weights_only=True)
    state = state.get("model", state)
    train = zoo.features[torch.nonzero(zoo.split == 0).flatten()]
    w1 = train.weights[0].double()
    assert float(state["scale"][0]) == pytest.approx(float(w1.std(correction=0)), rel=1e-5)
    assert float(state["shift"][0]) == pytest.approx(float(w1.mean()), abs=1e-6)
    for name in ("hnp", "np", "statnet", "mlp"):
        model = build_predictor(name, SPEC, (4, 4), (8,), normalize=True)
        assert isinstance(model, Standardized), name
        assert not isinstance(build_predictor(name, SPEC, (4, 4), (8,)), Standardized)
    assert "normalize" not in small("hnp", tmp_path / "plain").settings()
    assert "dropout" not in small("hnp", tmp_path / "plain").settings()
    with pytest.raises(
        ValueError, match=r"normalize applies to hnp, np, statnet and mlp, not 'hnp-probe'"
    ):
        GeneralizationConfig(zoo="z", model="hnp-probe", out="o", normalize=True)
    with pytest.raises(ValueError, match=r"normalize applies to .* not 'probe'"):
        build_predictor("probe", SPEC, (4, 4), (8,), normalize=True)
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", dropout=1.5)


def test_fourier_feature_predictor_trains_evaluates_and_is_recorded(zoo, tmp_path):
    from weightspace import symmetry
    from weightspace.nn import GaussianFourierFeatures

    run = tmp_path / "fourier"
    config = small("hnp", run, epochs=2, normalize=True, fourier_features=4, fourier_scale=0.5)
    metrics = run_generalization(config, zoo=zoo, progress=False)
    task = json.loads((run / "config.json").read_text())["task"]
    assert task["fourier_features"] == 4 and task["fourier_scale"] == 0.5
    assert evaluate(run, zoo)["mae"] == pytest.approx(metrics["mae"], abs=1e-6)
    model = build_predictor("hnp", SPEC, (4, 4), (8,), fourier_features=3, fourier_scale=2.0)
    fourier = [m for m in model.modules() if isinstance(m, GaussianFourierFeatures)]
    assert len(fourier) == 1 and fourier[0].mapping_size == 3 and fourier[0].scale == 2.0
    assert not any(
        isinstance(m, GaussianFourierFeatures)
        for m in build_predictor("hnp", SPEC, (4,), (8,)).modules()
    )
    x, g = zoo.features[:4], symmetry.sample(SPEC, "hnp")
    assert torch.allclose(model(x.permute(g)), model(x), atol=1e-5)
    assert "fourier_features" not in small("hnp", tmp_path / "plain").settings()
    with pytest.raises(
        ValueError, match=r"fourier_features must be None: it applies to hnp and np"
    ):
        GeneralizationConfig(zoo="z", model="statnet", out="o", fourier_features=8)
    with pytest.raises(ValueError, match=r"fourier_features must be a positive int or None, got 0"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", fourier_features=0)
    with pytest.raises(ValueError, match=r"fourier_scale must be a positive number, got -1"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", fourier_scale=-1)


def test_diverged_networks_are_dropped_and_counted(tmp_path, capsys):
    zoo = synthetic_zoo(60)
    zoo.features.weights[0][[3, 7]] = float("nan")
    zoo.test_accuracy[11] = float("inf")
    metrics = run_generalization(small("statnet", tmp_path, epochs=1), zoo=zoo, progress=False)
    assert metrics["dropped"] == 3
    assert json.loads((tmp_path / "metrics.json").read_text())["dropped"] == 3
    assert "dropped 3 diverged" in capsys.readouterr().out
    assert metrics["n_train"] + metrics["n_val"] + metrics["n_test"] == 57


def test_predictors_are_invariant(zoo):
    from weightspace import symmetry

    x = zoo.features[:4]
    g = symmetry.sample(SPEC, "hnp")
    cases = (("hnp", "mean", False), ("np", "mean", False), ("statnet", "mean", False))
    cases += (("hnp", "stats", False), ("hnp", "mean", True), ("np", "mean", True))
    for name, pool, normalize in cases:
        torch.manual_seed(0)
        model = build_predictor(name, SPEC, (4, 4), (8,), pool=pool, normalize=normalize)
        if normalize:  # statistics other than the identity, so the control below has teeth
            model.set_statistics(zoo.features)
        assert model(x).shape == (4, 1)
        assert torch.allclose(model(x.permute(g)), model(x), atol=1e-5), name


def test_errors(tmp_path, zoo):
    with pytest.raises(ValueError, match=r"unknown model 'cnn'; expected one of \('hnp', 'np'"):
        GeneralizationConfig(zoo="z", model="cnn", out="o")
    with pytest.raises(ValueError, match="zoo_kind"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", zoo_kind="tf")
    missing = tmp_path / "missing"
    with pytest.raises(ValueError, match=r"zoo .*missing' does not exist"):
        run_generalization(small("hnp", tmp_path / "run", zoo=str(missing)), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"is not a zoo: expected weights\.npy"):
        load_any_zoo(empty)
    with pytest.raises(ValueError, match=r"config\.json is missing"):
        evaluate(empty, zoo)
    with pytest.raises(ValueError, match="need at least 2"):
        run_generalization(small("hnp", tmp_path / "tiny"), zoo=synthetic_zoo(4), progress=False)


def test_detect_zoo_kind(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "weights.npy").write_bytes(b"")
    assert detect_zoo_kind(tmp_path / "a") == "small-cnn-zoo"
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "zoo.json").write_text("{}")
    assert detect_zoo_kind(tmp_path / "b") == "weightspace"
    (tmp_path / "c").write_text("")
    with pytest.raises(ValueError, match="is not a folder"):
        detect_zoo_kind(tmp_path / "c")


def test_augmented_batches_are_the_same_functions(tmp_path):
    """--augment: each training batch holds other weights for the same CNNs (tanh networks
    flipped, ReLU networks rescaled), drawn per network; validation items are plain."""
    from weightspace import collate
    from weightspace.data.zoo import load_zoo
    from weightspace.functional import forward
    from weightspace.tasks.generalization import Generalization

    from ._zoos import digits_zoo

    zoo = load_zoo(digits_zoo(tmp_path / "zoo", 8, 8, limit_train=64, limit_test=32))
    activations = [row["activation"] for row in zoo.metadata]
    assert set(activations) == {"relu", "tanh"}  # both symmetries get exercised
    task = Generalization({"augment": True, "model": "hnp", "spec": zoo.spec.to_dict()})
    train, plain = task.items(zoo, train=True), task.items(zoo, train=False)
    assert len(plain[0]) == 2 and len(train[0]) == 3
    batch = collate([train[i] for i in range(len(zoo))])
    seen = []
    model = torch.nn.Module()
    model.forward = lambda features: seen.append(features) or torch.zeros(len(zoo), 1)
    torch.manual_seed(0)
    task.objective()(model, batch, 1)
    (augmented,) = seen
    x = torch.randn(5, 1, 8, 8)
    for i, act in enumerate(activations):
        a, b = zoo.features[i], augmented[i]
        assert not torch.equal(a.weights[1], b.weights[1])
        flipped = torch.equal(a.weights[0].abs(), b.weights[0].abs())
        assert flipped == (act == "tanh")  # a sign flip keeps magnitudes, a rescale does not
        torch.testing.assert_close(
            forward(b, x, act, stride=2, padding=1),
            forward(a, x, act, stride=2, padding=1),
            rtol=1e-4,
            atol=1e-5,
        )
    model.eval()
    task.objective()(model, batch, 1)  # not in training: not augmented
    assert all(torch.equal(p, q) for p, q in zip(seen[1].tensors, zoo.features.tensors))
    bad = Zoo(zoo.spec, zoo.features, zoo.test_accuracy, [{"index": 3}] * 8, zoo.split)
    with pytest.raises(ValueError, match="network 3 has activation None; symmetry augmentation"):
        task.items(bad, train=True)


@pytest.mark.parametrize("model", ["probe", "hnp-probe"])
def test_probe_predictors_run_each_network_with_its_own_activation(tmp_path, model):
    from weightspace import symmetry
    from weightspace.data.zoo import load_zoo

    from ._zoos import digits_zoo

    zoo = load_zoo(digits_zoo(tmp_path / "zoo", 24, 24, limit_train=64, limit_test=32))
    acts = {row["activation"] for row in zoo.metadata}
    assert acts == {"relu", "tanh"}  # the zoo mixes both, so routing matters
    cfg = small(model, tmp_path / "run", zoo=str(tmp_path / "zoo"), epochs=2, probes=8)
    metrics = run_generalization(cfg, progress=False)
    assert -1 <= metrics["kendall_tau"] <= 1
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["task"]
    assert saved["activations"] == ["relu", "tanh"]
    assert saved["probe_input"] == {"shape": [8, 8], "stride": 2, "padding": 1}
    assert evaluate(tmp_path / "run", tmp_path / "zoo")["mae"] == pytest.approx(metrics["mae"])
    # The model is invariant to hidden-neuron permutations, and reads each network's activation.
    _, _, net = runner.load_trained(Generalization, tmp_path / "run")
    net.eval()
    x = zoo.features[:6]
    index = torch.tensor([saved["activations"].index(r["activation"]) for r in zoo.metadata[:6]])
    g = symmetry.sample(zoo.spec, "hnp", batch_size=6)
    with torch.no_grad():
        y = net((x, index))
        torch.testing.assert_close(net((x.permute(g), index)), y, rtol=1e-4, atol=1e-5)
        assert (net((x, 1 - index)) - y).abs().max() > 1e-4  # control: the wrong activations


def test_probe_predictors_refuse_zoos_that_record_no_activation(tmp_path, zoo):
    with pytest.raises(ValueError, match="some rows record no activation"):
        run_generalization(small("probe", tmp_path), zoo=zoo, progress=False)
    rows = [{"index": i, "activation": "swish" if i == 5 else "relu"} for i in range(len(zoo))]
    odd = Zoo(zoo.spec, zoo.features, zoo.test_accuracy, rows, zoo.split, zoo.info)
    with pytest.raises(ValueError, match="network 5 has activation 'swish', which a probe model"):
        run_generalization(small("probe", tmp_path / "b"), zoo=odd, progress=False)


def test_training_and_evaluation_keep_freed_memory_for_reuse(zoo, hnp_run, monkeypatch, tmp_path):
    """The runner asks glibc to reuse large blocks (a speed measure, BENCHMARKS.md) before it
    trains and before it evaluates."""
    calls = []
    monkeypatch.setattr(runner, "retain_freed_memory", lambda: calls.append(1) or True)
    run_generalization(small("statnet", tmp_path / "s", epochs=1), zoo=zoo, progress=False)
    assert len(calls) == 1
    evaluate(hnp_run[0], zoo)
    assert len(calls) == 2
