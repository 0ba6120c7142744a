"""Writers of the Small CNN Zoo's public files (``layout.csv``, ``metrics.csv.gz``), for the
tests that build fixtures in its exact format."""

from __future__ import annotations

import csv
import gzip
import io
import math
from pathlib import Path

# The zoo's variables as layout.csv lists them: TensorFlow shapes, each layer's bias before its
# kernel (Keras sorts a layer's variables by name).
ZOO_VARIABLES = [
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (16, 10)),
]
METRIC_COLUMNS = [
    "config.activation",
    "config.b_init",
    "config.dataset",
    "config.dnn_architecture",
    "config.dropout",
    "config.epochs",
    "config.epochs_between_checkpoints",
    "config.init_std",
    "config.l2reg",
    "config.learning_rate",
    "config.num_layers",
    "config.num_units",
    "config.optimizer",
    "config.random_seed",
    "config.train_fraction",
    "config.w_init",
    "modeldir",
    "step",
    "test_accuracy",
    "test_loss",
    "train_accuracy",
    "train_loss",
]


def layout_rows(variables):
    rows, start = [], 0
    for name, shape in variables:
        end = start + math.prod(shape)
        rows.append({"varname": name, "start_idx": start, "end_idx": end, "shape": str(shape)})
        start = end
    return rows


def write_layout(root: Path, rows, index_column: bool = True) -> None:
    # pandas' DataFrame.to_csv writes an unnamed index column first.
    with (root / "layout.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ([""] if index_column else []) + ["varname", "start_idx", "end_idx", "shape"]
        )
        for i, r in enumerate(rows):
            prefix = [i] if index_column else []
            writer.writerow(prefix + [r["varname"], r["start_idx"], r["end_idx"], r["shape"]])


def write_metrics(root: Path, rows, columns=METRIC_COLUMNS) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([r[c] for c in columns])
    (root / "metrics.csv.gz").write_bytes(gzip.compress(text.getvalue().encode()))
