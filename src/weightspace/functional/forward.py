"""Run the networks that 1-channel weight-space features describe, batched over networks.

Every network of the batch runs at once: dense layers as one batched matrix product, conv layers
as one grouped convolution (``groups=B``). The result is differentiable in the weights and in the
inputs, so it serves to render implicit neural representations (SIRENs, with ``"sin"``) and to
train the networks themselves.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

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
    dropout: Tensor | None = None,
    training: bool = False,
    generator: torch.Generator | None = None,
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
    dropout:
        Optional ``(B,)`` drop probabilities in [0, 1), one per network. Only when ``training``:
        inverted dropout after every hidden activation (every layer but the last), entrywise,
        scaling kept entries by ``1 / (1 - p)``; ``1 - p`` is rounded to a multiple of 2^-16
        (masks come from 16 random bits per entry). A network with p = 0 is left exactly
        unchanged.
    training:
        Apply ``dropout``; without it ``dropout`` is ignored (evaluation).
    generator:
        Source of the dropout masks (the global generator if ``None``).

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
        networks, or ``activation`` (as a list) or ``dropout`` do not hold one entry per network.

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
    B = features.batch_size
    act = _network_activation(activation, B)
    final = get_activation(final_activation) if final_activation is not None else None
    drop = _Dropout(dropout, B, features) if dropout is not None else None
    drop = drop if training else None
    spec = features.spec
    num_conv, dim = _conv_prefix(spec)
    h, shared = _check_input(x, spec, B, dim)
    layers = list(features)
    L = len(layers)

    def activate(t: Tensor, i: int, axis: int) -> Tensor:
        """Activation of layer i; ``axis`` of ``t`` runs over networks (network-major)."""
        if i == L - 1:
            return final(t) if final is not None else t
        t = act(t, axis)
        if drop is not None:
            t = drop(t, axis, generator)
        return t

    if num_conv:
        conv = _CONV_FNS[dim]
        stride = _conv_arg(stride, dim, "stride")
        padding = _conv_arg(padding, dim, "padding")
        # (N, B * n_i, *spatial): networks side by side along the channel axis.
        h = h if shared else h.transpose(0, 1).flatten(1, 2)
        for i in range(num_conv):
            w, b = layers[i]
            h = _conv_layer(conv, h, w, b, stride, padding, shared=shared and i == 0)
            h = activate(h, i, 1)
        # Global average pooling, then back to (B, N, n).
        h = h.mean(dim=tuple(range(2, h.ndim)))
        h = h.unflatten(1, (features.batch_size, -1)).transpose(0, 1)
        shared = False
    for i in range(num_conv, L):
        w, b = layers[i]
        h = _dense_layer(h, w, b, shared=shared and i == 0)
        h = activate(h, i, 0)
    return h


# ------------------------------------------------------------------ helpers
def _per_network(values: Tensor, t: Tensor, axis: int) -> Tensor:
    """Broadcast ``(B,)`` per-network values against ``t``, whose ``axis`` is network-major.

    ``t.shape[axis]`` is ``B * k`` (k neurons per network, k = 1 for a plain batch axis).
    """
    B = values.shape[0]
    shape = [1] * t.ndim
    shape[axis] = t.shape[axis]
    return values.repeat_interleave(t.shape[axis] // B).reshape(shape)


def _network_activation(
    activation: ActivationLike | Sequence[ActivationLike], B: int
) -> Callable[[Tensor, int], Tensor]:
    """``fn(t, axis)``: one activation for all networks, or one per network."""
    if isinstance(activation, str) or callable(activation):
        fn = get_activation(activation)
        return lambda t, axis: fn(t)
    if not isinstance(activation, list | tuple):
        raise ValueError(
            f"forward: activation must be a name, a callable or a list of {B} of them (one per "
            f"network), got {type(activation).__name__}"
        )
    if len(activation) != B:
        raise ValueError(
            f"forward: activation lists {len(activation)} entries, expected one per network (B={B})"
        )
    # Distinct functions in first-seen order, and each network's position among them.
    fns: list[Callable[[Tensor], Tensor]] = []
    which: list[int] = []
    for a in activation:
        fn = get_activation(a)
        if fn not in fns:
            fns.append(fn)
        which.append(fns.index(fn))
    if len(fns) == 1:
        return lambda t, axis: fns[0](t)
    # Runs of consecutive networks sharing a function.
    runs: list[tuple[int, int, int]] = []  # (function, first network, number of networks)
    for b, k in enumerate(which):
        if runs and runs[-1][0] == k:
            runs[-1] = (k, runs[-1][1], runs[-1][2] + 1)
        else:
            runs.append((k, b, 1))
    if len(runs) == len(fns):
        # Each function on its own contiguous block of networks: no wasted evaluations (callers
        # that can, such as the zoo trainer, order their networks this way).
        def blocks(t: Tensor, axis: int) -> Tensor:
            k = t.shape[axis] // B
            # split, not narrow: its backward is one cat, narrow's a zero-filled copy per block.
            parts = torch.split(t, [count * k for _, _, count in runs], dim=axis)
            return torch.cat([fns[f](part) for (f, _, _), part in zip(runs, parts)], axis)

        return blocks
    codes = torch.tensor(which)

    def mixed(t: Tensor, axis: int) -> Tensor:
        select = _per_network(codes.to(t.device), t, axis)
        out = fns[0](t)
        for k in range(1, len(fns)):
            out = torch.where(select == k, fns[k](t), out)
        return out

    return mixed


# Dropout draws 16 random bits per entry: keep probabilities are rounded to multiples of 2^-16.
_KEEP_LEVELS = 2**16


class _Dropout:
    """Per-network inverted dropout: keep probability rounded to ``K / 2^16``, scale ``2^16 / K``.

    An entry is kept when a uniform 16-bit integer ``v`` in [-2^15, 2^15) satisfies
    ``v <= K - 2^15 - 1``, which has probability exactly ``K / 2^16``. A network with p = 0 has
    ``K = 2^16``: every entry is kept and scaled by exactly 1.
    """

    def __init__(self, dropout: Tensor, B: int, features: WeightSpaceFeatures) -> None:
        if not isinstance(dropout, Tensor) or tuple(dropout.shape) != (B,):
            shape = tuple(dropout.shape) if isinstance(dropout, Tensor) else type(dropout).__name__
            raise ValueError(
                f"forward: dropout must be a ({B},) tensor, one rate per network, got {shape}"
            )
        if not bool(((dropout >= 0) & (dropout < 1)).all()):
            raise ValueError(
                f"forward: dropout rates must lie in [0, 1), got {dropout.min().item()} .. "
                f"{dropout.max().item()}"
            )
        levels = torch.round((1 - dropout.double()) * _KEEP_LEVELS).clamp(1, _KEEP_LEVELS).long()
        device = features.device
        self.upper = (levels - _KEEP_LEVELS // 2 - 1).to(device=device, dtype=torch.int16)
        self.scale = (_KEEP_LEVELS / levels.double()).to(device=device, dtype=features.dtype)
        self.active = bool((levels < _KEEP_LEVELS).any())

    def __call__(self, t: Tensor, axis: int, generator: torch.Generator | None) -> Tensor:
        if not self.active:
            return t
        n = t.numel()
        words = -(-n // 3)
        # random_ on int64 fills [0, 2^63): three of its four 16-bit lanes are uniform, the most
        # significant one lacks its top bit. Drawing 64-bit words is ~8x faster than torch.rand.
        raw = torch.empty(words, dtype=torch.int64, device=t.device).random_(generator=generator)
        lanes = slice(0, 3) if sys.byteorder == "little" else slice(1, 4)
        bits = raw.view(torch.int16).view(words, 4)[:, lanes].reshape(-1)[:n].view(t.shape)
        keep = bits <= _per_network(self.upper, t, axis)
        return t * keep.to(t.dtype).mul_(_per_network(self.scale, t, axis))


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
