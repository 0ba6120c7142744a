"""Gather finished runs into one table and plot: the test metric against the training size.

:func:`learning_curve` reads ``RUN/metrics.json`` and ``RUN/config.json`` of each run (any task),
groups the runs by model, and writes::

    OUT/learning_curve.csv   model, n_train, seed, the metric, run
    OUT/learning_curve.md    one row per model, one column per training size (mean over seeds)
    OUT/learning_curve.png   the metric against the number of training networks, per model

For INR-editing runs it also writes ``OUT/edits.png``: each run's ``edits.safetensors``
(original render / target / edited render of its first test INRs) as one column block per run.

``weightspace report --runs RUN [RUN ...] --out OUT`` calls it.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from weightspace import viz
from weightspace.io import read_json, write_text
from weightspace.tasks.runner import METRICS_JSON, read_task, write_csv

__all__ = ["learning_curve"]

#: The test metric of each task's ``metrics.json``, by the task's name in ``config.json``.
TEST_METRICS = {
    "inr-classification": "test_accuracy",
    "generalization": "kendall_tau",
    "inr-editing": "test_mse",
    "tickets": "mask_test_accuracy",
}


def _read(run: Path) -> dict[str, Any]:
    task = read_task(run)
    if task is None:
        raise ValueError(f"{str(run)!r} is not a training run: config.json is missing")
    path = run / METRICS_JSON
    if not path.is_file():
        raise ValueError(f"{str(run)!r} has not finished: {METRICS_JSON} is missing")
    metrics = read_json(path)
    name = task.get("task")
    key = TEST_METRICS.get(str(name))
    if key is None or key not in metrics:
        raise ValueError(f"{path}: no test metric for task {name!r} (known: {TEST_METRICS})")
    for field in ("model", "n_train"):
        if field not in metrics:
            raise ValueError(f"{path}: lacks {field!r}")
    return {
        "task": name,
        "metric": key,
        "model": str(metrics["model"]),
        "n_train": int(metrics["n_train"]),
        "seed": metrics.get("seed"),
        "value": float(metrics[key]),
        "run": str(run),
    }


def learning_curve(
    runs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *, title: str = ""
) -> list[dict[str, Any]]:
    """Collect ``runs`` (of one task) and write the table, CSV and plot into ``out``.

    Returns one dict per run (model, n_train, seed, value, run), sorted by model and size.
    Raises ``ValueError`` for a folder that is not a finished run, or runs of several tasks.
    """
    rows = sorted((_read(Path(r)) for r in runs), key=lambda r: (r["model"], r["n_train"]))
    if not rows:
        raise ValueError("learning_curve: no runs given")
    tasks = {r["task"] for r in rows}
    if len(tasks) > 1:
        raise ValueError(f"learning_curve: runs of several tasks {sorted(tasks)}; give one task's")
    metric = rows[0]["metric"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = ["model", "n_train", "seed", metric, "run"]
    write_csv(
        header,
        ([r[k if k != metric else "value"] for k in header] for r in rows),
        out / "learning_curve.csv",
    )
    means: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        means[r["model"]][r["n_train"]].append(r["value"])
    sizes = sorted({r["n_train"] for r in rows})
    lines = [
        f"| model | {' | '.join(str(n) for n in sizes)} |",
        f"|---|{'---|' * len(sizes)}",
    ]
    for model, by_size in means.items():
        cells = [_cell(by_size.get(n, [])) for n in sizes]
        lines.append(f"| {model} | {' | '.join(cells)} |")
    note = f"{metric} (mean over seeds; n = seeds) against the number of training networks."
    write_text("\n".join([note, "", *lines, ""]), out / "learning_curve.md")
    curves = {
        m: ([n for n in sorted(s)], [sum(v) / len(v) for _, v in sorted(s.items())])
        for m, s in means.items()
    }
    viz.curves(
        curves,
        out / "learning_curve.png",
        title=title,
        xlabel="training networks",
        ylabel=metric.replace("_", " "),
    )
    if rows[0]["task"] == "inr-editing":
        edit_gallery(rows, out / "edits.png", title=title)
    return rows


def edit_gallery(rows: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """``edits.png`` of INR-editing runs: one block of columns per run, titled with its model,
    seed and test MSE."""
    from safetensors.torch import load_file

    from weightspace.tasks.inr_editing import ROW_NAMES, ROWS

    blocks = []
    for r in rows:
        file = Path(r["run"]) / "edits.safetensors"
        if not file.is_file():
            raise ValueError(f"{str(file)!r} is missing: re-run the INR-editing run to write it")
        images = load_file(file)
        missing = [k for k in ROWS if k not in images]
        if missing:
            raise ValueError(f"{str(file)!r} lacks the images {missing}")
        name = f"{r['model']} s{r['seed']}: {r['value']:.4f}"
        blocks.append((name, [images[k] for k in ROWS]))
    return viz.image_blocks(blocks, ROW_NAMES, path, title=title or "test MSE per run")


def _cell(values: list[float]) -> str:
    if not values:
        return ""
    mean = sum(values) / len(values)
    text = f"{mean:.3f}" if not math.isnan(mean) else "nan"
    return text if len(values) == 1 else f"{text} (n={len(values)})"
