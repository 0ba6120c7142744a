"""Additive edits of networks in weight space: ``U' = U + γ ⊙ NFN(U)`` (the paper's INR editing).

:class:`WeightEdit` wraps a model that maps weights to a delta of the same shape (an
:class:`~weightspace.models.EquivariantNFN`, or :class:`FlatDelta` around an MLP) and adds the
delta, scaled by one learned scalar per weight and per bias tensor. Each tensor's delta is also
measured in that tensor's standard deviation over the training split, so that ``γ``'s one
initial value (0.01) means the same small step for every layer; inputs are standardised the
same way (:class:`~weightspace.models.Standardized`). Scalars per tensor commute with every
neuron permutation, so the edit is as equivariant as the delta model.
"""

from __future__ import annotations

import torch
from torch import nn

from weightspace.models.baselines import FlatMLP
from weightspace.models.standardize import Standardized
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec

__all__ = ["FlatDelta", "WeightEdit"]


class FlatDelta(nn.Module):
    """An MLP from the flattened weights to a flattened delta, reshaped back into features.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: the same shapes
    """

    def __init__(self, spec: NetworkSpec, hidden: tuple[int, ...] = (1000, 1000, 1000)) -> None:
        super().__init__()
        self.spec = spec
        self.mlp = FlatMLP(spec, 1, hidden, spec.num_params)

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return WeightSpaceFeatures.from_flat(self.mlp(x), self.spec)


class WeightEdit(nn.Module):
    """``U + γ ⊙ σ ⊙ delta((U - μ) / σ)``, with ``γ`` learned per tensor.

    Parameters
    ----------
    delta:
        Maps 1-channel features on ``spec`` to 1-channel features on ``spec``.
    spec:
        The weight space.
    gamma_init:
        The initial ``γ`` of every tensor; small, so that training starts near the identity.

    Attributes
    ----------
    gamma:
        ``(2L,)`` parameter in ``spec.tensors`` order (W_1..W_L, b_1..b_L).
    standardize:
        The :class:`~weightspace.models.Standardized` around ``delta``; its ``shift`` (μ) and
        ``scale`` (σ) are the identity until :meth:`set_statistics`.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: the same shapes
    """

    def __init__(self, delta: nn.Module, spec: NetworkSpec, gamma_init: float = 0.01) -> None:
        super().__init__()
        self.spec = spec
        self.standardize = Standardized(delta, spec)
        self.gamma = nn.Parameter(torch.full((len(spec.tensors),), float(gamma_init)))

    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        """Measure μ and σ of each tensor on ``features`` (the training split)."""
        self.standardize.set_statistics(features)

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(x, self.spec, 1, type(self).__name__)
        delta = self.standardize(x)
        check_features(delta, self.spec, 1, f"{type(self).__name__}: the delta model's output")
        step = self.gamma.to(x.dtype) * self.standardize.scale.to(x.dtype)
        tensors = [t + step[k] * d for k, (t, d) in enumerate(zip(x.tensors, delta.tensors))]
        return WeightSpaceFeatures.from_tensors(tensors, self.spec)
