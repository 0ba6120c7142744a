"""The permutation symmetry of weight spaces: sample group elements and apply them; and the
sign and scale symmetries of odd and ReLU activations (:mod:`weightspace.symmetry.neurons`)."""

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

__all__ = [
    "compose",
    "elements",
    "flip_signs",
    "identity",
    "inverse",
    "permute_features",
    "permute_module",
    "rescale_neurons",
    "sample",
    "sample_scales",
    "sample_signs",
]
