"""How hard is each block of a dataset? Logistic regression on pixels, scored block by block.

A check behind RESULTS.md, not a speed benchmark: a classifier's validation accuracy can sit
well above its test accuracy when the validation images are easier than average. This fits
scikit-learn's logistic regression on the first ``--train`` training images and scores the next
``--val`` (the INR sets' validation split), every later block of ``--block`` training images, and
the test set in blocks.

    python benchmarks/split_difficulty.py --dataset fashion-mnist [--train 4500] [--val 500]
        [--block 5000] [--C 0.1]
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from weightspace.data.images import load_images


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--train", type=int, default=4500, help="training images to fit on")
    parser.add_argument("--val", type=int, default=500, help="the validation block after them")
    parser.add_argument("--block", type=int, default=5000, help="size of every other block")
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength")
    args = parser.parse_args(argv)

    images = load_images(args.dataset)
    x = images.train_x.reshape(len(images.train_x), -1).numpy()
    y = images.train_y.numpy()
    xt = images.test_x.reshape(len(images.test_x), -1).numpy()
    yt = images.test_y.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=200, C=args.C).fit(x[: args.train], y[: args.train])
    end = args.train + args.val
    scores = {f"val {args.train}-{end - 1}": clf.score(x[args.train : end], y[args.train : end])}
    for a in range(end, len(x), args.block):
        b = min(a + args.block, len(x))
        scores[f"train {a}-{b - 1}"] = clf.score(x[a:b], y[a:b])
    for a in range(0, len(xt), args.block):
        b = min(a + args.block, len(xt))
        scores[f"test {a}-{b - 1}"] = clf.score(xt[a:b], yt[a:b])
    others = [v for k, v in scores.items() if k.startswith("train")]
    for key, value in scores.items():
        print(f"{key:>20}: {100 * value:.1f} %")
    if others:
        print(f"{'other train blocks':>20}: {100 * min(others):.1f}–{100 * max(others):.1f} %")
        print(f"{'their mean':>20}: {100 * float(np.mean(others)):.1f} %")
    return scores


if __name__ == "__main__":
    main()
