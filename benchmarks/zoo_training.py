"""How far do a zoo's CNNs get from their initialisation? Accuracy per saved epoch.

A check behind RESULTS.md, not a speed benchmark. For a zoo of ``weightspace zoo`` this prints,
per saved epoch, the spread of test accuracy over the networks that did not diverge, and the
share of networks whose test accuracy still moved by more than ``--points`` percentage points
between ``--after`` and the last saved epoch (the issue 13 test of a zoo whose accuracy is not
set by its initialisation alone). ``--json`` writes the same figures to a file.

    python benchmarks/zoo_training.py --zoo runs/zoo-fmnist-faithful [--after 3] [--points 5]
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from weightspace.data.zoo import load_zoo


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", required=True, help="folder written by `weightspace zoo`")
    parser.add_argument("--after", type=int, default=3, help="the earlier saved epoch")
    parser.add_argument("--points", type=float, default=5.0, help="percentage points of accuracy")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    last = load_zoo(args.zoo)
    epochs = [int(e) for e in last.info["save_epochs"]]
    if args.after not in epochs:
        raise SystemExit(f"--after {args.after}: the zoo saved epochs {epochs}")
    accuracy = {
        e: np.array([float(r["test_accuracy"]) for r in load_zoo(args.zoo, epoch=e).metadata])
        for e in epochs
    }
    out: dict[str, Any] = {"zoo": args.zoo, "networks": len(last), "epochs": {}}
    print(f"{args.zoo}: {len(last)} networks, saved epochs {epochs}")
    print("| epoch | finite | min | 25 % | median | 75 % | max | mean |")
    print("|---|---|---|---|---|---|---|---|")
    for e in epochs:
        a = accuracy[e][np.isfinite(accuracy[e])]
        q = np.quantile(a, [0, 0.25, 0.5, 0.75, 1])
        out["epochs"][e] = {"finite": int(a.size), "quantiles": q.tolist(), "mean": float(a.mean())}
        cells = " | ".join(f"{v:.3f}" for v in (*q, a.mean()))
        print(f"| {e} | {a.size} | {cells} |")
    a, b = accuracy[args.after], accuracy[epochs[-1]]
    both = np.isfinite(a) & np.isfinite(b)
    moved = np.abs(b[both] - a[both]) > args.points / 100
    up = (b[both] - a[both]) > args.points / 100
    out["moved"] = {
        "after": args.after,
        "last": epochs[-1],
        "points": args.points,
        "networks": int(both.sum()),
        "share_moved": float(moved.mean()) if both.any() else math.nan,
        "share_improved": float(up.mean()) if both.any() else math.nan,
        "kendall_tau_after_vs_last": _tau(a[both], b[both]),
    }
    m = out["moved"]
    print(
        f"moved by more than {args.points:g} points between epoch {args.after} and "
        f"{epochs[-1]}: {m['share_moved']:.1%} of {m['networks']} (improved: "
        f"{m['share_improved']:.1%}); Kendall τ of the two accuracies: "
        f"{m['kendall_tau_after_vs_last']:.3f}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return out


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


if __name__ == "__main__":
    main()
