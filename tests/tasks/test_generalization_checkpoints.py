"""`train generalization --checkpoints all|final`, on generated zoos and on a zoo written in the
Small CNN Zoo's exact public format (TensorFlow kernels, layout.csv, metrics.csv.gz with several
steps per network), trained and evaluated through the command line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from tests.data._small_cnn_zoo_files import ZOO_VARIABLES, layout_rows, write_layout, write_metrics
from weightspace.cli import main
from weightspace.data import SPLITS
from weightspace.data.small_cnn_zoo import FINAL_STEP, SMALL_CNN_ZOO_SPEC
from weightspace.data.zoo import ZOO_SPEC, ZooConfig, generate_zoo, load_zoo
from weightspace.tasks.generalization import GeneralizationConfig, load_any_zoo

SAVE_EPOCHS = (0, 1, 3)
#: The public zoo's step of each saved epoch of ours: the initialisation, one between, the end.
STEP_OF_EPOCH = {0: 0, 1: 40, 3: FINAL_STEP}
NETWORKS = 40


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """40 digits CNNs of the Small CNN Zoo's architecture, trained 3 epochs, 3 saved epochs."""
    out = tmp_path_factory.mktemp("zoo") / "zoo"
    config = ZooConfig(
        dataset="digits",
        networks=NETWORKS,
        out=str(out),
        epochs=3,
        chunk_size=20,
        save_epochs=SAVE_EPOCHS,
        limit_train=300,
        limit_test=200,
    )
    return generate_zoo(config, progress=False)


def by_index(zoo):
    return {(row["index"], row["epoch"]): i for i, row in enumerate(zoo.metadata)}


def test_all_checkpoints_train_on_every_epoch_and_score_the_final_one(zoo_dir):
    final = load_any_zoo(zoo_dir)
    every = load_any_zoo(zoo_dir, checkpoints="all")
    # Train: every saved epoch of every train network; val and test: the final epoch only.
    for name in ("train", "val", "test"):
        nets_final = sorted(row["index"] for row in final.part(name).metadata)
        part = every.part(name)
        epochs = SAVE_EPOCHS if name == "train" else (SAVE_EPOCHS[-1],)
        expected = sorted((i, e) for i in nets_final for e in epochs)
        assert sorted((r["index"], r["epoch"]) for r in part.metadata) == expected, name
    # The val and test items are the very networks "final" scores, weights and targets equal.
    pos = by_index(every)
    test = final.part("test")
    rows = [pos[(r["index"], SAVE_EPOCHS[-1])] for r in test.metadata]
    for a, b in zip(every.features[torch.tensor(rows)].tensors, test.features.tensors):
        assert torch.equal(a, b)
    assert torch.equal(every.test_accuracy[rows], test.test_accuracy)
    # Earlier checkpoints are other weights with their own accuracies (a broken loader that
    # repeated the final one would pass the checks above).
    train_row = final.part("train").metadata[0]["index"]
    t0, t3 = pos[(train_row, 0)], pos[(train_row, 3)]
    assert not torch.equal(every.features.weights[0][t0], every.features.weights[0][t3])
    assert "train: every checkpoint" in every.info["split_rule"]


def test_all_checkpoints_refuse_an_epoch_a_train_limit_and_unknown_values(zoo_dir):
    with pytest.raises(ValueError, match="checkpoints 'all' reads every saved checkpoint"):
        load_any_zoo(zoo_dir, checkpoints="all", epoch=1)
    with pytest.raises(ValueError, match="checkpoints must be one of"):
        load_any_zoo(zoo_dir, checkpoints="some")
    with pytest.raises(ValueError, match="cannot be combined with checkpoints='all'"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", checkpoints="all", train_limit=10)
    with pytest.raises(ValueError, match="checkpoints"):
        GeneralizationConfig(zoo="z", model="hnp", out="o", checkpoints="last")
    # The default is not written into the settings: runs from before the option still resume.
    assert "checkpoints" not in GeneralizationConfig(zoo="z", model="hnp", out="o").settings()


def test_cli_trains_on_all_checkpoints_and_evaluates_on_final_ones(zoo_dir, tmp_path):
    run = tmp_path / "run"
    argv = ["train", "generalization", "--zoo", str(zoo_dir), "--model", "statnet"]
    argv += ["--out", str(run), "--epochs", "2", "--checkpoints", "all"]
    assert main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    final = load_any_zoo(zoo_dir)
    finite, _ = final.finite()
    assert metrics["n_test"] == len(finite.part("test"))
    assert metrics["n_val"] == len(finite.part("val"))
    every, _ = load_any_zoo(zoo_dir, checkpoints="all").finite()
    assert metrics["n_train"] == len(every.part("train")) > 2 * len(finite.part("train"))
    assert json.loads((run / "config.json").read_text())["task"]["checkpoints"] == "all"
    assert main(["evaluate", "--run", str(run), "--zoo", str(zoo_dir)]) == 0
    again = json.loads(next((run / "eval").glob("*/metrics.json")).read_text())
    assert again["n_test"] == metrics["n_test"]
    assert again["kendall_tau"] == pytest.approx(metrics["kendall_tau"], abs=1e-6)


# ------------------------------------------------- the Small CNN Zoo's public format
def tf_row(zoo, i: int) -> np.ndarray:
    """Network ``i`` of a zoo as one flat row in TensorFlow layout, in layout.csv's order
    (:data:`ZOO_VARIABLES`: each layer's bias, then its kernel)."""
    parts = []
    for layer in range(len(zoo.spec.widths) - 1):
        w = zoo.features.weights[layer][i, 0].numpy()
        kernel = np.moveaxis(w, (0, 1), (-1, -2))  # (out, in, *k) -> (*k, in, out)
        parts += [zoo.features.biases[layer][i, 0].numpy().ravel(), kernel.ravel()]
    return np.concatenate(parts)


def write_public_format(zoo_dir, root) -> dict[str, int]:
    """Every saved checkpoint of the zoo, as the Small CNN Zoo ships one dataset's folder.

    Rows are shuffled (the public file is in no network order), steps are written as floats
    ("86.0") as pandas wrote them, and pandas' unnamed index column leads both CSVs. Returns
    the network index of each modeldir.
    """
    every = load_zoo(zoo_dir, checkpoints="all")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(every))
    weights = np.stack([tf_row(every, int(i)) for i in order]).astype(np.float32)
    np.save(root / "weights.npy", weights)
    write_layout(root, layout_rows(ZOO_VARIABLES))
    columns = ["", "config.activation", "config.dataset", "config.learning_rate"]
    columns += ["config.train_fraction", "modeldir", "step", "test_accuracy", "train_accuracy"]
    rows = []
    for n, i in enumerate(order):
        r = every.metadata[int(i)]
        rows.append(
            {
                "": n,
                "config.activation": r["activation"],
                "config.dataset": "digits",
                "config.learning_rate": r["learning_rate"],
                "config.train_fraction": r["train_fraction"],
                "modeldir": f"/zoo/run_{r['index']:04d}",
                "step": f"{STEP_OF_EPOCH[r['epoch']]:.1f}",
                "test_accuracy": "nan" if math.isnan(r["test_accuracy"]) else r["test_accuracy"],
                "train_accuracy": r["train_accuracy"],
            }
        )
    write_metrics(root, rows, columns)
    return {f"/zoo/run_{r['index']:04d}": r["index"] for r in every.metadata}


def test_a_zoo_in_the_public_format_trains_and_evaluates_end_to_end(zoo_dir, tmp_path):
    root = tmp_path / "small-cnn-zoo"
    root.mkdir()
    index_of = write_public_format(zoo_dir, root)
    assert ZOO_SPEC == SMALL_CNN_ZOO_SPEC
    # What the loader reads is what we wrote, tensor for tensor, at the final and earlier steps.
    ours = load_zoo(zoo_dir, checkpoints="all")
    pos = by_index(ours)
    public = load_any_zoo(root, kind="small-cnn-zoo", checkpoints="all")
    epoch_of = {s: e for e, s in STEP_OF_EPOCH.items()}
    assert sorted({r["step"] for r in public.metadata}) == sorted(STEP_OF_EPOCH.values())
    rows = [pos[(index_of[r["modeldir"]], epoch_of[r["step"]])] for r in public.metadata]
    for a, b in zip(public.features.tensors, ours.features[torch.tensor(rows)].tensors):
        assert torch.equal(a, b)
    # The split is by network: no modeldir on two sides of it.
    sides: dict[str, set[int]] = {}
    for r, s in zip(public.metadata, public.split.tolist()):
        sides.setdefault(r["modeldir"], set()).add(s)
    assert all(len(s) == 1 for s in sides.values())
    assert {r["step"] for r, s in zip(public.metadata, public.split) if s != SPLITS["train"]} == {
        FINAL_STEP
    }

    results = {}
    for checkpoints in ("final", "all"):
        run = tmp_path / f"run-{checkpoints}"
        argv = ["train", "generalization", "--zoo", str(root), "--zoo-kind", "small-cnn-zoo"]
        argv += ["--model", "hnp", "--out", str(run), "--epochs", "2", "--batch-size", "16"]
        argv += ["--checkpoints", checkpoints]
        assert main(argv) == 0
        results[checkpoints] = json.loads((run / "metrics.json").read_text())
        assert main(["evaluate", "--run", str(run), "--zoo", str(root)]) == 0
        again = json.loads(next((run / "eval").glob("*/metrics.json")).read_text())
        assert again["kendall_tau"] == pytest.approx(results[checkpoints]["kendall_tau"], abs=1e-6)
        assert math.isfinite(again["mae"])
    final = load_any_zoo(root, kind="small-cnn-zoo")
    n_final = len(final.finite()[0].part("train"))
    assert results["final"]["n_train"] == n_final
    assert results["all"]["n_train"] > 2 * n_final
    assert results["all"]["n_test"] == results["final"]["n_test"] == len(final.part("test"))
