"""Invariant pools: weight-space features → one vector per network.

:class:`NPPool` and :class:`HNPPool` average each tensor over its permuted neuron axes;
:class:`StatsPool` reports more of the same entries' distribution (mean, standard deviation and
quantiles), so that an NFN can compute what the StatNN baseline computes, and more.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.layout import SpaceLayout
from weightspace.space.spec import Mode, NetworkSpec


class _InvariantPool(nn.Module):
    def __init__(self, spec: NetworkSpec, mode: Mode) -> None:
        super().__init__()
        self.spec, self.mode = spec, mode
        self.layout = SpaceLayout(spec, mode)

    def output_size(self, channels: int) -> int:
        """Width of the pooled vector for features with ``channels`` channels."""
        return self.spec.pool_size(self.mode, channels)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        if not isinstance(x, WeightSpaceFeatures):
            raise TypeError(
                f"{type(self).__name__}: expected WeightSpaceFeatures, got {type(x).__name__}"
            )
        if x.spec != self.spec:
            raise ValueError(
                f"{type(self).__name__}: built for {self.spec}, got features on {x.spec}"
            )
        parts = []
        for lay, value in zip(self.layout.tensors, x.tensors):
            xc = lay.to_canonical(value)
            dims = tuple(range(2, xc.ndim))
            # A sum then a scaling of the small result, not mean(): mean's backward writes a
            # full-size gradient, sum's is a broadcast view.
            parts.append(xc.sum(dims) * (1.0 / xc.shape[2:].numel()) if dims else xc)
        return torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        return f"widths={self.spec.widths}, output_size=C*{self.output_size(1)}"


class NPPool(_InvariantPool):
    """NP-invariant pool: the mean of each W_i and b_i over its neuron axes.

    Kernel positions stay as channels.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with C channels
    - output: ``(B, output_size(C))`` = ``(B, C * Σ_i (k_i + 1))``
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__(spec, "np")


class HNPPool(_InvariantPool):
    """HNP-invariant pool: means over hidden-neuron axes only.

    Keeps W_1's per-input means, W_L's per-output means and b_L in full (kernel positions as
    channels).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with C channels
    - output: ``(B, output_size(C))``
    """

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__(spec, "hnp")


#: The quantiles :class:`StatsPool` reports after the mean and the standard deviation.
STATS_QUANTILES: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
NUM_POOL_STATISTICS = 2 + len(STATS_QUANTILES)


class StatsPool(nn.Module):
    """Invariant statistics pool: per tensor, channel and fixed position, the mean, standard
    deviation and 0/25/50/75/100 % quantiles of the entries over the permuted neuron axes.

    Under ``"np"`` every neuron axis is pooled (as :class:`NPPool`); under ``"hnp"`` hidden ones
    only (as :class:`HNPPool`: W_1 keeps its inputs, W_L and b_L their outputs). A tensor with
    no permuted axis (b_L under HNP) is passed through once, not seven times. Order statistics
    and moments ignore the order of the pooled entries, so the result is invariant; the mean
    alone is :class:`NPPool` / :class:`HNPPool`.

    The standard deviation is the population one, ``sqrt(var + eps)`` so that its gradient is
    finite on constant entries; quantiles interpolate linearly (``numpy.quantile``'s default)
    and are differentiable almost everywhere, through a sort.

    Parameters
    ----------
    spec:
        The weight space of the input features.
    mode:
        ``"np"`` or ``"hnp"``: which neuron axes are pooled.
    eps:
        Added to the variance under the square root.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with C channels
    - output: ``(B, output_size(C))``; per tensor (W_1..W_L, b_1..b_L), per canonical row
      (channel × fixed position), the 7 statistics in the order mean, std, quantiles
    """

    def __init__(self, spec: NetworkSpec, mode: Mode = "hnp", eps: float = 1e-8) -> None:
        super().__init__()
        self.spec, self.mode, self.eps = spec, mode, eps
        self.layout = SpaceLayout(spec, mode)
        self.register_buffer(
            "quantiles", torch.tensor(STATS_QUANTILES, dtype=torch.float64), persistent=False
        )

    def output_size(self, channels: int) -> int:
        """Width of the pooled vector for features with ``channels`` channels."""
        total = 0
        for lay in self.layout.tensors:
            stats = NUM_POOL_STATISTICS if lay.permuted_shape else 1
            total += stats * channels * lay.fixed
        return total

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        if not isinstance(x, WeightSpaceFeatures):
            raise TypeError(f"StatsPool: expected WeightSpaceFeatures, got {type(x).__name__}")
        if x.spec != self.spec:
            raise ValueError(f"StatsPool: built for {self.spec}, got features on {x.spec}")
        parts = []
        for lay, value in zip(self.layout.tensors, x.tensors):
            xc = lay.to_canonical(value)
            if xc.ndim == 2:  # no permuted axis: nothing to pool
                parts.append(xc)
                continue
            flat = xc.flatten(2)  # (B, D, P)
            var, mean = torch.var_mean(flat, dim=2, correction=0)
            std = (var + self.eps).sqrt()
            q = sorted_quantiles(flat.sort(dim=2).values, self.quantiles.to(flat.dtype))
            stats = torch.cat([mean[..., None], std[..., None], q], dim=2)  # (B, D, 7)
            parts.append(stats.flatten(1))
        return torch.cat(parts, dim=1)

    def extra_repr(self) -> str:
        return f"widths={self.spec.widths}, mode={self.mode!r}, output_size=C*{self.output_size(1)}"


def sorted_quantiles(ordered: Tensor, q: Tensor) -> Tensor:
    """Linearly interpolated quantiles ``q`` (as ``numpy.quantile``) along the last axis of an
    already sorted tensor: ``(..., N) → (..., Q)``."""
    n = ordered.shape[-1]
    pos = q * (n - 1)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = pos - lo.to(pos.dtype)
    return torch.lerp(ordered[..., lo], ordered[..., hi], frac)
