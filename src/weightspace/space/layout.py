"""The canonical layout NF-Layers compute in.

For a symmetry mode, each tensor's axes split into *permuted* neuron axes and *fixed* ones (the
kernel axes, and under HNP the input and output neuron axes). Fixed axes behave like channels, so
the canonical form of a ``(B, C, n_i, n_{i-1}, *kernel)`` tensor is ``(B, C * u, *permuted)``, with
u the product of the fixed sizes. Everything here is derived from the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from torch import Tensor

from weightspace.space.spec import Mode, NetworkSpec, TensorSpec, check_mode


@dataclass(frozen=True)
class TensorLayout:
    """How one tensor maps to and from the canonical layout under one mode."""

    tensor: TensorSpec
    permuted_layers: tuple[int, ...]  # layers of the permuted neuron axes, in axis order
    permuted_shape: tuple[int, ...]
    fixed: int  # u: product of fixed neuron axes and kernel axes
    order: tuple[int, ...]  # axis order taking (B, C, *neuron, *kernel) to canonical

    @property
    def is_identity(self) -> bool:
        return self.order == tuple(range(len(self.order)))

    def to_canonical(self, x: Tensor) -> Tensor:
        """``(B, C, *tensor.shape)`` → ``(B, C * u, *permuted_shape)``."""
        if not self.is_identity:
            x = x.permute(self.order)
        return x.reshape(x.shape[0], -1, *self.permuted_shape)

    def from_canonical(self, y: Tensor, channels: int) -> Tensor:
        """Inverse of :meth:`to_canonical` for ``channels`` channels."""
        fixed_shape = [
            self.tensor.shape[a - 2]
            for a in self.order[2 : len(self.order) - len(self.permuted_shape)]
        ]
        y = y.reshape(y.shape[0], channels, *fixed_shape, *self.permuted_shape)
        if self.is_identity:
            return y
        inverse = [0] * len(self.order)
        for position, axis in enumerate(self.order):
            inverse[axis] = position
        return y.permute(inverse)


@dataclass(frozen=True)
class SpaceLayout:
    """Canonical layouts of all 2L tensors of a spec under one mode."""

    spec: NetworkSpec
    mode: Mode

    def __post_init__(self) -> None:
        check_mode(self.mode)

    @cached_property
    def tensors(self) -> tuple[TensorLayout, ...]:
        permuted = set(self.spec.permuted_layers(self.mode))
        out = []
        for t in self.spec.tensors:
            neuron_axes = range(2, 2 + len(t.neuron_layers))
            kernel_axes = range(2 + len(t.neuron_layers), 2 + len(t.shape))
            perm_axes = [a for a, layer in zip(neuron_axes, t.neuron_layers) if layer in permuted]
            fixed_axes = [a for a in neuron_axes if a not in perm_axes]
            order = (0, 1, *fixed_axes, *kernel_axes, *perm_axes)
            out.append(
                TensorLayout(
                    tensor=t,
                    permuted_layers=tuple(t.neuron_layers[a - 2] for a in perm_axes),
                    permuted_shape=tuple(t.shape[a - 2] for a in perm_axes),
                    fixed=self.spec.fixed_size(t, self.mode),
                    order=order,
                )
            )
        return tuple(out)
