"""The Small CNN Zoo loader, on fixtures written in the zoo's exact file formats."""

from __future__ import annotations

import csv
import gzip
import math
import re

import numpy as np
import pytest
import torch

from tests.data._small_cnn_zoo_files import (
    METRIC_COLUMNS,
    ZOO_VARIABLES,
    layout_rows,
    write_layout,
    write_metrics,
)
from weightspace.data import SPLITS
from weightspace.data.small_cnn_zoo import (
    SMALL_CNN_ZOO_SPEC,
    load_small_cnn_zoo,
    paper_split,
    read_layout,
    small_cnn_zoo_module,
)
from weightspace.space.spec import NetworkSpec

N_NETS = 6
STEPS = (0, 86)


def metric_row(net: int, step: int, accuracy: float) -> dict:
    return {
        "config.activation": "relu" if net % 2 == 0 else "tanh",
        "config.b_init": "zeros",
        "config.dataset": "mnist",
        "config.dnn_architecture": "cnn",
        "config.dropout": 0.0,
        "config.epochs": 86,
        "config.epochs_between_checkpoints": 20,
        "config.init_std": 0.05,
        "config.l2reg": 1e-4 * (net + 1),
        "config.learning_rate": 0.001 * (net + 1),
        "config.num_layers": 3,
        "config.num_units": 16,
        "config.optimizer": ("sgd", "adam", "rmsprop")[net % 3],
        "config.random_seed": 42,
        "config.train_fraction": 0.5,
        "config.w_init": "he_normal",
        "modeldir": f"/zoo/run_{net:03d}",
        "step": step,
        "test_accuracy": accuracy,
        "test_loss": 1.0 - accuracy,
        "train_accuracy": min(1.0, accuracy + 0.01),
        "train_loss": 0.9 - accuracy,
    }


@pytest.fixture
def zoo_dir(tmp_path):
    """6 networks x 2 checkpoints (steps 0 and 86), rows interleaved, in the zoo's formats.

    Returns the folder and, per network, its flat final (step 86) weight vector.
    """
    rng = np.random.default_rng(0)
    rows = layout_rows(ZOO_VARIABLES)
    total = rows[-1]["end_idx"]
    assert total == 4970
    order = [(net, step) for step in STEPS for net in range(N_NETS)]
    order = [order[i] for i in rng.permutation(len(order))]
    weights = (rng.standard_normal((len(order), total)) * 0.4).astype(np.float32)
    metrics = [metric_row(net, step, 0.5 + net / 20 + step / 1000) for net, step in order]
    np.save(tmp_path / "weights.npy", weights)
    write_layout(tmp_path, rows)
    write_metrics(tmp_path, metrics)
    final = {net: weights[i] for i, (net, step) in enumerate(order) if step == 86}
    final_order = [net for net, step in order if step == 86]
    return tmp_path, final, final_order


# ------------------------------------------------------------ reference maths
def tf_reference(flat: np.ndarray, x_nhwc: np.ndarray, activation: str) -> np.ndarray:
    """The Keras network's forward pass in float64, in TensorFlow's own layout.

    NHWC input, HWIO kernels, 'valid' padding, stride 2, then the mean over space and a dense
    ``(in, out)`` kernel.
    """
    params, start = {}, 0
    for name, shape in ZOO_VARIABLES:
        end = start + math.prod(shape)
        params[name] = flat[start:end].astype(np.float64).reshape(shape)
        start = end
    act = {"relu": lambda v: np.maximum(v, 0.0), "tanh": np.tanh}[activation]
    h = x_nhwc.astype(np.float64)
    for layer in ("conv2d", "conv2d_1", "conv2d_2"):
        kernel = params[f"sequential/{layer}/kernel:0"]
        bias = params[f"sequential/{layer}/bias:0"]
        kh, kw = kernel.shape[:2]
        out_h = (h.shape[1] - kh) // 2 + 1
        out_w = (h.shape[2] - kw) // 2 + 1
        out = np.zeros((h.shape[0], out_h, out_w, kernel.shape[3]))
        for i in range(out_h):
            for j in range(out_w):
                patch = h[:, 2 * i : 2 * i + kh, 2 * j : 2 * j + kw, :]
                out[:, i, j, :] = np.einsum("bpqc,pqco->bo", patch, kernel) + bias
        h = act(out)
    pooled = h.mean(axis=(1, 2))
    return pooled @ params["sequential/dense/kernel:0"] + params["sequential/dense/bias:0"]


# ----------------------------------------------------------------------- load
def test_load_shapes_targets_metadata(zoo_dir):
    root, _, final_order = zoo_dir
    zoo = load_small_cnn_zoo(root)
    assert len(zoo) == N_NETS
    assert zoo.spec == SMALL_CNN_ZOO_SPEC == NetworkSpec((1, 16, 16, 16, 10), ((3, 3),) * 3 + ((),))
    assert zoo.spec.num_params == 4970
    shapes = [tuple(t.shape) for t in zoo.features.tensors]
    assert shapes == [
        (6, 1, 16, 1, 3, 3),
        (6, 1, 16, 16, 3, 3),
        (6, 1, 16, 16, 3, 3),
        (6, 1, 10, 16),
        (6, 1, 16),
        (6, 1, 16),
        (6, 1, 16),
        (6, 1, 10),
    ]
    assert zoo.features.dtype == torch.float32
    # Networks keep the file order of their step-86 rows, with their own targets and metadata.
    assert [m["modeldir"] for m in zoo.metadata] == [f"/zoo/run_{n:03d}" for n in final_order]
    expected_acc = [0.5 + n / 20 + 0.086 for n in final_order]
    torch.testing.assert_close(zoo.test_accuracy, torch.tensor(expected_acc), rtol=0, atol=1e-6)
    row = zoo.metadata[0]
    net = final_order[0]
    assert row["step"] == 86 and isinstance(row["step"], int)
    assert row["config.optimizer"] == ("sgd", "adam", "rmsprop")[net % 3]
    assert row["config.learning_rate"] == pytest.approx(0.001 * (net + 1))
    assert row["config.num_units"] == 16 and row["config.random_seed"] == 42
    assert set(row) == set(METRIC_COLUMNS)
    assert zoo.info["source"] == "small-cnn-zoo"
    assert zoo.info["root"] == str(root)
    assert zoo.info["step"] == 86 and zoo.info["split_seed"] == 0
    assert zoo.info["dataset"] == "mnist"
    assert zoo.info["num_checkpoints"] == 12 and zoo.info["dropped_networks"] == 0


def test_weights_are_converted_from_tensorflow_layout(zoo_dir):
    root, final, final_order = zoo_dir
    zoo = load_small_cnn_zoo(root)
    i = 2
    flat = final[final_order[i]]
    kernel0 = flat[16:160].reshape(3, 3, 1, 16)  # HWIO
    dense = flat[4810:4970].reshape(16, 10)  # (in, out)
    w1 = zoo.features.weights[0][i, 0].numpy()
    for o, c, p, q in [(0, 0, 0, 0), (5, 0, 2, 1), (15, 0, 1, 2)]:
        assert w1[o, c, p, q] == kernel0[p, q, c, o]
    w2 = zoo.features.weights[1][i, 0].numpy()
    kernel1 = flat[176:2480].reshape(3, 3, 16, 16)
    np.testing.assert_array_equal(w2, kernel1.transpose(3, 2, 0, 1))
    np.testing.assert_array_equal(zoo.features.weights[3][i, 0].numpy(), dense.T)
    np.testing.assert_array_equal(zoo.features.biases[3][i, 0].numpy(), flat[4800:4810])


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_converted_network_computes_what_tensorflow_computes(zoo_dir, activation):
    root, final, final_order = zoo_dir
    zoo = load_small_cnn_zoo(root)
    rng = np.random.default_rng(1)
    for side in (28, 32):  # MNIST and CIFAR-10-GS sizes: both leave an unused border
        x = rng.uniform(-1, 1, size=(3, side, side, 1))
        for i in (0, 4):
            module = small_cnn_zoo_module(activation).double()
            zoo.features.load_into(module, i)
            with torch.no_grad():
                out = module(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
            expected = tf_reference(final[final_order[i]], x, activation)
            np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10)


def test_control_a_wrong_conversion_breaks_the_match(zoo_dir):
    root, final, final_order = zoo_dir
    zoo = load_small_cnn_zoo(root)
    module = small_cnn_zoo_module().double()
    zoo.features.load_into(module, 0)
    with torch.no_grad():  # HWIO read as if it were (out, in, kh, kw) without the transpose
        module[0].weight.copy_(torch.from_numpy(final[final_order[0]][16:160].reshape(16, 1, 3, 3)))
    x = np.random.default_rng(2).uniform(-1, 1, size=(2, 28, 28, 1))
    with torch.no_grad():
        out = module(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert np.abs(out - tf_reference(final[final_order[0]], x, "relu")).max() > 1e-3


def test_module_matches_spec():
    module = small_cnn_zoo_module("tanh")
    assert NetworkSpec.from_module(module) == SMALL_CNN_ZOO_SPEC
    assert sum(p.numel() for p in module.parameters()) == 4970
    assert module(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        small_cnn_zoo_module("gelu")
    with pytest.raises(ValueError, match="2-D convolutions followed by dense layers"):
        small_cnn_zoo_module(spec=NetworkSpec((1, 4, 2), ((3,), ())))


# ---------------------------------------------------------------------- split
def test_paper_split_rule():
    for n in (6, 7, 101, 29996):
        split = paper_split(n, seed=3)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(3))
        half = n // 2
        assert (split[order[half:]] == SPLITS["test"]).all()  # last half of the shuffle: test
        n_train = int(0.8 * half)
        assert (split[order[:n_train]] == SPLITS["train"]).all()
        assert (split[order[n_train:half]] == SPLITS["val"]).all()
    counts = torch.bincount(paper_split(29996), minlength=3).tolist()
    assert counts == [11998, 3000, 14998]
    assert torch.equal(paper_split(101, 0), paper_split(101, 0))
    assert not torch.equal(paper_split(101, 0), paper_split(101, 1))


def test_zoo_split_follows_the_paper_rule(zoo_dir):
    root, _, _ = zoo_dir
    zoo = load_small_cnn_zoo(root, split_seed=5)
    assert torch.equal(zoo.split, paper_split(N_NETS, 5))
    assert torch.bincount(zoo.split, minlength=3).tolist() == [2, 1, 3]
    assert len(zoo.part("test")) == 3 and zoo.info["split_seed"] == 5


# ----------------------------------------------------------- format variants
def test_other_step_and_dropped_networks(zoo_dir):
    root, _, _ = zoo_dir
    zoo0 = load_small_cnn_zoo(root, step=0)
    assert [m["step"] for m in zoo0.metadata] == [0] * N_NETS
    # A crashed run with only its initial checkpoint is left out at step 86, and counted.
    weights = np.load(root / "weights.npy")
    np.save(root / "weights.npy", np.concatenate([weights, weights[:1]]))
    with gzip.open(root / "metrics.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    rows.append({**rows[0], "modeldir": "/zoo/crashed", "step": "0"})
    write_metrics(root, rows)
    zoo = load_small_cnn_zoo(root)
    assert len(zoo) == N_NETS and zoo.info["dropped_networks"] == 1
    assert len(load_small_cnn_zoo(root, step=0)) == N_NETS + 1


def test_pandas_index_column_nan_accuracy_and_float_steps(zoo_dir):
    root, _, final_order = zoo_dir
    with gzip.open(root / "metrics.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows):
        r[""] = i
        r["step"] = f"{float(r['step'])}"  # "86.0"
        if r["modeldir"] == f"/zoo/run_{final_order[1]:03d}" and r["step"] == "86.0":
            r["test_accuracy"] = ""  # how pandas writes NaN
    write_metrics(root, rows, ["", *METRIC_COLUMNS])
    write_layout(root, layout_rows(ZOO_VARIABLES), index_column=False)
    zoo = load_small_cnn_zoo(root)
    assert "" not in zoo.metadata[0]
    assert math.isnan(zoo.test_accuracy[1]) and not zoo.test_accuracy[[0, 2, 3]].isnan().any()
    finite, dropped = zoo.finite()
    assert dropped == 1 and len(finite) == N_NETS - 1


def test_read_layout_derives_the_spec_from_any_widths(tmp_path):
    variables = [
        ("net/c/bias:0", (4,)),
        ("net/c/kernel:0", (5, 5, 2, 4)),
        ("net/d/kernel:0", (4, 3)),
        ("net/d/bias:0", (3,)),
    ]
    write_layout(tmp_path, layout_rows(variables))
    layout = read_layout(tmp_path / "layout.csv")
    assert layout.spec == NetworkSpec((2, 4, 3), ((5, 5), ()))
    assert layout.num_params == 4 + 200 + 12 + 3
    assert [k.varname for k, _ in layout.layers] == ["net/c/kernel:0", "net/d/kernel:0"]


# --------------------------------------------------------------------- errors
@pytest.mark.parametrize("name", ["weights.npy", "layout.csv", "metrics.csv.gz"])
def test_missing_file(zoo_dir, name):
    root, _, _ = zoo_dir
    (root / name).unlink()
    with pytest.raises(ValueError, match=re.escape(name) + ".* does not exist"):
        load_small_cnn_zoo(root)


def test_missing_folder(tmp_path):
    with pytest.raises(ValueError, match=r"nowhere' does not exist"):
        load_small_cnn_zoo(tmp_path / "nowhere")


def test_weights_row_length_differs_from_layout(zoo_dir):
    root, _, _ = zoo_dir
    weights = np.load(root / "weights.npy")
    np.save(root / "weights.npy", weights[:, :-1])
    with pytest.raises(ValueError, match=r"weights\.npy' has rows of 4969 values, expected 4970"):
        load_small_cnn_zoo(root)


def test_weights_must_not_need_pickle(zoo_dir):
    root, _, _ = zoo_dir
    objects = np.empty(2, dtype=object)
    objects[:] = [{"a": 1}, {"b": 2}]
    np.save(root / "weights.npy", objects, allow_pickle=True)
    with pytest.raises(
        ValueError, match=r"weights\.npy' could not be read as a \.npy array without pickles"
    ):
        load_small_cnn_zoo(root)
    np.save(root / "weights.npy", np.zeros(4970, np.float32))
    with pytest.raises(ValueError, match=r"weights\.npy' holds \(4970,\), expected a 2-D array"):
        load_small_cnn_zoo(root)


def test_metrics_weights_row_count_mismatch(zoo_dir):
    root, _, _ = zoo_dir
    weights = np.load(root / "weights.npy")
    np.save(root / "weights.npy", weights[:-1])
    with pytest.raises(
        ValueError, match=r"metrics\.csv\.gz' has 12 rows but .*weights\.npy' has 11"
    ):
        load_small_cnn_zoo(root)


def test_no_metrics_row_at_the_step(zoo_dir):
    root, _, _ = zoo_dir
    with pytest.raises(
        ValueError, match=r"metrics\.csv\.gz': no row has step 40.*found steps \[0, 86\]"
    ):
        load_small_cnn_zoo(root, step=40)


def test_bad_metrics_values(zoo_dir):
    root, _, _ = zoo_dir
    with gzip.open(root / "metrics.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    bad_step = [dict(r) for r in rows]
    bad_step[3]["step"] = "eighty-six"
    write_metrics(root, bad_step)
    with pytest.raises(
        ValueError, match=r"metrics\.csv\.gz' line 5: column 'step' is 'eighty-six'"
    ):
        load_small_cnn_zoo(root)
    bad_acc = [dict(r) for r in rows]
    index = next(i for i, r in enumerate(bad_acc) if r["step"] == "86")
    bad_acc[index]["test_accuracy"] = "high"
    write_metrics(root, bad_acc)
    with pytest.raises(ValueError, match=rf"line {index + 2}: column 'test_accuracy' is 'high'"):
        load_small_cnn_zoo(root)
    for value in ("7.5", "-3.0", "inf"):  # out-of-range targets are refused, not trained on
        bad_acc[index]["test_accuracy"] = value
        write_metrics(root, bad_acc)
        with pytest.raises(
            ValueError,
            match=rf"line {index + 2}: column 'test_accuracy' is '{value}', expected an accuracy in "
            r"\[0, 1\]",
        ):
            load_small_cnn_zoo(root)
    twice = [dict(r) for r in rows]
    twice[index + 1 if index == 0 else 0] = dict(rows[index])
    write_metrics(root, twice)
    with pytest.raises(ValueError, match=r"has several rows at step 86"):
        load_small_cnn_zoo(root)
    write_metrics(root, rows, [c for c in METRIC_COLUMNS if c != "test_accuracy"])
    with pytest.raises(ValueError, match=r"metrics\.csv\.gz': no column 'test_accuracy'"):
        load_small_cnn_zoo(root)
    (root / "metrics.csv.gz").write_bytes(b"step,test_accuracy\n86,0.5\n")
    with pytest.raises(ValueError, match=r"metrics\.csv\.gz' could not be read .*gzip"):
        load_small_cnn_zoo(root)


def shifted(rows, index, by):
    rows = [dict(r) for r in rows]
    rows[index]["start_idx"] += by
    rows[index]["end_idx"] += by
    return rows


def test_layout_overlap(zoo_dir):
    root, _, _ = zoo_dir
    write_layout(root, shifted(layout_rows(ZOO_VARIABLES), 3, -1))
    with pytest.raises(ValueError, match=r"layout\.csv'.*overlaps 'sequential/conv2d_1/bias:0'"):
        load_small_cnn_zoo(root)


def test_layout_gap(zoo_dir):
    root, _, _ = zoo_dir
    write_layout(root, shifted(layout_rows(ZOO_VARIABLES), 7, 2))
    with pytest.raises(
        ValueError,
        match=r"layout\.csv': columns 4810:4812 after 'sequential/dense/bias:0' belong to no variable",
    ):
        load_small_cnn_zoo(root)
    write_layout(root, layout_rows(ZOO_VARIABLES)[1:])
    with pytest.raises(ValueError, match=r"columns 0:16 at the start belong to no variable"):
        load_small_cnn_zoo(root)


def test_layout_layers_must_chain(zoo_dir):
    root, _, _ = zoo_dir
    variables = list(ZOO_VARIABLES)
    variables[3] = ("sequential/conv2d_1/kernel:0", (3, 3, 8, 16))
    write_layout(root, layout_rows(variables))
    with pytest.raises(
        ValueError,
        match=r"conv2d_1/kernel:0' \(3, 3, 8, 16\) takes 8 inputs, but the previous layer has 16 outputs",
    ):
        load_small_cnn_zoo(root)
    variables = list(ZOO_VARIABLES)
    variables[6] = ("sequential/dense/bias:0", (12,))
    write_layout(root, layout_rows(variables))
    with pytest.raises(
        ValueError, match=r"bias 'sequential/dense/bias:0' has shape \(12,\), expected \(10,\)"
    ):
        load_small_cnn_zoo(root)
    write_layout(root, layout_rows(ZOO_VARIABLES[:-1]))
    with pytest.raises(ValueError, match=r"layer 'sequential/dense' has only \['bias'\]"):
        load_small_cnn_zoo(root)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        (
            "shape",
            "[3, 3, 1, 16]",
            r"shape '\[3, 3, 1, 16\]' of 'sequential/conv2d/kernel:0' does not parse",
        ),
        ("shape", "(3, 3, 1, 16", r"does not parse; expected a tuple of positive ints"),
        ("shape", "__import__('os')", r"does not parse"),
        ("shape", "(3, 3, 1, 15)", r"spans columns 16:160 \(144 values\), expected 135"),
        ("start_idx", "16.0", r"column 'start_idx' is '16.0', expected a non-negative int"),
        (
            "varname",
            "sequential/conv2d/gamma:0",
            r"varname 'sequential/conv2d/gamma:0' is not a kernel or bias",
        ),
    ],
)
def test_layout_values_are_parsed_strictly(zoo_dir, column, value, message):
    root, _, _ = zoo_dir
    rows = layout_rows(ZOO_VARIABLES)
    rows[1][column] = value
    write_layout(root, rows)
    with pytest.raises(ValueError, match=r"layout\.csv' line 3: .*" + message):
        load_small_cnn_zoo(root)


def test_layout_missing_column(zoo_dir):
    root, _, _ = zoo_dir
    (root / "layout.csv").write_text("varname,start_idx,end_idx\nsequential/conv2d/bias:0,0,16\n")
    with pytest.raises(ValueError, match=r"layout\.csv': missing columns \['shape'\]"):
        load_small_cnn_zoo(root)
