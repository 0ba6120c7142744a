"""The permutation symmetry of weight spaces: sample group elements and apply them; the sign
and scale symmetries of odd and ReLU activations (:mod:`weightspace.symmetry.neurons`); and the
half-period symmetry and canonical form of sine networks (:mod:`weightspace.symmetry.sine`)."""

from weightspace.symmetry.group import (
    compose,
    elements,
    identity,
    inverse,
    permute_features,
    permute_module,
    sample,
)
from weightspace.symmetry.neurons import flip_signs, rescale_neurons, sample_scales, sample_signs
from weightspace.symmetry.sine import (
    canonicalize,
    canonicalize_sines,
    sample_half_period_shifts,
    shift_half_periods,
)

__all__ = [
    "canonicalize",
    "canonicalize_sines",
    "compose",
    "elements",
    "flip_signs",
    "identity",
    "inverse",
    "permute_features",
    "permute_module",
    "rescale_neurons",
    "sample",
    "sample_half_period_shifts",
    "sample_scales",
    "sample_signs",
    "shift_half_periods",
]
