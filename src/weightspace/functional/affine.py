"""Compose networks with an affine map of their inputs, in weight space.

A dense network ``f(x) = W_L σ(… σ(W_1 x + b_1) …) + b_L`` composed with ``x ↦ A x + t`` is again
such a network, with first layer ``W_1 A`` and bias ``b_1 + W_1 t``: the change stays in the
first layer and the function is exactly ``f(A x + t)``. For an implicit neural representation
whose input is a pixel coordinate, this moves, turns or scales the image it draws, without
rendering it: image augmentation performed on the weights.
"""

from __future__ import annotations

import torch
from torch import Tensor

from weightspace.space.features import WeightSpaceFeatures

__all__ = ["precompose_affine", "random_similarities"]


def precompose_affine(
    features: WeightSpaceFeatures, matrix: Tensor, offset: Tensor
) -> WeightSpaceFeatures:
    """The networks ``x ↦ f_b(A_b x + t_b)``: first layer ``W_1 A_b``, bias ``b_1 + W_1 t_b``.

    Parameters
    ----------
    features:
        B dense networks (any channel count: every channel is transformed alike).
    matrix:
        ``(B, n_0, n_0)`` or ``(n_0, n_0)`` (shared), the linear part ``A``.
    offset:
        ``(B, n_0)`` or ``(n_0,)``, the translation ``t``.

    Shapes
    ------
    - features: ``W_1 (B, C, n_1, n_0)``, ``b_1 (B, C, n_1)``; the other tensors are kept
    - returns: features of the same shapes
    """
    spec = features.spec
    if spec.kernel_shapes[0] != ():
        raise ValueError(
            f"precompose_affine: the first layer of {spec} is a convolution; only a dense first "
            "layer composes with an affine map of the inputs"
        )
    B, n0 = features.batch_size, spec.widths[0]
    matrix = matrix.to(dtype=features.dtype, device=features.device)
    offset = offset.to(dtype=features.dtype, device=features.device)
    if matrix.shape == (n0, n0):
        matrix = matrix.expand(B, n0, n0)
    if offset.shape == (n0,):
        offset = offset.expand(B, n0)
    if matrix.shape != (B, n0, n0) or offset.shape != (B, n0):
        raise ValueError(
            f"precompose_affine: matrix has shape {tuple(matrix.shape)} and offset "
            f"{tuple(offset.shape)}; expected ({B}, {n0}, {n0}) or ({n0}, {n0}), and ({B}, {n0}) "
            f"or ({n0},)"
        )
    w1, b1 = features.weights[0], features.biases[0]  # (B, C, n_1, n_0), (B, C, n_1)
    new_w1 = torch.einsum("bcij,bjk->bcik", w1, matrix)
    new_b1 = b1 + torch.einsum("bcij,bj->bci", w1, offset)
    weights = (new_w1, *features.weights[1:])
    biases = (new_b1, *features.biases[1:])
    return WeightSpaceFeatures(weights, biases)


def random_similarities(
    batch_size: int,
    *,
    max_degrees: float = 0.0,
    max_scale: float = 1.0,
    max_shift: float = 0.0,
    mirror_axis: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor]:
    """Random 2-D similarity maps ``x ↦ s R(θ) M x + t`` for :func:`precompose_affine`.

    ``θ`` uniform in ``±max_degrees``, ``log s`` uniform in ``±log max_scale``, each coordinate
    of ``t`` uniform in ``±max_shift`` (in input units). ``M`` is the identity, or, with
    ``mirror_axis`` set, negates that input coordinate with probability 1/2 (on a grid symmetric
    about 0, such as :func:`weightspace.data.inr.pixel_grid`, axis 1 mirrors an image left to
    right). The mirror's coin is drawn after the other numbers, so without it the maps are the
    same for a given generator.

    Shapes
    ------
    - returns ``(batch_size, 2, 2)`` matrices and ``(batch_size, 2)`` offsets (float32)
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"random_similarities: batch_size must be a positive int, got {batch_size!r}"
        )
    for name, value, low in (
        ("max_degrees", max_degrees, 0.0),
        ("max_scale", max_scale, 1.0),
        ("max_shift", max_shift, 0.0),
    ):
        if not isinstance(value, int | float) or not value >= low or value != value:
            raise ValueError(
                f"random_similarities: {name} must be a number >= {low}, got {value!r}"
            )
    if mirror_axis is not None and (
        isinstance(mirror_axis, bool)
        or not isinstance(mirror_axis, int)
        or mirror_axis not in (0, 1)
    ):
        raise ValueError(
            f"random_similarities: mirror_axis must be None, 0 or 1, got {mirror_axis!r}"
        )
    u = torch.rand(batch_size, 4, generator=generator, dtype=torch.float64) * 2 - 1
    theta = torch.deg2rad(u[:, 0] * max_degrees)
    scale = torch.exp(u[:, 1] * torch.log(torch.tensor(float(max_scale), dtype=torch.float64)))
    cos, sin = torch.cos(theta) * scale, torch.sin(theta) * scale
    matrix = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    offset = u[:, 2:] * max_shift
    if mirror_axis is not None:
        flip = torch.rand(batch_size, generator=generator, dtype=torch.float64) < 0.5
        sign = torch.ones(batch_size, 2, dtype=torch.float64)
        sign[:, mirror_axis] = torch.where(flip, -1.0, 1.0)
        matrix = matrix * sign[:, None, :]  # s R(θ) M: column mirror_axis negated
    return matrix.float().to(device), offset.float().to(device)
