"""Baselines that ignore the weight-space structure, or keep only its permutation statistics.

- :class:`StatNet` (the paper's StatNN, Unterthiner et al. 2020): an MLP on per-tensor
  statistics. Statistics of a tensor's entries do not depend on their order, so it is invariant
  to every neuron permutation, but it sees nothing of how entries connect.
- :class:`FlatMLP`: an MLP on the flattened weights. It sees everything, and no symmetry.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from weightspace.models.nfn import MLPHead, _num_params
from weightspace.nn.pool import STATS_QUANTILES, sorted_quantiles
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec

#: The quantiles :func:`tensor_statistics` reports, after mean and variance (the statistics
#: pool's: :data:`~weightspace.nn.pool.STATS_QUANTILES`).
QUANTILES: tuple[float, ...] = STATS_QUANTILES
NUM_STATISTICS = 2 + len(QUANTILES)

# torch.quantile refuses inputs with more entries than this.
_QUANTILE_MAX_NUMEL = 2**24


def _quantiles(flat: Tensor, q: Tensor) -> Tensor:
    """Linearly interpolated quantiles of each row (as ``numpy.quantile``): ``(R, N) → (R, Q)``."""
    n = flat.shape[1]
    if n > _QUANTILE_MAX_NUMEL:
        # A single row too large for torch.quantile: the same interpolation from a full sort.
        return sorted_quantiles(flat.sort(dim=1).values, q)
    chunk = max(1, _QUANTILE_MAX_NUMEL // n)
    return torch.cat([torch.quantile(part, q, dim=1).T for part in flat.split(chunk)])


def tensor_statistics(features: WeightSpaceFeatures) -> Tensor:
    """Per tensor and channel: mean, variance and the 0/25/50/75/100 % quantiles of its entries.

    The variance is the population variance (``ddof = 0``); quantiles interpolate linearly, as
    ``numpy.quantile`` does by default. Every statistic ignores the order of the entries, so the
    result is invariant to every neuron permutation.

    Parameters
    ----------
    features:
        Weight-space features with C channels.

    Returns
    -------
    ``(B, 7 · 2L · C)``, ordered by tensor (W_1..W_L, then b_1..b_L), then channel, then
    statistic (mean, variance, quantiles in :data:`QUANTILES` order).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with W_i ``(B, C, n_i, n_{i-1}, *kernel_i)``,
      b_i ``(B, C, n_i)``
    - output: ``(B, 7 · 2L · C)``
    """
    q = torch.tensor(QUANTILES, dtype=features.dtype, device=features.device)
    B, C = features.batch_size, features.channels
    parts = []
    for t in features.tensors:
        flat = t.reshape(B * C, -1)
        var, mean = torch.var_mean(flat, dim=1, correction=0)
        stats = torch.cat([mean[:, None], var[:, None], _quantiles(flat, q)], dim=1)
        parts.append(stats.reshape(B, C * NUM_STATISTICS))
    return torch.cat(parts, dim=1)


class StatNet(nn.Module):
    """StatNN: an MLP on per-tensor statistics (:func:`tensor_statistics`).

    Invariant to every neuron permutation (NP and HNP), because the statistics are.

    Parameters
    ----------
    spec:
        The weight space of the input networks.
    in_channels:
        Channels of the input features.
    head_hidden:
        Hidden widths of the MLP.
    out_features:
        Output width.
    dropout:
        Dropout in the MLP.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with ``in_channels`` channels
    - output: ``(B, out_features)``
    """

    def __init__(
        self,
        spec: NetworkSpec,
        in_channels: int = 1,
        head_hidden: Sequence[int] = (1000,),
        out_features: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.spec, self.in_channels, self.out_features = spec, in_channels, out_features
        num_stats = NUM_STATISTICS * 2 * spec.num_layers * in_channels
        self.head = MLPHead(num_stats, head_hidden, out_features, dropout)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        check_features(x, self.spec, self.in_channels, type(self).__name__)
        return self.head(tensor_statistics(x))

    def extra_repr(self) -> str:
        return (
            f"spec={self.spec}, in_channels={self.in_channels}, "
            f"out_features={self.out_features}, params={_num_params(self)}"
        )


class FlatMLP(nn.Module):
    """An MLP on the flattened weights (:meth:`WeightSpaceFeatures.flatten`); no symmetry.

    Parameters
    ----------
    spec:
        The weight space of the input networks.
    in_channels:
        Channels of the input features.
    head_hidden:
        Hidden widths of the MLP.
    out_features:
        Output width.
    dropout:
        Dropout in the MLP.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with ``in_channels`` channels
    - output: ``(B, out_features)``
    """

    def __init__(
        self,
        spec: NetworkSpec,
        in_channels: int = 1,
        head_hidden: Sequence[int] = (1000,),
        out_features: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.spec, self.in_channels, self.out_features = spec, in_channels, out_features
        self.head = MLPHead(in_channels * spec.num_params, head_hidden, out_features, dropout)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        check_features(x, self.spec, self.in_channels, type(self).__name__)
        return self.head(x.flatten())

    def extra_repr(self) -> str:
        return (
            f"spec={self.spec}, in_channels={self.in_channels}, "
            f"out_features={self.out_features}, params={_num_params(self)}"
        )
