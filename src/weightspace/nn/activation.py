"""Entrywise operations on weight-space features: activations, channel dropout, normalisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from weightspace.nn._terms import _by_channel
from weightspace.space.features import WeightSpaceFeatures

_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "gelu": nn.functional.gelu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "silu": nn.functional.silu,
    "sin": torch.sin,
    "identity": lambda t: t,
}


def get_activation(activation: str | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Look up an entrywise function by name, or pass a callable through."""
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(
            f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)} or a callable"
        )
    return _ACTIVATIONS[activation]


class Activation(nn.Module):
    """An entrywise nonlinearity applied to every tensor (equivariant to any permutation).

    Shapes
    ------
    - input and output: :class:`WeightSpaceFeatures`, unchanged shapes
    """

    def __init__(self, activation: str | Callable[[Tensor], Tensor] = "relu") -> None:
        super().__init__()
        self.name = (
            activation if isinstance(activation, str) else getattr(activation, "__name__", "custom")
        )
        self.fn = get_activation(activation)

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        return x.map(self.fn)

    def extra_repr(self) -> str:
        return self.name


class ChannelDropout(nn.Module):
    """Drop whole channels of each network (the same channels in every tensor), in training.

    Because the mask depends only on (network, channel), it commutes with any neuron permutation.

    Shapes
    ------
    - input and output: :class:`WeightSpaceFeatures`, unchanged shapes
    """

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"ChannelDropout: p must be in [0, 1), got {p}")
        self.p = p

    def draw_scale(
        self, batch: int, channels: int, device: torch.device | str, dtype: torch.dtype
    ) -> Tensor | None:
        """This step's factors ``(batch, channels)``: 0 for a dropped channel, ``1 / (1 - p)``
        for a kept one; None in eval mode or when p = 0 (nothing to do).

        :meth:`forward` multiplies by them; a model can instead hand them to the NF-Layer before
        this module (``out_scale``), which applies them inside its products.
        """
        if not self.training or self.p == 0.0:
            return None
        keep = torch.rand(batch, channels, device=device) >= self.p
        return keep.to(dtype) / (1.0 - self.p)

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        scale = self.draw_scale(x.batch_size, x.channels, x.device, x.dtype)
        if scale is None:
            return x
        return x.map(lambda t: _by_channel(t, scale))

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ChannelNorm(nn.Module):
    """Layer norm over the channel axis at every entry, with a learned per-channel affine.

    Statistics never mix entries, so it is equivariant to every neuron permutation.

    Shapes
    ------
    - input and output: :class:`WeightSpaceFeatures` with C channels
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels, self.eps = channels, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        if x.channels != self.channels:
            raise ValueError(f"ChannelNorm: expected {self.channels} channels, got {x.channels}")

        def norm(t: Tensor) -> Tensor:
            mean = t.mean(1, keepdim=True)
            var = t.var(1, keepdim=True, unbiased=False)
            shape = (1, -1) + (1,) * (t.ndim - 2)
            return (t - mean) * torch.rsqrt(var + self.eps) * self.weight.view(
                shape
            ) + self.bias.view(shape)

        return x.map(norm)

    def extra_repr(self) -> str:
        return f"{self.channels}, eps={self.eps}"
