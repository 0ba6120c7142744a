"""Neuron-wise symmetries that depend on the activation: signs and positive scales.

Hidden neuron j of layer i is row j of ``W_i``, entry j of ``b_i`` and column j of ``W_{i+1}``.
Multiplying the first two by a factor ``c`` and the column by ``1 / c`` leaves the function
unchanged when ``σ(c u) = c σ(u)``:

- ``c = ±1`` for odd activations (sine, tanh): the **sign** symmetry. With the permutations it
  is the signed-permutation symmetry of SIRENs. :func:`sample_signs`, :func:`flip_signs`.
- ``c > 0`` for positively homogeneous activations (ReLU, leaky ReLU, identity): the **scale**
  symmetry. Linear pooling between layers (global average pooling before a dense layer) keeps
  it. :func:`sample_scales`, :func:`rescale_neurons`.

Neither holds for the other kind of activation (ReLU has no sign symmetry, tanh and sine no
scale symmetry). NFNs are built for the permutations only, so random signs or scales are exact,
free data augmentations for weight spaces of the matching activation.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

__all__ = ["flip_signs", "rescale_neurons", "sample_scales", "sample_signs"]

#: One ``(B, n_i)`` tensor of factors per hidden layer i = 1..L-1 (index i-1 in the list).
Factors = list[Tensor]


def generator_device(generator: torch.Generator | None) -> torch.device:
    """Where a sampler draws: on ``generator``'s device, or the CPU for the global generator.

    Samplers draw there and then move the result to the ``device`` asked for, so that a CPU
    generator gives the same factors whatever device they are used on (and a CUDA generator
    can be passed without a device mismatch).
    """
    return generator.device if generator is not None else torch.device("cpu")


def _check_batch(batch_size: int, who: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{who}: batch_size must be a positive int, got {batch_size!r}")


def sample_signs(
    spec: NetworkSpec,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Factors:
    """Uniformly random ±1 per hidden neuron and network: ``(batch_size, n_i)`` for i = 1..L-1.

    Drawn on ``generator``'s device (the CPU for the global generator) and moved to ``device``.
    """
    _check_batch(batch_size, "sample_signs")
    source = generator_device(generator)
    out = []
    for n in spec.widths[1:-1]:
        bits = torch.randint(0, 2, (batch_size, n), generator=generator, device=source)
        out.append((1 - 2 * bits).to(device=device, dtype=dtype))
    return out


def sample_scales(
    spec: NetworkSpec,
    batch_size: int,
    *,
    max_factor: float = 2.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Factors:
    """Log-uniform factors in ``[1 / max_factor, max_factor]`` per hidden neuron and network.

    Drawn on ``generator``'s device (the CPU for the global generator) and moved to ``device``.
    """
    _check_batch(batch_size, "sample_scales")
    if not (isinstance(max_factor, int | float) and math.isfinite(max_factor) and max_factor >= 1):
        raise ValueError(
            f"sample_scales: max_factor must be a finite number >= 1, got {max_factor!r}"
        )
    log_max = math.log(max_factor)
    source = generator_device(generator)
    out = []
    for n in spec.widths[1:-1]:
        u = torch.rand(batch_size, n, generator=generator, dtype=torch.float64, device=source)
        out.append(torch.exp((2 * u - 1) * log_max).to(device=device, dtype=dtype))
    return out


def check_factors(features: WeightSpaceFeatures, factors: Factors, who: str, name: str) -> None:
    """Raise a ValueError unless ``factors`` holds one ``(B, n_i)`` tensor per hidden layer."""
    L = len(features.weights)
    B = features.batch_size
    if len(factors) != L - 1:
        raise ValueError(
            f"{who}: expected {L - 1} {name} tensors (one per hidden layer), got {len(factors)}"
        )
    for i, s in enumerate(factors, start=1):
        n = features.biases[i - 1].shape[2]
        if tuple(s.shape) != (B, n):
            raise ValueError(
                f"{who}: {name}[{i - 1}] (hidden layer {i}) has shape {tuple(s.shape)}, "
                f"expected ({B}, {n})"
            )


def along_rows(s: Tensor, w: Tensor) -> Tensor:
    """Per-neuron values ``s (B, n_i)`` shaped to broadcast over the rows of ``W_i`` (or ``b_i``),
    in ``w``'s dtype and device."""
    s = s.to(dtype=w.dtype, device=w.device)
    return s.view(s.shape[0], 1, -1, *[1] * (w.dim() - 3))


def along_columns(s: Tensor, w: Tensor) -> Tensor:
    """Per-neuron values ``s (B, n_i)`` shaped to broadcast over the columns of ``W_{i+1}``."""
    s = s.to(dtype=w.dtype, device=w.device)
    return s.view(s.shape[0], 1, 1, -1, *[1] * (w.dim() - 4))


def _scale_hidden(
    features: WeightSpaceFeatures, factors: Factors, who: str, name: str
) -> WeightSpaceFeatures:
    check_factors(features, factors, who, name)
    weights, biases = list(features.weights), list(features.biases)
    for i, s in enumerate(factors, start=1):
        weights[i - 1] = weights[i - 1] * along_rows(s, weights[i - 1])
        biases[i - 1] = biases[i - 1] * along_rows(s, biases[i - 1])
        weights[i] = weights[i] / along_columns(s, weights[i])
    return WeightSpaceFeatures(weights, biases)


def flip_signs(features: WeightSpaceFeatures, signs: Factors) -> WeightSpaceFeatures:
    """Negate the hidden neurons where ``signs`` is -1 (rows of ``W_i``, ``b_i``, columns of
    ``W_{i+1}``), per network. Any channel count; kernels are carried along.

    Shapes
    ------
    - features: ``W_i (B, C, n_i, n_{i-1}, *kernel)``, ``b_i (B, C, n_i)``
    - signs: ``(B, n_i)`` of ±1 for each hidden layer i = 1..L-1
    """
    return _scale_hidden(features, signs, "flip_signs", "signs")


def rescale_neurons(features: WeightSpaceFeatures, scales: Factors) -> WeightSpaceFeatures:
    """Multiply hidden neuron j of layer i by ``scales[i-1][:, j]`` (row of ``W_i``, ``b_i``) and
    divide column j of ``W_{i+1}`` by it, per network. Any channel count; kernels carried along.

    Shapes
    ------
    - features: ``W_i (B, C, n_i, n_{i-1}, *kernel)``, ``b_i (B, C, n_i)``
    - scales: ``(B, n_i)``, positive, for each hidden layer i = 1..L-1
    """
    for i, s in enumerate(scales):
        if not bool((s > 0).all()):
            raise ValueError(f"rescale_neurons: scales[{i}] must be positive everywhere")
    return _scale_hidden(features, scales, "rescale_neurons", "scales")
