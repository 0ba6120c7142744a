"""Per-tensor standardisation in front of a weight-space model.

:class:`Standardized` divides each weight and bias tensor by one scalar scale after subtracting
one scalar shift, both measured on the training split. A scalar per tensor commutes with every
neuron permutation, so the wrapped model's symmetry is untouched; SIREN layers, for one, differ
in scale by an order of magnitude.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec

__all__ = ["Standardized"]


class Standardized(nn.Module):
    """``net`` applied to per-tensor standardised weights: tensor t becomes
    ``(t - shift) / scale``.

    ``shift`` and ``scale`` are ``(2L,)`` buffers in ``spec.tensors`` order (W_1..W_L,
    b_1..b_L), the identity until :meth:`set_statistics`.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: whatever ``net`` returns
    """

    def __init__(self, net: nn.Module, spec: NetworkSpec) -> None:
        super().__init__()
        self.net, self.spec = net, spec
        self.register_buffer("shift", torch.zeros(len(spec.tensors)))
        self.register_buffer("scale", torch.ones(len(spec.tensors)))

    @torch.no_grad()
    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        """Each tensor's mean and standard deviation over all networks and entries (in float64;
        a constant tensor keeps scale 1)."""
        check_features(features, self.spec, 1, f"{type(self).__name__}.set_statistics")
        std, mean = zip(*(torch.std_mean(t.double(), correction=0) for t in features.tensors))
        std = torch.stack(std)
        self.shift.copy_(torch.stack(mean))
        self.scale.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))

    def forward(self, x: WeightSpaceFeatures) -> Any:
        check_features(x, self.spec, 1, type(self).__name__)
        shift, scale = self.shift.to(x.dtype), self.scale.to(x.dtype)
        tensors = [(t - shift[k]) / scale[k] for k, t in enumerate(x.tensors)]
        return self.net(WeightSpaceFeatures.from_tensors(tensors, self.spec))
