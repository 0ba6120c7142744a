"""Sign symmetry of networks with an odd activation (sine, tanh).

If the activation is odd, negating hidden neuron j of layer i — row j of ``W_i``, entry j of
``b_i`` and column j of ``W_{i+1}`` — leaves the network's function unchanged:
``W_{i+1} σ(-(W_i h + b_i)) = -W_{i+1} σ(W_i h + b_i)``. Together with the permutations this is
the signed-permutation symmetry of SIRENs. It is not a symmetry of ReLU networks.

NFNs are built for the permutations only, so a random sign flip per hidden neuron is a free,
exact data augmentation for SIREN (or tanh) weight spaces: a new set of weights for the same
function.
"""

from __future__ import annotations

import torch
from torch import Tensor

from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec

__all__ = ["flip_signs", "sample_signs"]

#: One ``(B, n_i)`` tensor of ±1 per hidden layer i = 1..L-1 (index i-1 in the list).
Signs = list[Tensor]


def sample_signs(
    spec: NetworkSpec,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Signs:
    """Uniformly random ±1 per hidden neuron and network: ``(batch_size, n_i)`` for i = 1..L-1."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"sample_signs: batch_size must be a positive int, got {batch_size!r}")
    out = []
    for n in spec.widths[1:-1]:
        bits = torch.randint(0, 2, (batch_size, n), generator=generator)
        out.append((1 - 2 * bits).to(device=device, dtype=dtype))
    return out


def flip_signs(features: WeightSpaceFeatures, signs: Signs) -> WeightSpaceFeatures:
    """Negate the hidden neurons where ``signs`` is -1 (rows of ``W_i``, ``b_i``, columns of
    ``W_{i+1}``), per network. Any channel count; kernels are carried along.

    Shapes
    ------
    - features: ``W_i (B, C, n_i, n_{i-1}, *kernel)``, ``b_i (B, C, n_i)``
    - signs: ``(B, n_i)`` for each hidden layer i = 1..L-1
    """
    L = len(features.weights)
    B = features.batch_size
    if len(signs) != L - 1:
        raise ValueError(
            f"flip_signs: expected {L - 1} sign tensors (one per hidden layer), got {len(signs)}"
        )
    for i, s in enumerate(signs, start=1):
        n = features.biases[i - 1].shape[2]
        if tuple(s.shape) != (B, n):
            raise ValueError(
                f"flip_signs: signs[{i - 1}] (hidden layer {i}) has shape {tuple(s.shape)}, "
                f"expected ({B}, {n})"
            )
    weights, biases = list(features.weights), list(features.biases)
    for i, s in enumerate(signs, start=1):
        s = s.to(dtype=weights[i - 1].dtype, device=weights[i - 1].device)
        extra = weights[i - 1].dim() - 4  # kernel axes
        rows = s.view(B, 1, -1, 1, *[1] * extra)
        weights[i - 1] = weights[i - 1] * rows
        biases[i - 1] = biases[i - 1] * s.view(B, 1, -1)
        extra_next = weights[i].dim() - 4
        weights[i] = weights[i] * s.view(B, 1, 1, -1, *[1] * extra_next)
    return WeightSpaceFeatures(weights, biases)
