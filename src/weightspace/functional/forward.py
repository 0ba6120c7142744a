"""Run the networks that 1-channel weight-space features describe, batched over networks.

Every network of the batch runs at once: dense layers as one batched matrix product, conv layers
as one grouped convolution (``groups=B``). The result is differentiable in the weights and in the
inputs, so it serves to render implicit neural representations (SIRENs, with ``"sin"``) and to
train the networks themselves (:mod:`weightspace.train.batched` adds dropout through the private
hook of :func:`_forward`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

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
        ``"identity"``) or an entrywise callable, applied after every layer but the last. A list
        or tuple of B names/callables gives each network its own activation. When the networks
        of each function are consecutive, every function runs on its own block only; otherwise
        every distinct function runs on the whole batch and is selected per network.
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
        dimensionality, ``x`` has the wrong number of axes, of input features (``n_0``) or of
        networks, or ``activation`` (as a list) does not hold one entry per network.

    Examples
    --------
    >>> from torch import nn
    >>> nets = [nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1)) for _ in range(3)]
    >>> forward(WeightSpaceFeatures.from_modules(nets), torch.randn(5, 2)).shape
    torch.Size([3, 5, 1])
    """
    return _forward(
        features, x, activation, final_activation=final_activation, stride=stride, padding=padding
    )


class HiddenHook(Protocol):
    """What :func:`_forward` applies after every hidden activation (a trainer's dropout).

    ``apply(t, act, axis)`` returns ``act(t)`` transformed and a ``(B,)`` per-network scale owed
    to the next layer's weights (``W (s a) = (s W) a``), or ``None``; ``axis`` of ``t`` runs over
    networks (network-major). ``select(index)`` is the hook of a subset of the networks, and a
    hook that is not ``active`` is skipped.
    """

    active: bool

    def select(self, index: slice | Tensor) -> HiddenHook: ...

    def apply(
        self, t: Tensor, act: Callable[[Tensor], Tensor], axis: int
    ) -> tuple[Tensor, Tensor | None]: ...


def _forward(
    features: WeightSpaceFeatures,
    x: Tensor,
    activation: ActivationLike | Sequence[ActivationLike] = "relu",
    *,
    final_activation: ActivationLike | None = None,
    stride: IntOrTuple = 1,
    padding: IntOrTuple = 0,
    hidden: HiddenHook | None = None,
) -> Tensor:
    """:func:`forward`, with ``hidden`` applied after every hidden activation (for trainers)."""
    if features.channels != 1:
        raise ValueError(
            f"forward: features must have 1 channel (the weights of the networks), got "
            f"{features.channels} channels"
        )
    B = features.batch_size
    groups = _activation_groups(activation, B)
    final = get_activation(final_activation) if final_activation is not None else None
    num_conv, dim = _conv_prefix(features.spec)
    x, shared = _check_input(x, features.spec, B, dim)
    conv_args = (
        (_conv_arg(stride, dim, "stride"), _conv_arg(padding, dim, "padding")) if num_conv else None
    )
    if len(groups) == 1:
        return _run(features, x, shared, groups[0][0], final, hidden, num_conv, conv_args)
    # One sub-batch per activation: every function runs on whole, contiguous tensors.
    outs, order = [], []
    for fn, members in groups:
        if members == list(range(members[0], members[-1] + 1)):
            index: slice | Tensor = slice(members[0], members[-1] + 1)
        else:
            index = torch.tensor(members, device=x.device)
        outs.append(
            _run(
                features[index],
                x if shared else _rows(x, index),
                shared,
                fn,
                final,
                hidden.select(index) if hidden is not None else None,
                num_conv,
                conv_args,
            )
        )
        order += members
    out = torch.cat(outs)
    if order != list(range(B)):
        out = out.index_select(0, torch.argsort(torch.tensor(order, device=out.device)))
    return out


def _run(
    features: WeightSpaceFeatures,
    h: Tensor,
    shared: bool,
    act: Callable[[Tensor], Tensor],
    final: Callable[[Tensor], Tensor] | None,
    hidden: HiddenHook | None,
    num_conv: int,
    conv_args: tuple[tuple[int, ...], tuple[int, ...]] | None,
) -> Tensor:
    """:func:`_forward` for networks that share one activation (inputs already checked).

    A scale the hook returns (dropout's ``1 / keep``) is folded into the next layer's weights
    (``W (s a) = (s W) a`` per network), so the large activations only ever see a 0/1 mask.
    """
    layers = list(features)
    L = len(layers)
    hidden = hidden if hidden is not None and hidden.active else None
    scale: Tensor | None = None  # scaling owed to the next layer's weights

    def weight(i: int) -> Tensor:
        w = layers[i][0]
        return w if scale is None else w * scale.reshape((-1,) + (1,) * (w.ndim - 1))

    def activate(t: Tensor, i: int, axis: int) -> Tensor:
        """Activation of layer i; ``axis`` of ``t`` runs over networks (network-major)."""
        nonlocal scale
        if i == L - 1:
            return final(t) if final is not None else t
        if hidden is None:
            if act is torch.tanh:
                # In place where autograd records nothing: t is this layer's fresh output.
                return _tanh(t) if torch.is_grad_enabled() else tanh_(t)
            return act(t)
        out, scale = hidden.apply(t, act, axis)
        return out

    if num_conv:
        assert conv_args is not None
        stride, padding = conv_args
        dim = len(stride)
        # (N, B * n_i, *spatial): networks side by side along the channel axis.
        h = h if shared else h.transpose(0, 1).flatten(1, 2)
        # Channels-last: oneDNN's grouped convolutions run faster in it (BENCHMARKS.md).
        fmt = _CHANNELS_LAST.get(dim)
        h = h.contiguous(memory_format=fmt) if fmt is not None else h
        for i in range(num_conv):
            b = layers[i][1]
            h = _conv_layer(
                _CONV_FNS[dim], h, weight(i), b, stride, padding, shared=shared and i == 0
            )
            h = activate(h, i, 1)
        # Global average pooling (over the spatial axes in memory order, so that the gradient
        # keeps the activations' layout), then back to (B, N, n).
        if fmt is not None:
            h = h.movedim(1, -1).mean(dim=tuple(range(1, h.ndim - 1)))
        else:
            h = h.mean(dim=tuple(range(2, h.ndim)))
        h = h.unflatten(1, (features.batch_size, -1)).transpose(0, 1)
        shared = False
    for i in range(num_conv, L):
        b = layers[i][1]
        h = _dense_layer(h, weight(i), b, shared=shared and i == 0)
        h = activate(h, i, 0)
    return h


# ------------------------------------------------------------------ helpers
def tanh_(t: Tensor) -> Tensor:
    """``t.tanh_()``; on the CPU computed as ``2 sigmoid(2 t) - 1``, in place.

    torch's CPU ``tanh`` is several times slower than its ``sigmoid`` (BENCHMARKS.md, zoo
    generation). The identity is exact; in float32 it differs from ``torch.tanh`` by at most
    about two units in the last place of 1 (absolute), and tends to ±1 for large ``|t|``.
    """
    if t.device.type != "cpu":
        return t.tanh_()
    return t.mul_(2).sigmoid_().mul_(2).sub_(1)


def _tanh(t: Tensor) -> Tensor:
    """``tanh(t)`` with the same values as :func:`tanh_` (so that dropout at rate 0 leaves a
    network exactly unchanged), out of place: differentiable, also under ``torch.func``."""
    if t.device.type != "cpu":
        return torch.tanh(t)
    return torch.sigmoid(t * 2) * 2 - 1


_CHANNELS_LAST: dict[int, torch.memory_format] = {
    2: torch.channels_last,
    3: torch.channels_last_3d,
}


def _rows(t: Tensor, index: slice | Tensor) -> Tensor:
    """``t[index]`` along axis 0; ``index_select`` copies whole rows, advanced indexing does not."""
    return t[index] if isinstance(index, slice) else t.index_select(0, index)


def _activation_groups(
    activation: ActivationLike | Sequence[ActivationLike], B: int
) -> list[tuple[Callable[[Tensor], Tensor], list[int]]]:
    """Distinct activation functions in first-seen order, each with its networks."""
    if isinstance(activation, str) or callable(activation):
        return [(get_activation(activation), list(range(B)))]
    if not isinstance(activation, list | tuple):
        raise ValueError(
            f"forward: activation must be a name, a callable or a list of {B} of them (one per "
            f"network), got {type(activation).__name__}"
        )
    if len(activation) != B:
        raise ValueError(
            f"forward: activation lists {len(activation)} entries, expected one per network (B={B})"
        )
    groups: list[tuple[Callable[[Tensor], Tensor], list[int]]] = []
    for b, a in enumerate(activation):
        fn = get_activation(a)
        for g_fn, members in groups:
            if g_fn == fn:
                members.append(b)
                break
        else:
            groups.append((fn, [b]))
    return groups


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
