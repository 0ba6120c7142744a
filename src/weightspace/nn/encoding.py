"""Encodings of weight-space features: IO encodings for NP models, and Fourier features.

Under the NP group every neuron, inputs and outputs included, is exchangeable, which is not a true
symmetry of a network. An *IO encoding* tells input and output neurons apart again by adding (or
concatenating) something that depends on each input neuron's index to the columns of W_1, and on
each output neuron's index to the rows of W_L and to b_L. The result is still equivariant to
hidden-neuron permutations (HNP), but no longer to permutations of inputs or outputs.

:class:`GaussianFourierFeatures` lifts every entry to sines and cosines of random projections of
its channels. It acts entrywise, so it commutes with every permutation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec


def _along(t: Tensor, axis: int, ndim: int) -> Tensor:
    """View a ``(C, n)`` tensor as ``ndim``-D features constant along all but channels and ``axis``."""
    shape = [1] * ndim
    shape[1], shape[axis] = t.shape
    return t.reshape(shape)


class LearnedIOEncoding(nn.Module):
    """Learned embeddings of input and output neurons, added to the features (NP models).

    Input neuron k gets a learned vector (one value per channel and kernel position of W_1) added
    to column k of W_1, in every row. Output neuron o gets one added to row o of W_L, in every
    column, and one added to b_L[o]. Nothing else changes. The embeddings start small and random,
    so inputs and outputs are told apart from the first step.

    After this layer an NP model is still equivariant to hidden-neuron permutations (HNP), but no
    longer to permutations of inputs or outputs.

    Parameters
    ----------
    spec:
        The weight space.
    channels:
        Feature channels C (unchanged).
    init_std:
        Standard deviation of the normal initialisation of the embeddings.

    Attributes
    ----------
    input_embedding:
        ``(C, n_0, *kernel_1)``, added to W_1 along its columns.
    output_weight_embedding:
        ``(C, n_L, *kernel_L)``, added to W_L along its rows.
    output_bias_embedding:
        ``(C, n_L)``, added to b_L.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with W_i ``(B, C, n_i, n_{i-1}, *kernel_i)``,
      b_i ``(B, C, n_i)``
    - output: the same shapes
    """

    def __init__(self, spec: NetworkSpec, channels: int, init_std: float = 0.1) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"LearnedIOEncoding: channels must be positive, got {channels}")
        self.spec, self.channels, self.init_std = spec, channels, init_std
        n, kernels = spec.widths, spec.kernel_shapes
        self.input_embedding = nn.Parameter(torch.empty(channels, n[0], *kernels[0]))
        self.output_weight_embedding = nn.Parameter(torch.empty(channels, n[-1], *kernels[-1]))
        self.output_bias_embedding = nn.Parameter(torch.empty(channels, n[-1]))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for p in self.parameters():
            p.normal_(0.0, self.init_std)

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(x, self.spec, self.channels, type(self).__name__)
        weights, biases = list(x.weights), list(x.biases)
        # (C, n_0, *k_1) -> (1, C, 1, n_0, *k_1): constant along the rows of W_1.
        weights[0] = weights[0] + self.input_embedding.unsqueeze(1).unsqueeze(0)
        # (C, n_L, *k_L) -> (1, C, n_L, 1, *k_L): constant along the columns of W_L.
        weights[-1] = weights[-1] + self.output_weight_embedding.unsqueeze(2).unsqueeze(0)
        biases[-1] = biases[-1] + self.output_bias_embedding
        return WeightSpaceFeatures(weights, biases)

    def extra_repr(self) -> str:
        return (
            f"widths={self.spec.widths}, channels={self.channels}, "
            f"inputs={self.spec.widths[0]}, outputs={self.spec.widths[-1]}"
        )


def sinusoidal_encoding(n: int, num_bands: int = 6, max_freq: float = 10.0) -> Tensor:
    """Sinusoidal encoding of positions ``0 … n - 1``.

    Position p maps to ``x = 2 p / (n - 1) - 1`` in [-1, 1] (0 when n = 1), then to
    ``[x, sin(π f_1 x) … sin(π f_K x), cos(π f_1 x) … cos(π f_K x)]`` with K = ``num_bands``
    frequencies spaced linearly from 1 to ``max_freq / 2``.

    Shapes
    ------
    - output: ``(2 K + 1, n)``, float32
    """
    x = torch.linspace(-1.0, 1.0, n) if n > 1 else torch.zeros(1)
    freqs = torch.linspace(1.0, max_freq / 2, num_bands)
    angles = math.pi * freqs[:, None] * x[None, :]
    return torch.cat([x[None], angles.sin(), angles.cos()])


class SinusoidalIOEncoding(nn.Module):
    """Sinusoidal encodings of input and output neuron positions, concatenated as channels.

    Adds ``2 E`` channels, ``E = 2 num_bands + 1`` (see :func:`sinusoidal_encoding`):

    - the first E encode the input neuron (column) index of W_1, and are zero on every other
      tensor;
    - the next E encode the output neuron (row) index of W_L and b_L, and are zero elsewhere.

    With L = 1, W_1 is both first and last and carries both. The encodings are constant along
    hidden-neuron axes and kernel axes, so the result is HNP-equivariant but not NP-equivariant.

    Parameters
    ----------
    spec:
        The weight space.
    channels:
        Input feature channels C.
    num_bands:
        Frequencies per encoding.
    max_freq:
        The highest frequency is ``max_freq / 2``.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with C channels
    - output: the same with ``out_channels = C + 2 (2 num_bands + 1)`` channels
    """

    def __init__(
        self, spec: NetworkSpec, channels: int, num_bands: int = 6, max_freq: float = 10.0
    ) -> None:
        super().__init__()
        if channels < 1 or num_bands < 0:
            raise ValueError(
                f"SinusoidalIOEncoding: need channels >= 1 and num_bands >= 0, got "
                f"channels={channels}, num_bands={num_bands}"
            )
        self.spec, self.channels = spec, channels
        self.num_bands, self.max_freq = num_bands, max_freq
        self.encoding_size = 2 * num_bands + 1
        # Deterministic functions of the spec: not worth saving in a state dict.
        self.register_buffer(
            "input_encoding",
            sinusoidal_encoding(spec.widths[0], num_bands, max_freq),
            persistent=False,
        )
        self.register_buffer(
            "output_encoding",
            sinusoidal_encoding(spec.widths[-1], num_bands, max_freq),
            persistent=False,
        )

    @property
    def out_channels(self) -> int:
        """Channels of the output: ``C + 2 E``."""
        return self.channels + 2 * self.encoding_size

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(x, self.spec, self.channels, type(self).__name__)
        C, L = self.channels, self.spec.num_layers

        def extra(t: Tensor, first: bool, last: bool) -> Tensor:
            # One allocation: the input channels copied in, the encodings written beside them
            # (no zero tensors, no concatenation). Autograd sees a copy into a slice.
            out = t.new_empty(t.shape[0], self.out_channels, *t.shape[2:])
            self._fill(out[:, C:], first, last)
            out[:, :C] = t
            return out

        weights = [extra(w, i == 0, i == L - 1) for i, w in enumerate(x.weights)]
        biases = [extra(b, False, i == L - 1) for i, b in enumerate(x.biases)]
        return WeightSpaceFeatures(weights, biases)

    def encodings(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> WeightSpaceFeatures:
        """The ``2 E`` encoding channels alone, for one network (batch 1): what :meth:`forward`
        puts after the input channels of every network, zero where the encodings are off.

        An NF-Layer can take them as ``constant`` channels and compute their contribution once
        instead of once per network (:class:`~weightspace.models.InvariantNFN` does).

        The result is built once per dtype and device and then returned again (no kernels, no
        host-device copies per forward), so treat it as read-only. It is rebuilt when the
        encoding buffers change.
        """
        dtype = dtype if dtype is not None else self.input_encoding.dtype
        device = torch.device(device) if device is not None else self.input_encoding.device
        buffers = (self.input_encoding, self.output_encoding)
        key = (dtype, device, *((b.data_ptr(), b._version) for b in buffers))
        cache: dict[tuple[Any, ...], WeightSpaceFeatures] = self.__dict__.setdefault(
            "_encodings_cache", {}
        )
        if key not in cache:
            cache.clear()
            cache[key] = self._build_encodings(dtype, device)
        return cache[key]

    def _build_encodings(self, dtype: torch.dtype, device: torch.device) -> WeightSpaceFeatures:
        L = self.spec.num_layers

        def one(shape: tuple[int, ...], first: bool, last: bool) -> Tensor:
            out = torch.empty(1, 2 * self.encoding_size, *shape, dtype=dtype, device=device)
            self._fill(out, first, last)
            return out

        return WeightSpaceFeatures(
            [one(s, i == 0, i == L - 1) for i, s in enumerate(self.spec.weight_shapes)],
            [one(s, False, i == L - 1) for i, s in enumerate(self.spec.bias_shapes)],
        )

    def _fill(self, tail: Tensor, first: bool, last: bool) -> None:
        """Write the ``2 E`` encoding channels of one tensor into ``tail`` ``(B, 2 E, *shape)``.

        Column (input) index is axis 3 of W_1; row (output) index is axis 2 of W_L and b_L.
        """
        E = self.encoding_size
        with torch.no_grad():  # constants of the spec: nothing to differentiate
            for part, enc, axis, on in (
                (tail[:, :E], self.input_encoding, 3, first),
                (tail[:, E:], self.output_encoding, 2, last),
            ):
                if on:
                    part.copy_(_along(enc, axis, tail.ndim))
                else:
                    part.zero_()

    def extra_repr(self) -> str:
        return (
            f"widths={self.spec.widths}, channels={self.channels}, num_bands={self.num_bands}, "
            f"max_freq={self.max_freq}, out_channels={self.out_channels}"
        )


class GaussianFourierFeatures(nn.Module):
    """Random Fourier features of every entry: ``x ↦ [sin(2π x B), cos(2π x B)]``.

    ``x`` is the vector of an entry's C channels and B a fixed ``(C, mapping_size)`` matrix drawn
    from N(0, scale²) with a seeded generator (Tancik et al. 2020). Each entry is mapped alone,
    so this commutes with every permutation of neurons (NP and HNP alike).

    Parameters
    ----------
    in_channels:
        Input channels C.
    mapping_size:
        Number of random projections M.
    scale:
        Standard deviation of B's entries.
    seed:
        Seed of the generator that draws B.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with C channels
    - output: the same with ``out_channels = 2 M`` channels
    """

    def __init__(
        self, in_channels: int, mapping_size: int = 64, scale: float = 10.0, seed: int = 0
    ) -> None:
        super().__init__()
        if in_channels < 1 or mapping_size < 1:
            raise ValueError(
                f"GaussianFourierFeatures: need in_channels >= 1 and mapping_size >= 1, got "
                f"in_channels={in_channels}, mapping_size={mapping_size}"
            )
        self.in_channels, self.mapping_size = in_channels, mapping_size
        self.scale, self.seed = scale, seed
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("B", torch.randn(in_channels, mapping_size, generator=gen) * scale)

    @property
    def out_channels(self) -> int:
        return 2 * self.mapping_size

    def forward(
        self, x: WeightSpaceFeatures, io: SinusoidalIOEncoding | None = None
    ) -> WeightSpaceFeatures:
        """The Fourier features of ``x``; with ``io``, ``io(self(x))`` built in one allocation.

        ``io`` must take this layer's ``out_channels``. The fused form writes the sines, cosines
        and IO encodings of each tensor straight into one output instead of building the
        Fourier features and then copying them next to the encodings (same values).
        """
        if not isinstance(x, WeightSpaceFeatures):
            raise TypeError(
                f"GaussianFourierFeatures: expected WeightSpaceFeatures, got {type(x).__name__}"
            )
        if x.channels != self.in_channels:
            raise ValueError(
                f"GaussianFourierFeatures: expected {self.in_channels} input channels, "
                f"got {x.channels}"
            )
        proj = self.B.to(x.dtype) * (2 * math.pi)
        if io is None:
            return x.map(lambda t: _FourierFeatures.apply(t, proj, 0, None))
        if not isinstance(io, SinusoidalIOEncoding) or io.channels != self.out_channels:
            raise ValueError(
                f"GaussianFourierFeatures: io must be a SinusoidalIOEncoding of "
                f"{self.out_channels} channels, got {io!r}"
            )
        check_features(x, io.spec, self.in_channels, type(self).__name__)
        L, extra = io.spec.num_layers, 2 * io.encoding_size

        def lift(t: Tensor, first: bool, last: bool) -> Tensor:
            return _FourierFeatures.apply(t, proj, extra, lambda tail: io._fill(tail, first, last))

        weights = [lift(w, i == 0, i == L - 1) for i, w in enumerate(x.weights)]
        biases = [lift(b, False, i == L - 1) for i, b in enumerate(x.biases)]
        return WeightSpaceFeatures(weights, biases)

    def extra_repr(self) -> str:
        return (
            f"in_channels={self.in_channels}, mapping_size={self.mapping_size}, "
            f"scale={self.scale}, seed={self.seed}, out_channels={self.out_channels}"
        )


class _FourierFeatures(torch.autograd.Function):
    """``[sin(x P), cos(x P)]`` along channels for ``x`` ``(B, C, *shape)`` and ``P`` ``(C, M)``.

    Forward: one output allocation; ``z = x P`` is written into the sine half (a broadcast
    product when C = 1, no transposes), the cosines are taken from it, then the sines in place.
    Backward: ``dz = g_sin cos z - g_cos sin z`` from the saved output (sin' = cos, cos' = -sin),
    so nothing is recomputed.
    """

    @staticmethod
    def forward(
        ctx: Any, x: Tensor, proj: Tensor, extra: int, fill: Callable[[Tensor], None] | None
    ) -> Tensor:
        C, M = proj.shape
        out = x.new_empty(x.shape[0], 2 * M + extra, *x.shape[2:])
        z, cos = out[:, :M], out[:, M : 2 * M]
        if C == 1:
            torch.mul(x, _channels(proj[0], x.ndim), out=z)
        else:
            z.copy_((x.movedim(1, -1) @ proj).movedim(-1, 1))
        torch.cos(z, out=cos)
        z.sin_()
        if fill is not None:  # constant channels after the features (an IO encoding)
            fill(out[:, 2 * M :])
        ctx.save_for_backward(x, proj, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, proj, out = ctx.saved_tensors
        C, M = proj.shape
        dz = grad[:, :M] * out[:, M : 2 * M]
        dz.addcmul_(grad[:, M : 2 * M], out[:, :M], value=-1.0)
        grad_x = grad_proj = None
        if ctx.needs_input_grad[0]:
            if C == 1:
                grad_x = (dz * _channels(proj[0], x.ndim)).sum(1, keepdim=True)
            else:
                grad_x = (dz.movedim(1, -1) @ proj.t()).movedim(-1, 1)
        if ctx.needs_input_grad[1]:
            grad_proj = x.transpose(0, 1).reshape(C, -1) @ dz.transpose(0, 1).reshape(M, -1).t()
        return grad_x, grad_proj, None, None


def _channels(v: Tensor, ndim: int) -> Tensor:
    """A ``(C,)`` vector viewed along the channel axis of ``ndim``-D features."""
    return v.reshape(-1, *[1] * (ndim - 2))
