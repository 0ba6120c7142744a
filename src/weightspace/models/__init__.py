"""Models on weight spaces: invariant and equivariant NFNs, and the baselines they are compared to."""

from weightspace.models.baselines import FlatMLP, StatNet, tensor_statistics
from weightspace.models.edit import FlatDelta, WeightEdit
from weightspace.models.nfn import EquivariantNFN, InvariantNFN, MLPHead
from weightspace.models.probe import HybridModel, ProbeModel
from weightspace.models.standardize import Standardized
from weightspace.models.ticket_vae import MaskVAE, mask_elbo, mask_iou, top_k_mask

__all__ = [
    "EquivariantNFN",
    "FlatDelta",
    "FlatMLP",
    "HybridModel",
    "InvariantNFN",
    "MLPHead",
    "MaskVAE",
    "ProbeModel",
    "Standardized",
    "StatNet",
    "WeightEdit",
    "mask_elbo",
    "mask_iou",
    "tensor_statistics",
    "top_k_mask",
]
