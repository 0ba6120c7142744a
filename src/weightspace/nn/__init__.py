"""NF-Layers and friends: equivariant linear maps, pools, encodings, entrywise ops."""

from weightspace.nn.activation import Activation, ChannelDropout, ChannelNorm, get_activation
from weightspace.nn.encoding import GaussianFourierFeatures, LearnedIOEncoding, SinusoidalIOEncoding
from weightspace.nn.linear import HNPLinear, NPLinear, PointwiseLinear
from weightspace.nn.pool import HNPPool, NPPool, StatsPool
from weightspace.nn.probe import ProbeFeatures

__all__ = [
    "Activation",
    "ChannelDropout",
    "ChannelNorm",
    "GaussianFourierFeatures",
    "HNPLinear",
    "HNPPool",
    "LearnedIOEncoding",
    "NPLinear",
    "NPPool",
    "PointwiseLinear",
    "ProbeFeatures",
    "SinusoidalIOEncoding",
    "StatsPool",
    "get_activation",
]
