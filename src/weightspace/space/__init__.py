"""Weight spaces: their spec, features on them, and the canonical layout layers compute in."""

from weightspace.space.features import WeightSpaceFeatures, collate
from weightspace.space.layout import SpaceLayout, TensorLayout
from weightspace.space.spec import MODES, Mode, NetworkSpec, TensorSpec
from weightspace.space.trace import Gap, ModuleTrace, trace_module

__all__ = [
    "MODES",
    "Gap",
    "Mode",
    "ModuleTrace",
    "NetworkSpec",
    "SpaceLayout",
    "TensorLayout",
    "TensorSpec",
    "WeightSpaceFeatures",
    "collate",
    "trace_module",
]
