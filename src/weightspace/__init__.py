"""weightspace: permutation equivariant neural functional networks (NFNs)."""

from weightspace import functional, models, nn, symmetry, testing
from weightspace.space import NetworkSpec, WeightSpaceFeatures, collate

__version__ = "0.1.0"
__all__ = [
    "NetworkSpec",
    "WeightSpaceFeatures",
    "__version__",
    "collate",
    "functional",
    "models",
    "nn",
    "symmetry",
    "testing",
]
