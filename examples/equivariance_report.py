"""Worst equivariance / invariance error of every layer and model over random weight spaces.

Uses the public test kit (:mod:`weightspace.testing`) in float64: random MLP and CNN specs
(L = 1..6, widths 1..9, half of them CNNs with 1-3-D kernels of size 1..5), channels 1..4.
The test suite asserts a bound of 1e-9 over hypothesis-drawn specs; this prints the numbers.

    python examples/equivariance_report.py [--specs 40] [--seed 0]
"""

from __future__ import annotations

import argparse
import random

import torch
from torch import nn

from weightspace import NetworkSpec
from weightspace.models import EquivariantNFN, InvariantNFN
from weightspace.nn import HNPLinear, NPLinear, PointwiseLinear
from weightspace.testing import equivariance_errors, invariance_error


def random_spec(rng: random.Random) -> NetworkSpec:
    L = rng.randint(1, 6)
    widths = tuple(rng.randint(1, 9) for _ in range(L + 1))
    if L >= 2 and rng.random() < 0.5:
        d = rng.randint(1, 3)
        kernels = tuple(tuple(rng.randint(1, 5) for _ in range(d)) for _ in range(L - 1))
        return NetworkSpec(widths, (*kernels, ()))
    return NetworkSpec(widths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--specs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    worst: dict[str, float] = {}
    for _ in range(args.specs):
        s = random_spec(rng)
        c_in, c_out = rng.randint(1, 4), rng.randint(1, 4)
        equivariant: dict[str, tuple[nn.Module, str]] = {
            "NPLinear (NP group)": (NPLinear(s, c_in, c_out), "np"),
            "HNPLinear": (HNPLinear(s, c_in, c_out), "hnp"),
            "NPLinear + fused ReLU (NP group)": (NPLinear(s, c_in, c_out, activation="relu"), "np"),
            "HNPLinear + fused ReLU": (HNPLinear(s, c_in, c_out, activation="relu"), "hnp"),
            "PointwiseLinear": (PointwiseLinear(s, c_in, c_out), "hnp"),
            "EquivariantNFN hnp": (EquivariantNFN(s, "hnp", (3, 3), in_channels=c_in), "hnp"),
            "EquivariantNFN np + IO encoding": (
                EquivariantNFN(s, "np", (3, 3), in_channels=c_in),
                "hnp",
            ),
        }
        for name, (module, mode) in equivariant.items():
            err = max(equivariance_errors(module, s, mode, in_channels=c_in).values())
            worst[name] = max(worst.get(name, 0.0), err)
        invariant = {
            "InvariantNFN hnp": InvariantNFN(s, "hnp", (3, 3), (8,), 2, in_channels=c_in),
            "InvariantNFN np + IO encoding": InvariantNFN(
                s, "np", (3, 3), (8,), 2, in_channels=c_in
            ),
        }
        for name, module in invariant.items():
            err = invariance_error(module, s, "hnp", in_channels=c_in)
            worst[name] = max(worst.get(name, 0.0), err)
    print(f"worst relative error over {args.specs} random specs (seed {args.seed}), float64:")
    for name, err in worst.items():
        print(f"  {name}: {err:.2e}")


if __name__ == "__main__":
    main()
