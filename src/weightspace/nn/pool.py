"""Invariant pools: weight-space features → one vector per network."""

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
