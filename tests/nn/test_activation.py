import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from weightspace import NetworkSpec
from weightspace.nn import Activation, ChannelDropout, ChannelNorm, get_activation
from weightspace.testing import assert_equivariant, random_features
from weightspace.testing.strategies import network_specs


@given(
    spec=network_specs(),
    channels=st.integers(1, 4),
    name=st.sampled_from(["relu", "tanh", "sin", "gelu"]),
)
def test_entrywise_ops_are_np_equivariant(spec, channels, name):
    assert_equivariant(Activation(name), spec, "np", in_channels=channels)
    norm = ChannelNorm(channels)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    assert_equivariant(norm, spec, "np", in_channels=channels)


@given(spec=network_specs(), channels=st.integers(1, 4))
def test_channel_dropout_commutes_with_permutations_in_training(spec, channels):
    from weightspace import symmetry

    drop = ChannelDropout(0.5).train()
    x = random_features(spec, 3, channels, generator=torch.Generator().manual_seed(0))
    g = symmetry.sample(spec, "np", generator=torch.Generator().manual_seed(1))
    torch.manual_seed(7)
    a = drop(x.permute(g))
    torch.manual_seed(7)
    b = drop(x).permute(g)
    assert all(torch.equal(u, v) for u, v in zip(a.tensors, b.tensors))


def test_channel_dropout_drops_whole_channels_and_rescales():
    spec = NetworkSpec((3, 4, 2))
    x = random_features(spec, 64, 8, dtype=torch.float32).map(lambda t: t.abs() + 1)
    torch.manual_seed(0)
    y = ChannelDropout(0.25).train()(x)
    dropped = y.weights[0].flatten(2).amax(2) == 0  # (B, C)
    for t in y.tensors:  # a dropped (network, channel) is dropped in every tensor
        assert torch.equal(t.flatten(2).amax(2) == 0, dropped)
    assert 0.1 < dropped.float().mean().item() < 0.4
    kept = ~dropped
    ratio = y.biases[0][kept] / x.biases[0][kept]
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / 0.75))
    assert ChannelDropout(0.25).eval()(x) is x
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        ChannelDropout(1.0)


def test_channel_norm_normalises_channels():
    spec = NetworkSpec((3, 4, 2))
    x = random_features(spec, 2, 6, dtype=torch.float64).map(lambda t: 3 * t + 5)
    y = ChannelNorm(6).double()(x)
    for t in y.tensors:
        assert torch.allclose(t.mean(1), torch.zeros((), dtype=t.dtype), atol=1e-7)
        assert torch.allclose(t.var(1, unbiased=False), torch.ones((), dtype=t.dtype), atol=1e-4)
    with pytest.raises(ValueError, match="expected 6 channels, got 2"):
        ChannelNorm(6)(random_features(spec, 1, 2))


def test_activation_lookup():
    assert get_activation("relu")(torch.tensor(-1.0)) == 0
    assert get_activation(torch.sin) is torch.sin
    with pytest.raises(ValueError, match="unknown activation 'swishy'"):
        get_activation("swishy")
