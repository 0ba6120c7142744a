"""Run the networks that 1-channel weight-space features describe, batched over networks.

Every network of the batch runs at once: dense layers as one batched matrix product, conv layers
as one grouped convolution (``groups=B``). The result is differentiable in the weights and in the
inputs, so it serves to render implicit neural representations (SIRENs, with ``"sin"``) and to
train the networks themselves.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from weightspace.nn.activation import get_activation
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

ActivationLike = str | Callable[[Tensor], Tensor]
IntOrTuple = int | tuple[int, ...]

_CONV_FNS: dict[int, Callable[..., Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def forward(
    features: WeightSpaceFeatures,
    x: Tensor,
    activation: ActivationLike = "relu",
    *,
    final_activation: ActivationLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
) -> Tensor:
    """Evaluate the B networks held in ``features`` on the inputs ``x``.

    Parameters
    ----------
    features:
        Weights and biases of B networks, one channel (C = 1), as
        :meth:`WeightSpaceFeatures.from_modules` builds them.
    x:
        Inputs, either shared by all networks or one batch per network (see Shapes).
    activation:
        A name (``"relu"``, ``"tanh"``, ``"sigmoid"``, ``"gelu"``, ``"silu"``, ``"sin"``,
        ``"identity"``) or an entrywise callable, applied after every layer but the last.
    final_activation:
        Optional name or callable applied after the last layer.
    stride, padding:
        Of every conv layer (an int, or one entry per spatial axis); ignored by dense layers.

    Returns
    -------
    Tensor
        The outputs of every network on its inputs. Differentiable in the weights and in ``x``.

    Shapes
    ------
    With B networks, N inputs per network and widths ``n_0 … n_L``:

    - MLP (all kernel shapes ``()``): ``x`` is ``(N, n_0)`` (shared) or ``(B, N, n_0)``.
    - CNN (d-dimensional conv layers first, then dense layers): ``x`` is
      ``(N, n_0, *spatial)`` (shared) or ``(B, N, n_0, *spatial)`` with ``d`` spatial axes.
      The conv layers are followed by global average pooling over space, then the dense layers.
    - Output: ``(B, N, n_L)``.

    Raises
    ------
    ValueError
        If ``features`` has more than one channel, its conv layers do not come first or differ in
        dimensionality, or ``x`` has the wrong number of axes, of input features (``n_0``) or of
        networks.

    Examples
    --------
    >>> from torch import nn
    >>> nets = [nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)) for _ in range(3)]
    >>> forward(WeightSpaceFeatures.from_modules(nets), torch.randn(5, 2)).shape
    torch.Size([3, 5, 1])
    """
    if features.channels != 1:
        raise ValueError(
            f"forward: features must have 1 channel (the weights of the networks), got "
            f"{features.channels} channels"
        )
    act = get_activation(activation)
    final = get_activation(final_activation) if final_activation is not None else None
    spec = features.spec
    num_conv, dim = _conv_prefix(spec)
    h, shared = _check_input(x, spec, features.batch_size, dim)
    layers = list(features)
    L = len(layers)

    def activate(t: Tensor, i: int) -> Tensor:
        if i < L - 1:
            return act(t)
        return final(t) if final is not None else t

    if num_conv:
        conv = _CONV_FNS[dim]
        stride = _conv_arg(stride, dim, "stride")
        padding = _conv_arg(padding, dim, "padding")
        # (N, B * n_i, *spatial): networks side by side along the channel axis.
        h = h if shared else h.transpose(0, 1).flatten(1, 2)
        for i in range(num_conv):
            w, b = layers[i]
            h = _conv_layer(conv, h, w, b, stride, padding, shared=shared and i == 0)
            h = activate(h, i)
        # Global average pooling, then back to (B, N, n).
        h = h.mean(dim=tuple(range(2, h.ndim)))
        h = h.unflatten(1, (features.batch_size, -1)).transpose(0, 1)
        shared = False
    for i in range(num_conv, L):
        w, b = layers[i]
        h = _dense_layer(h, w, b, shared=shared and i == 0)
        h = activate(h, i)
    return h


# ------------------------------------------------------------------ helpers
def _dense_layer(h: Tensor, w: Tensor, b: Tensor, *, shared: bool) -> Tensor:
    """One dense layer of every network.

    Shapes
    ------
    - h: ``(N, n_in)`` if ``shared``, else ``(B, N, n_in)``
    - w: ``(B, 1, n_out, n_in)``; b: ``(B, 1, n_out)``
    - returns ``(B, N, n_out)``
    """
    B, _, n_out, n_in = w.shape
    if shared:
        # One matrix product against all B weight matrices stacked: (N, B * n_out).
        out = torch.addmm(b.reshape(1, B * n_out), h, w.reshape(B * n_out, n_in).T)
        return out.unflatten(1, (B, n_out)).transpose(0, 1)
    return torch.baddbmm(b.reshape(B, 1, n_out), h, w[:, 0].transpose(1, 2))


def _conv_layer(
    conv: Callable[..., Tensor],
    h: Tensor,
    w: Tensor,
    b: Tensor,
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    *,
    shared: bool,
) -> Tensor:
    """One conv layer of every network, as a single (grouped) convolution.

    Shapes
    ------
    - h: ``(N, n_in, *spatial)`` if ``shared`` (every network reads the same channels), else
      ``(N, B * n_in, *spatial)`` (network-major channels)
    - w: ``(B, 1, n_out, n_in, *kernel)``; b: ``(B, 1, n_out)``
    - returns ``(N, B * n_out, *spatial_out)``
    """
    B = w.shape[0]
    weight = w[:, 0].flatten(0, 1)  # (B * n_out, n_in, *kernel)
    groups = 1 if shared else B
    return conv(h, weight, b.reshape(-1), stride=stride, padding=padding, groups=groups)


def _conv_prefix(spec: NetworkSpec) -> tuple[int, int]:
    """Number of leading conv layers and their spatial dimensionality (0 for an MLP)."""
    dims = [len(k) for k in spec.kernel_shapes]
    num_conv = next((i for i, d in enumerate(dims) if d == 0), len(dims))
    if any(d for d in dims[num_conv:]):
        raise ValueError(
            f"forward: conv layers must come before dense layers, got kernel shapes "
            f"{spec.kernel_shapes} for {spec}"
        )
    dim = dims[0] if num_conv else 0
    if any(d != dim for d in dims[:num_conv]):
        raise ValueError(
            f"forward: all conv layers must have the same dimensionality, got kernel shapes "
            f"{spec.kernel_shapes[:num_conv]}"
        )
    return num_conv, dim


def _check_input(x: Tensor, spec: NetworkSpec, batch_size: int, dim: int) -> tuple[Tensor, bool]:
    """Validate ``x``; return it and whether it is shared by all networks."""
    if not isinstance(x, Tensor):
        raise TypeError(f"forward: x must be a torch.Tensor, got {type(x).__name__}")
    n0 = spec.widths[0]
    if dim:
        spatial = ", ".join(f"s{j + 1}" for j in range(dim))
        shared_shape, own_shape = f"(N, n_0, {spatial})", f"(B, N, n_0, {spatial})"
        what = "input channels"
    else:
        shared_shape, own_shape, what = "(N, n_0)", "(B, N, n_0)", "input features"
    if x.ndim not in (dim + 2, dim + 3):
        raise ValueError(
            f"forward: x has shape {tuple(x.shape)} ({x.ndim} axes), expected {shared_shape} "
            f"(shared) or {own_shape} (one batch per network) with n_0={n0}"
        )
    shared = x.ndim == dim + 2
    n_axis = 1 if shared else 2
    if x.shape[n_axis] != n0:
        raise ValueError(
            f"forward: x has shape {tuple(x.shape)} with {x.shape[n_axis]} {what} (axis "
            f"{n_axis}), expected n_0={n0}"
        )
    if not shared and x.shape[0] != batch_size:
        raise ValueError(
            f"forward: x has inputs for {x.shape[0]} networks (axis 0), but features hold "
            f"B={batch_size} networks"
        )
    return x, shared


def _conv_arg(value: IntOrTuple, dim: int, name: str) -> tuple[int, ...]:
    """Expand an int to one entry per spatial axis; check a tuple's length."""
    if isinstance(value, int):
        return (value,) * dim
    value = tuple(value)
    if len(value) != dim:
        raise ValueError(
            f"forward: {name} {value} needs one entry per spatial axis of the {dim}D convs"
        )
    return value
