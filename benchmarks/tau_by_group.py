"""Where does a generalization predictor err? Kendall τ and MAE per hyperparameter group.

A check behind RESULTS.md, not a speed benchmark. For runs of ``weightspace train
generalization`` scored on one zoo's test split, it splits the test networks by each of
``--by`` (hyperparameters the zoo records per network: activation, optimizer, train fraction,
init family...) and prints, for every run, τ and the mean absolute error inside each group. Two
predictors with the same overall τ can fail in different places; one that trails everywhere
lacks something, one that trails in a single group misreads those networks.

A run given as ``RUN_1+RUN_2+...`` is the ensemble of those runs, as in ``tau_bootstrap.py``.
The runs' ``predictions.csv`` must list the zoo's test networks in the zoo's order; the script
checks that the actual accuracies match the zoo's, and refuses otherwise.

    python benchmarks/tau_by_group.py --zoo ZOO RUN_A [RUN_B ...]
        [--by activation,optimizer,train_fraction,init] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau
from tau_bootstrap import read_predictions

from weightspace.tasks.sources import load_any_zoo

DEFAULT_BY = "activation,optimizer,train_fraction,init"


def groups(zoo: str | Path, by: Sequence[str]) -> tuple[np.ndarray, dict[str, list[Any]]]:
    """The test accuracies of the networks a run is scored on (the zoo's test split, diverged
    networks dropped as ``train generalization`` drops them) and, for each name in ``by``, their
    values."""
    test = load_any_zoo(zoo).finite()[0].part("test")
    rows = test.metadata
    missing = [name for name in by if any(name not in r for r in rows)]
    if missing:
        known = sorted(rows[0]) if rows else []
        raise SystemExit(f"zoo {str(zoo)!r} records no {missing} per network; it has {known}")
    actual = test.test_accuracy.double().numpy()
    return actual, {name: [r[name] for r in rows] for name in by}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders with predictions.csv")
    parser.add_argument("--zoo", required=True, help="the zoo the runs were scored on")
    parser.add_argument("--by", default=DEFAULT_BY, help="comma-separated per-network fields")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    by = [b for b in args.by.split(",") if b]
    actual, values = groups(args.zoo, by)
    predictions = {}
    for run in args.runs:
        a, p = read_predictions(run)
        if a.shape != actual.shape or not np.allclose(a, actual, atol=1e-6):
            raise SystemExit(
                f"{run!r}: its predictions.csv does not list the test networks of "
                f"{args.zoo!r} in the zoo's order (scored on another zoo or split?)"
            )
        predictions[run] = p
    out: dict[str, Any] = {"n_test": int(actual.size), "groups": []}
    header = "| field | value | n | " + " | ".join(f"{r} τ / MAE" for r in args.runs) + " |"
    print(header + "\n|" + "---|" * (3 + len(args.runs)))
    rows = [("all", "all", np.ones(actual.size, bool))]
    for name in by:
        for value in sorted({str(v) for v in values[name]}):
            rows.append((name, value, np.array([str(v) == value for v in values[name]])))
    for name, value, mask in rows:
        entry: dict[str, Any] = {"field": name, "value": value, "n": int(mask.sum()), "runs": {}}
        cells = []
        for run, p in predictions.items():
            tau = float(kendalltau(actual[mask], p[mask]).statistic) if mask.sum() > 1 else None
            mae = float(np.abs(actual[mask] - p[mask]).mean())
            entry["runs"][run] = {"tau": tau, "mae": mae}
            cells.append(f"{'—' if tau is None else f'{tau:.3f}'} / {mae:.3f}")
        out["groups"].append(entry)
        print(f"| {name} | {value} | {entry['n']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
