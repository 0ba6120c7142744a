"""NF-Layers and friends: equivariant linear maps, pools, encodings, entrywise ops."""

from weightspace.nn.activation import Activation, ChannelDropout, ChannelNorm, get_activation
from weightspace.nn.linear import HNPLinear, NPLinear, PointwiseLinear
from weightspace.nn.pool import HNPPool, NPPool

__all__ = [
    "Activation",
    "ChannelDropout",
    "ChannelNorm",
    "HNPLinear",
    "HNPPool",
    "NPLinear",
    "NPPool",
    "PointwiseLinear",
    "get_activation",
]
