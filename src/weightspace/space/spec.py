"""The immutable description of a feedforward weight space.

Every size in weightspace (tensor shapes, pool widths, group orders, the layout the NF-Layers
work in) is derived from a :class:`NetworkSpec`; nobody recomputes shapes by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from torch import nn

from weightspace.space.trace import trace_module

Mode = Literal["np", "hnp"]
MODES: tuple[str, ...] = ("np", "hnp")


def check_mode(mode: str) -> Mode:
    """Return ``mode`` if it names a symmetry group, else raise a ``ValueError``."""
    if mode not in MODES:
        raise ValueError(
            f"mode must be one of {MODES} (neuron / hidden-neuron permutation), got {mode!r}"
        )
    return mode  # type: ignore[return-value]


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of the weight space: W_i or b_i.

    Attributes
    ----------
    name:
        ``"W{i}"`` or ``"b{i}"``.
    layer:
        i, from 1 to L.
    neuron_layers:
        For each neuron axis, which layer's neurons index it: ``(i, i - 1)`` for W_i, ``(i,)``
        for b_i.
    neuron_shape:
        Sizes of the neuron axes, ``(n_i, n_{i-1})`` or ``(n_i,)``.
    kernel_shape:
        Trailing kernel axes (never permuted); ``()`` for dense layers and biases.
    """

    name: str
    layer: int
    neuron_layers: tuple[int, ...]
    neuron_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]

    @property
    def is_weight(self) -> bool:
        return self.name.startswith("W")

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape without the batch and channel axes."""
        return self.neuron_shape + self.kernel_shape

    @property
    def kernel_size(self) -> int:
        return math.prod(self.kernel_shape)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class NetworkSpec:
    """Immutable description of the weight space of a feedforward network.

    A network with L weight layers has widths ``n_0`` (inputs) … ``n_L`` (outputs). Layer i has a
    weight ``W_i`` of shape ``(n_i, n_{i-1}, *kernel_shapes[i-1])`` and a bias ``b_i`` of shape
    ``(n_i,)``. Dense layers have kernel shape ``()``. A CNN whose convolutions end in global
    pooling and a dense layer fits the same scheme: conv channels are neurons.

    Parameters
    ----------
    widths:
        ``(n_0, …, n_L)``, at least two entries, each positive.
    kernel_shapes:
        One kernel shape per layer; defaults to all dense.

    Examples
    --------
    >>> spec = NetworkSpec((2, 32, 32, 1))
    >>> spec.num_layers, spec.num_params
    (3, 1185)
    """

    widths: tuple[int, ...]
    kernel_shapes: tuple[tuple[int, ...], ...] = ()

    def __post_init__(self) -> None:
        widths = tuple(self.widths)
        if len(widths) < 2:
            raise ValueError(f"NetworkSpec.widths needs n_0..n_L with L >= 1, got {widths!r}")
        for i, n in enumerate(widths):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"NetworkSpec.widths[{i}] must be a positive int, got {n!r}")
        kernels = tuple(tuple(k) for k in self.kernel_shapes) or ((),) * (len(widths) - 1)
        if len(kernels) != len(widths) - 1:
            raise ValueError(
                f"NetworkSpec.kernel_shapes needs one entry per layer ({len(widths) - 1}), "
                f"got {len(kernels)}"
            )
        for i, k in enumerate(kernels):
            if len(k) > 3 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in k):
                raise ValueError(
                    f"NetworkSpec.kernel_shapes[{i}] must be () or up to 3 positive ints, got {k!r}"
                )
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "kernel_shapes", kernels)

    # ------------------------------------------------------------------ sizes
    @property
    def num_layers(self) -> int:
        """L, the number of weight layers."""
        return len(self.widths) - 1

    @property
    def is_cnn(self) -> bool:
        return any(len(k) > 0 for k in self.kernel_shapes)

    @property
    def weight_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.shape for t in self.tensors if t.is_weight)

    @property
    def bias_shapes(self) -> tuple[tuple[int, ...], ...]:
        return tuple(t.shape for t in self.tensors if not t.is_weight)

    @property
    def tensors(self) -> tuple[TensorSpec, ...]:
        """All 2L tensors, weights first (W_1..W_L), then biases (b_1..b_L)."""
        n = self.widths
        weights = tuple(
            TensorSpec(f"W{i}", i, (i, i - 1), (n[i], n[i - 1]), self.kernel_shapes[i - 1])
            for i in range(1, self.num_layers + 1)
        )
        biases = tuple(
            TensorSpec(f"b{i}", i, (i,), (n[i],), ()) for i in range(1, self.num_layers + 1)
        )
        return weights + biases

    @property
    def num_params(self) -> int:
        """Number of scalar parameters of one network."""
        return sum(t.numel for t in self.tensors)

    # -------------------------------------------------------------- symmetry
    def permuted_layers(self, mode: Mode) -> tuple[int, ...]:
        """Layers whose neurons the group permutes: all under NP, hidden ones under HNP."""
        check_mode(mode)
        if mode == "np":
            return tuple(range(self.num_layers + 1))
        return tuple(range(1, self.num_layers))

    def group_order(self, mode: Mode) -> int:
        """|G|, the number of group elements."""
        return math.prod(math.factorial(self.widths[i]) for i in self.permuted_layers(mode))

    def fixed_size(self, tensor: TensorSpec, mode: Mode) -> int:
        """Number of entries of ``tensor`` per orbit representative of its permuted axes.

        Unpermuted neuron axes (inputs and outputs under HNP) and kernel axes behave like channels:
        this is their product.
        """
        permuted = set(self.permuted_layers(mode))
        fixed = [
            s
            for layer, s in zip(tensor.neuron_layers, tensor.neuron_shape)
            if layer not in permuted
        ]
        return math.prod(fixed) * tensor.kernel_size

    def pool_size(self, mode: Mode, channels: int = 1) -> int:
        """Output width of the invariant pool (NPPool / HNPPool) for ``channels`` channels."""
        return channels * sum(self.fixed_size(t, mode) for t in self.tensors)

    # --------------------------------------------------------- construction
    @classmethod
    def from_module(cls, module: nn.Module) -> NetworkSpec:
        """Read the weight space of a feedforward module.

        Accepts ``nn.Linear`` / ``nn.Conv1d/2d/3d`` layers, (nested) ``nn.Sequential`` containers
        of them and of parameter-free modules, and any ``nn.Module`` whose forward is a chain of
        such layers and parameter-free operations (traced with ``torch.fx``: ``torch.relu``,
        ``F.gelu``, ``x.flatten(1)``, ``F.adaptive_avg_pool2d`` are fine). Layers are read in the
        order forward calls them. Convs must come before dense layers, and the first dense layer
        after a conv must take the conv's channels as its features (global pooling in between).

        Examples
        --------
        >>> class MLP(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.fc2, self.fc1 = nn.Linear(8, 3), nn.Linear(4, 8)
        ...     def forward(self, x):
        ...         return self.fc2(torch.relu(self.fc1(x)))
        >>> NetworkSpec.from_module(MLP()).widths
        (4, 8, 3)

        Raises
        ------
        ValueError
            Naming the module or node that breaks the neuron-permutation structure (a residual
            connection, a concatenation, normalisation layers with parameters or buffers,
            attention, embeddings, grouped convs, a tensor slice, …), a module ``torch.fx``
            cannot trace, or layers whose sizes do not chain.
        """
        return cls.from_layers(weight_layers(module))

    @classmethod
    def from_layers(cls, layers: Iterable[tuple[str, nn.Module]]) -> NetworkSpec:
        """The weight space of ``(qualified_name, layer)`` pairs in forward order, as
        :func:`weight_layers` yields them (for callers that also need the layers: one trace).

        Raises ``ValueError`` naming the layer whose sizes do not chain, or a conv after a dense
        layer.
        """
        widths: list[int] = []
        kernels: list[tuple[int, ...]] = []
        seen_dense = False
        for name, layer in layers:
            if isinstance(layer, nn.Linear):
                n_in, n_out, kernel = layer.in_features, layer.out_features, ()
                seen_dense = True
            else:
                if seen_dense:
                    raise ValueError(
                        f"NetworkSpec.from_module: conv layer {name!r} ({layer}) follows a dense "
                        "layer; convolutions must come first"
                    )
                n_in, n_out, kernel = (
                    layer.in_channels,
                    layer.out_channels,
                    tuple(layer.kernel_size),
                )
            if widths and widths[-1] != n_in:
                raise ValueError(
                    f"NetworkSpec.from_module: layer {name!r} ({layer}) expects {n_in} inputs but "
                    f"the previous layer has {widths[-1]} neurons; a dense layer after convolutions "
                    "must follow global pooling (flattening spatial positions breaks the neuron "
                    "structure)"
                )
            if not widths:
                widths.append(n_in)
            widths.append(n_out)
            kernels.append(kernel)
        return cls(tuple(widths), tuple(kernels))

    def to_dict(self) -> dict[str, list]:
        """JSON-safe form: ``{"widths": [...], "kernel_shapes": [[...], ...]}``.

        >>> NetworkSpec((2, 3)).to_dict()
        {'widths': [2, 3], 'kernel_shapes': [[]]}
        """
        return {"widths": list(self.widths), "kernel_shapes": [list(k) for k in self.kernel_shapes]}

    @classmethod
    def from_dict(cls, d: object, where: str = "spec") -> NetworkSpec:
        """Inverse of :meth:`to_dict`; ``where`` names the file or field in the error.

        Raises ``ValueError`` naming ``where`` when ``d`` is not such a dict or its sizes are
        invalid.
        """
        if not isinstance(d, dict) or "widths" not in d:
            raise ValueError(
                f"{where}: expected a NetworkSpec as {{'widths': [...], 'kernel_shapes': [...]}}, "
                f"got {d!r}"
            )
        try:
            kernels = tuple(tuple(k) for k in d.get("kernel_shapes") or ())
            return cls(tuple(d["widths"]), kernels)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: not a valid NetworkSpec ({err})") from None

    def __repr__(self) -> str:
        kinds = ", ".join("x".join(map(str, k)) or "dense" for k in self.kernel_shapes)
        return f"NetworkSpec(widths={self.widths}, kernels=({kinds}), params={self.num_params})"


def weight_layers(module: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(qualified_name, layer)`` for the Linear/Conv layers of a feedforward module.

    Layers come in the order the module's forward calls them (:func:`~weightspace.space.trace.
    trace_module`: ``nn.Sequential`` trees directly, any other module traced with ``torch.fx``).
    The qualified name is the layer's state-dict prefix (``""`` for a bare layer).

    Raises ``ValueError`` naming any module or node that does not fit the feedforward
    weight-space structure.
    """
    yield from trace_module(module).layers
