"""Models on weight spaces: invariant and equivariant NFNs, and the baselines they are compared to."""

from weightspace.models.baselines import FlatMLP, StatNet, tensor_statistics
from weightspace.models.nfn import EquivariantNFN, InvariantNFN, MLPHead

__all__ = [
    "EquivariantNFN",
    "FlatMLP",
    "InvariantNFN",
    "MLPHead",
    "StatNet",
    "tensor_statistics",
]
