"""Small reference networks (``nn.Module``s) that tests compare weight-space code against."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from torch import nn

from weightspace import WeightSpaceFeatures

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}


def mlp(widths: tuple[int, ...], act: Callable[[], nn.Module], bias: bool = True) -> nn.Sequential:
    """Linear layers of ``widths`` with ``act()`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(widths)):
        if i:
            layers.append(act())
        layers.append(nn.Linear(n_in, n_out, bias=bias))
    return nn.Sequential(*layers)


def cnn(dim: int, stride: int | tuple[int, ...] = 2, padding: int | tuple[int, ...] = 1):
    """A ``dim``-D CNN (2 → 4 → 5 channels, 3-wide kernels), global pooling, dense 5 → 6 → 3."""
    conv = _CONV[dim]
    return nn.Sequential(
        conv(2, 4, 3, stride=stride, padding=padding),
        nn.ReLU(),
        conv(4, 5, 3, stride=stride, padding=padding),
        nn.ReLU(),
        _POOL[dim](1),
        nn.Flatten(),
        nn.Linear(5, 6),
        nn.ReLU(),
        nn.Linear(6, 3),
    )


def stacked(
    make: Callable[[], nn.Module], n: int = 3
) -> tuple[list[nn.Module], WeightSpaceFeatures]:
    """``n`` float64 modules from ``make`` and their weights as one batch of features."""
    modules = [make().double() for _ in range(n)]
    return modules, WeightSpaceFeatures.from_modules(modules)
