"""The public test kit: check that your functions on weight space respect its symmetry.

>>> from weightspace.testing import assert_equivariant
>>> assert_equivariant(layer, spec, mode="hnp", in_channels=layer.in_channels)  # doctest: +SKIP
"""

from weightspace.testing.equivariance import (
    EquivarianceError,
    assert_equivariant,
    assert_invariant,
    equivariance_errors,
    inconsistent_permutation,
    invariance_error,
    random_features,
)

__all__ = [
    "EquivarianceError",
    "assert_equivariant",
    "assert_invariant",
    "equivariance_errors",
    "inconsistent_permutation",
    "invariance_error",
    "random_features",
]
