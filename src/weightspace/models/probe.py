"""Function-space models: read what the networks compute on learned probes, then an MLP.

- :class:`ProbeModel`: :class:`~weightspace.nn.ProbeFeatures` → MLP head. Invariant to every
  change of the weights that keeps the function.
- :class:`HybridModel`: the probe features and the pooled features of an invariant NFN
  (:class:`~weightspace.models.InvariantNFN` without its head) side by side, into one head:
  the function as the probes see it, and the weights as the NF-Layers see them.

Both take the *raw* weights: probes must run the networks as they are. The NFN branch of the
hybrid standardises its own input (per-tensor shift and scale, :meth:`HybridModel.set_statistics`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from weightspace.models.nfn import InvariantNFN, MLPHead, _encode, _num_params
from weightspace.models.standardize import Standardized
from weightspace.nn.probe import ProbeFeatures
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

__all__ = ["HybridModel", "ProbeModel"]

ActivationLike = str | Callable[[Tensor], Tensor]


class _EncodeThenPool(nn.Sequential):
    """``pool(encoder(x))`` through :func:`~weightspace.models.nfn._encode` (the IO encoding as
    constant channels, channel dropout folded into the layers): the same values as the plain
    chain. A ``Sequential`` of the two, so state-dict keys are those of earlier checkpoints."""

    def __init__(self, encoder: nn.Sequential, pool: nn.Module) -> None:
        super().__init__(encoder, pool)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        return self[1](_encode(self[0], x))


class ProbeModel(nn.Module):
    """Probe outputs → MLP head (ProbeGen's classifier and regressor).

    Parameters
    ----------
    spec:
        The weight space.
    head_hidden, out_features, dropout:
        The :class:`~weightspace.models.MLPHead` on the probe outputs.
    **probe:
        Options of :class:`~weightspace.nn.ProbeFeatures` (``num_probes``, ``activation``,
        ``generator``, ``input_shape``, …).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel (raw weights)
    - output: ``(B, out_features)``
    """

    def __init__(
        self,
        spec: NetworkSpec,
        head_hidden: Sequence[int] = (256,),
        out_features: int = 1,
        dropout: float = 0.0,
        **probe: Any,
    ) -> None:
        super().__init__()
        self.spec, self.out_features = spec, out_features
        self.probe = ProbeFeatures(spec, **probe)
        self.head = MLPHead(self.probe.output_size, tuple(head_hidden), out_features, dropout)

    def forward(
        self,
        x: WeightSpaceFeatures,
        activation: ActivationLike | Sequence[ActivationLike] | None = None,
    ) -> Tensor:
        return self.head(self.probe(x, activation))

    def extra_repr(self) -> str:
        return f"out_features={self.out_features}, params={_num_params(self)}"


class HybridModel(nn.Module):
    """[probe features ‖ pooled NFN features] → MLP head.

    Parameters
    ----------
    spec:
        The weight space.
    mode, hidden_channels, io_encoding, fourier_features, fourier_scale, channel_dropout, pool:
        The NFN branch: an :class:`~weightspace.models.InvariantNFN`'s encoder and pool (its
        head is not used).
    head_hidden, out_features, dropout:
        The shared :class:`~weightspace.models.MLPHead`.
    **probe:
        Options of :class:`~weightspace.nn.ProbeFeatures`.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel (raw weights)
    - output: ``(B, out_features)``
    """

    def __init__(
        self,
        spec: NetworkSpec,
        mode: str = "np",
        hidden_channels: Sequence[int] = (32, 32, 32),
        head_hidden: Sequence[int] = (256,),
        out_features: int = 1,
        dropout: float = 0.0,
        *,
        io_encoding: str | None = "auto",
        fourier_features: int | None = None,
        fourier_scale: float = 10.0,
        channel_dropout: float = 0.0,
        pool: str = "mean",
        **probe: Any,
    ) -> None:
        super().__init__()
        self.spec, self.out_features = spec, out_features
        self.probe = ProbeFeatures(spec, **probe)
        nfn = InvariantNFN(
            spec,
            mode,  # type: ignore[arg-type]
            tuple(hidden_channels),
            head_hidden=(),
            io_encoding=io_encoding,  # type: ignore[arg-type]
            fourier_features=fourier_features,
            fourier_scale=fourier_scale,
            channel_dropout=channel_dropout,
            pool=pool,
        )
        self.nfn = Standardized(_EncodeThenPool(nfn.encoder, nfn.pool), spec)
        width = self.probe.output_size + nfn.pool.output_size(hidden_channels[-1])
        self.head = MLPHead(width, tuple(head_hidden), out_features, dropout)

    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        """Standardise the NFN branch's input by each tensor's mean and standard deviation
        over ``features`` (the training split; :meth:`Standardized.set_statistics`)."""
        self.nfn.set_statistics(features)

    def forward(
        self,
        x: WeightSpaceFeatures,
        activation: ActivationLike | Sequence[ActivationLike] | None = None,
    ) -> Tensor:
        return self.head(torch.cat([self.probe(x, activation), self.nfn(x)], dim=1))

    def extra_repr(self) -> str:
        return f"out_features={self.out_features}, params={_num_params(self)}"
