"""The permutation symmetry of weight spaces: sample group elements and apply them."""

from weightspace.symmetry.group import (
    compose,
    elements,
    identity,
    inverse,
    permute_features,
    permute_module,
    sample,
)

__all__ = [
    "compose",
    "elements",
    "identity",
    "inverse",
    "permute_features",
    "permute_module",
    "sample",
]
