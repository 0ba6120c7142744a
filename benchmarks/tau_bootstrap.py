"""Is one accuracy predictor really ahead of another? A paired bootstrap of test Kendall τ.

A check behind RESULTS.md, not a speed benchmark. Reads ``predictions.csv`` (columns
``actual,predicted``, one row per test network, as ``train generalization`` writes it) of two or
more runs scored on the same test networks. It prints each run's τ with its bootstrap standard
error, and for each run after the first its τ minus the first run's. The difference comes with
its standard error and a 95 % interval, over the same resampled networks for both runs.

A run given as ``RUN_1+RUN_2+...`` is the ensemble of those runs: the mean of their predicted
accuracies for each test network (e.g. the same model trained with several seeds).

    python benchmarks/tau_bootstrap.py RUN_A RUN_B [RUN_C ...] [--samples 2000] [--seed 0]
    python benchmarks/tau_bootstrap.py statnet-s0+statnet-s1+statnet-s2 hnp-s0+hnp-s1+hnp-s2
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import kendalltau


def read_predictions(run: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(actual, predicted)`` of a run folder, or of the ensemble ``RUN_1+RUN_2+...``: the mean
    prediction of its members, which must have been scored on the same test networks."""
    members = str(run).split("+")
    if len(members) > 1:
        parts = [_read_one(m) for m in members]
        actual = parts[0][0]
        for member, (a, _) in zip(members, parts):
            if not np.array_equal(a, actual):
                raise SystemExit(
                    f"ensemble {str(run)!r}: {member!r} was scored on other test networks than "
                    f"{members[0]!r}"
                )
        return actual, np.mean([p for _, p in parts], axis=0)
    return _read_one(run)


def _read_one(run: str | Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(run) / "predictions.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"actual", "predicted"} <= rows[0].keys():
        raise SystemExit(f"{str(path)!r}: expected columns 'actual,predicted' and some rows")
    actual = np.array([float(r["actual"]) for r in rows])
    return actual, np.array([float(r["predicted"]) for r in rows])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run folders with predictions.csv")
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if len(args.runs) < 2:
        raise SystemExit("give at least two runs to compare")
    data = [read_predictions(r) for r in args.runs]
    actual = data[0][0]
    for run, (a, _) in zip(args.runs, data):
        if a.shape != actual.shape or not np.array_equal(a, actual):
            raise SystemExit(
                f"{run!r} was scored on other test networks than {args.runs[0]!r}; a paired "
                "comparison needs the same ones in the same order"
            )
    rng = np.random.default_rng(args.seed)
    n = actual.size
    boot = np.empty((args.samples, len(data)))
    for s in range(args.samples):
        i = rng.integers(0, n, n)
        boot[s] = [kendalltau(actual[i], p[i]).statistic for _, p in data]
    taus = [float(kendalltau(actual, p).statistic) for _, p in data]
    out: dict[str, Any] = {"n_test": n, "runs": []}
    for k, run in enumerate(args.runs):
        entry = {"run": run, "tau": taus[k], "se": float(boot[:, k].std(ddof=1))}
        line = f"{run}: τ {taus[k]:.3f} ± {entry['se']:.3f}"
        if k:
            d = boot[:, k] - boot[:, 0]
            lo, hi = np.quantile(d, [0.025, 0.975])
            entry.update(
                diff=taus[k] - taus[0], diff_se=float(d.std(ddof=1)), ci=[float(lo), float(hi)]
            )
            line += (
                f"; minus the first: {entry['diff']:+.3f} ± {entry['diff_se']:.3f} "
                f"(95 %: {lo:+.3f} to {hi:+.3f})"
            )
        out["runs"].append(entry)
        print(line)
    print(f"{n} test networks, {args.samples} paired resamples")
    return out


if __name__ == "__main__":
    main()
