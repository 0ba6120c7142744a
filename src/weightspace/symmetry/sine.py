"""The exact symmetries of sine networks beyond permutations and signs, and a canonical form.

Hidden neuron j of layer i of a SIREN computes ``sin(ω0 (W_i h + b_i))_j``; write
``φ = ω0 b_ij`` for its phase. Besides the neuron permutations and the sign flip of
:func:`~weightspace.symmetry.flip_signs` (negate row j of ``W_i``, ``b_ij`` and column j of
``W_{i+1}``), sine has two more exact symmetries:

- **half period**: ``b_ij + π/ω0`` negates the neuron's output (``sin(a + π) = -sin a``); negating
  column j of ``W_{i+1}`` undoes that. :func:`shift_half_periods`, :func:`sample_half_period_shifts`.
- **full period**: ``b_ij + 2π/ω0`` changes nothing (two half periods).

Together with the sign flip they fold every phase into ``[0, π/2]``: shift by whole half periods
into ``[0, π)``, then, for ``φ ∈ (π/2, π)``, use ``sin(a + φ) = sin(-a + (π - φ))``: negate row j
of ``W_i`` and set the phase to ``π - φ`` (no column change). :func:`canonicalize_sines` does this
for every hidden neuron at once; :func:`canonicalize` does it after checking that the activation
is a sine, and reads ω0 from it.

The canonical form is the same for a network and every copy of it under these symmetries (sign
flips, half and full periods), up to float rounding, and it commutes exactly with neuron
permutations. It is unique except where a phase lies on the boundary of ``[0, π/2]`` (there two
canonical forms exist: ``sin`` is odd at ``φ = 0``, ``cos`` even at ``φ = π/2``), which random and
trained weights reach with probability zero, but where float rounding near the boundary can pick
either one.

The output layer is linear and has no such symmetry. All of these hold for sine CNNs too (kernels
are carried along, as by :func:`~weightspace.symmetry.flip_signs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.symmetry.neurons import (
    Factors,
    _check_batch,
    along_columns,
    along_rows,
    check_factors,
    generator_device,
)

__all__ = [
    "canonicalize",
    "canonicalize_sines",
    "sample_half_period_shifts",
    "shift_half_periods",
]


def _check_omega0(omega0: float, who: str) -> float:
    if (
        isinstance(omega0, bool)
        or not isinstance(omega0, int | float)
        or not math.isfinite(omega0)
        or omega0 <= 0
    ):
        raise ValueError(f"{who}: omega0 must be a positive finite number, got {omega0!r}")
    return float(omega0)


def sample_half_period_shifts(
    spec: NetworkSpec,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Factors:
    """Uniformly random booleans per hidden neuron and network: shift it by half a period or not.

    Shapes
    ------
    - returns: ``(batch_size, n_i)`` bool for each hidden layer i = 1..L-1
    """
    _check_batch(batch_size, "sample_half_period_shifts")
    source = generator_device(generator)  # drawn there, then moved to device
    out = []
    for n in spec.widths[1:-1]:
        bits = torch.randint(0, 2, (batch_size, n), generator=generator, device=source)
        out.append(bits.to(device=device, dtype=torch.bool))
    return out


def shift_half_periods(
    features: WeightSpaceFeatures, shifts: Factors, *, omega0: float = 30.0
) -> WeightSpaceFeatures:
    """Shift the hidden neurons where ``shifts`` is true by half a period, per network: add
    ``π/ω0`` to ``b_ij`` and negate column j of ``W_{i+1}``. A sine network
    (``sin(ω0 (W h + b))`` in its hidden layers) computes the same function afterwards.

    Any channel count; kernels are carried along.

    Parameters
    ----------
    features:
        The networks.
    shifts:
        One bool (or 0/1) tensor per hidden layer, e.g. from :func:`sample_half_period_shifts`.
    omega0:
        The networks' sine frequency (:data:`weightspace.data.inr.OMEGA_0` for this package's
        SIRENs; 1 for ``forward(…, activation="sin")``).

    Shapes
    ------
    - features: ``W_i (B, C, n_i, n_{i-1}, *kernel)``, ``b_i (B, C, n_i)``
    - shifts: ``(B, n_i)`` for each hidden layer i = 1..L-1
    - returns: features of the same shapes
    """
    omega0 = _check_omega0(omega0, "shift_half_periods")
    check_factors(features, shifts, "shift_half_periods", "shifts")
    for i, s in enumerate(shifts):
        if s.dtype != torch.bool and not bool(((s == 0) | (s == 1)).all()):
            raise ValueError(f"shift_half_periods: shifts[{i}] must be bool or 0/1 everywhere")
    weights, biases = list(features.weights), list(features.biases)
    for i, s in enumerate(shifts, start=1):
        s = s.to(torch.bool).to(torch.int8)  # 0/1; the products below by 0/1 and ±1 are exact
        biases[i - 1] = biases[i - 1] + along_rows(s, biases[i - 1]) * (math.pi / omega0)
        weights[i] = weights[i] * along_columns(1 - 2 * s, weights[i])
    return WeightSpaceFeatures(weights, biases)


def canonicalize_sines(
    features: WeightSpaceFeatures, *, omega0: float = 30.0
) -> WeightSpaceFeatures:
    """Fold every hidden neuron's phase ``ω0 b_ij`` into ``[0, π/2]`` with the exact sine
    symmetries (module docstring); the function the networks compute is unchanged.

    Per neuron, in the features' dtype and for all neurons at once: ``k = floor(b / (π/ω0))``
    half periods are removed (negating column j of ``W_{i+1}`` when k is odd), and a remaining
    phase in ``(π/2, π)`` becomes ``π - φ`` with row j of ``W_i`` negated. The new biases are
    clamped into ``[0, π/(2ω0)]``, a change of float rounding only, so that the result is itself
    canonical: it is idempotent (a second call changes no bit). Afterwards every hidden bias satisfies
    ``0 <= b_ij <= π/(2ω0)`` literally (no reduction modulo 2π).

    Parameters
    ----------
    features:
        Sine networks, one channel (a network's own weights).
    omega0:
        Their frequency: hidden layers compute ``sin(omega0 (W h + b))``. A wrong value changes
        the function. :func:`canonicalize` reads it from the activation instead.

    Returns
    -------
    WeightSpaceFeatures
        New features of the same shapes, dtype and device.

    Raises
    ------
    ValueError
        If the features have more than one channel, a hidden bias is not finite, or ``omega0``
        is not a positive finite number.

    Shapes
    ------
    - features: ``W_i (B, 1, n_i, n_{i-1}, *kernel)``, ``b_i (B, 1, n_i)``
    - returns: the same
    """
    omega0 = _check_omega0(omega0, "canonicalize_sines")
    if features.channels != 1:
        raise ValueError(
            f"canonicalize_sines: features have {features.channels} channels, expected 1 "
            "(each item one network's own weights)"
        )
    weights, biases = list(features.weights), list(features.biases)
    for i in range(1, features.num_layers):
        b = biases[i - 1]
        if not bool(torch.isfinite(b).all()):
            raise ValueError(
                f"canonicalize_sines: b_{i} (hidden layer {i}) has non-finite entries; "
                "expected finite biases"
            )
        half = torch.tensor(math.pi / omega0, dtype=b.dtype, device=b.device)
        quarter = torch.tensor(math.pi / (2 * omega0), dtype=b.dtype, device=b.device)
        k = torch.floor(b / half)
        rest = b - k * half  # in [0, half) up to rounding
        fold = rest > quarter
        new_b = torch.where(fold, half - rest, rest).clamp(min=0).minimum(quarter)
        odd = torch.remainder(k, 2)  # 0 or 1: k is an exact integer in float
        biases[i - 1] = new_b
        # Per neuron (B, n): b_i is (B, 1, n), so [:, 0] drops the channel axis.
        weights[i - 1] = weights[i - 1] * along_rows(1 - 2 * fold[:, 0].to(b.dtype), weights[i - 1])
        weights[i] = weights[i] * along_columns(1 - 2 * odd[:, 0], weights[i])
    return WeightSpaceFeatures(weights, biases)


def _sine_frequency(activation: Any) -> float | None:
    """ω0 of a sine activation this package knows, else ``None``."""
    from weightspace.data.inr import OMEGA_0, Sine, siren_activation  # lazy: data imports a lot

    if isinstance(activation, str):
        return 1.0 if activation == "sin" else None
    if activation is torch.sin:
        return 1.0
    if activation is siren_activation:
        return OMEGA_0
    if isinstance(activation, Sine):
        return activation.w0
    return None


def _name(activation: Any) -> str:
    if isinstance(activation, str):
        return repr(activation)
    return getattr(activation, "__name__", None) or type(activation).__name__


def canonicalize(
    features: WeightSpaceFeatures, activation: str | Callable[[Tensor], Tensor]
) -> WeightSpaceFeatures:
    """:func:`canonicalize_sines` for networks with a given activation, refusing any but a sine.

    Parameters
    ----------
    features:
        The networks, one channel.
    activation:
        Their hidden activation, as passed to :func:`weightspace.functional.forward`: ``"sin"``
        or ``torch.sin`` (ω0 = 1), :func:`weightspace.data.inr.siren_activation` (ω0 =
        :data:`~weightspace.data.inr.OMEGA_0`) or a :class:`weightspace.data.inr.Sine` module
        (its ``w0``).

    Raises
    ------
    ValueError
        For any other activation (``"relu"``, ``"tanh"``, …): these networks have no half-period
        symmetry, so the fold would change their function.

    Shapes
    ------
    - features: ``W_i (B, 1, n_i, n_{i-1}, *kernel)``, ``b_i (B, 1, n_i)``
    - returns: the same
    """
    omega0 = _sine_frequency(activation)
    if omega0 is None:
        raise ValueError(
            f"canonicalize: activation {_name(activation)} is not a sine; canonicalisation is "
            "defined for sine networks only ('sin', torch.sin, weightspace.data.inr.Sine or "
            "siren_activation)"
        )
    return canonicalize_sines(features, omega0=omega0)
