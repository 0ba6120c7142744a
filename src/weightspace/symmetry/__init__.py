"""The permutation symmetry of weight spaces: sample group elements and apply them; and the
sign symmetry of networks with odd activations (:mod:`weightspace.symmetry.signs`)."""

from weightspace.symmetry.group import (
    compose,
    elements,
    identity,
    inverse,
    permute_features,
    permute_module,
    sample,
)
from weightspace.symmetry.signs import flip_signs, sample_signs

__all__ = [
    "compose",
    "elements",
    "flip_signs",
    "identity",
    "inverse",
    "permute_features",
    "permute_module",
    "sample",
    "sample_signs",
]
