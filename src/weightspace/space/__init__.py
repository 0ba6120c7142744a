"""Weight spaces: their spec, features on them, and the canonical layout layers compute in."""

from weightspace.space.features import WeightSpaceFeatures, collate
from weightspace.space.layout import SpaceLayout, TensorLayout
from weightspace.space.spec import MODES, Mode, NetworkSpec, TensorSpec

__all__ = [
    "MODES",
    "Mode",
    "NetworkSpec",
    "SpaceLayout",
    "TensorLayout",
    "TensorSpec",
    "WeightSpaceFeatures",
    "collate",
]
