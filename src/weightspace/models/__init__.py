"""Models on weight spaces: invariant and equivariant NFNs, and the baselines they are compared to."""

from weightspace.models.baselines import FlatMLP, StatNet, tensor_statistics
from weightspace.models.edit import FlatDelta, WeightEdit
from weightspace.models.nfn import EquivariantNFN, InvariantNFN, MLPHead
from weightspace.models.probe import HybridModel, ProbeModel
from weightspace.models.standardize import Standardized

__all__ = [
    "EquivariantNFN",
    "FlatDelta",
    "FlatMLP",
    "HybridModel",
    "InvariantNFN",
    "MLPHead",
    "ProbeModel",
    "Standardized",
    "StatNet",
    "WeightEdit",
    "tensor_statistics",
]
