import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from weightspace import NetworkSpec
from weightspace.nn import HNPPool, NPPool, StatsPool
from weightspace.testing import (
    assert_invariant,
    inconsistent_permutation,
    invariance_error,
    random_features,
)
from weightspace.testing.strategies import network_specs

POOLS = {"np": NPPool, "hnp": HNPPool}


@given(spec=network_specs(), channels=st.integers(1, 4), mode=st.sampled_from(["np", "hnp"]))
def test_pools_are_invariant_with_the_advertised_size(spec, channels, mode):
    pool = POOLS[mode](spec)
    assert_invariant(pool, spec, mode, in_channels=channels, rtol=1e-9)
    out = pool(random_features(spec, 3, channels))
    assert out.shape == (3, pool.output_size(channels))
    assert pool.output_size(channels) == spec.pool_size(mode, channels)


def test_pool_values():
    spec = NetworkSpec((2, 3, 2))
    x = random_features(spec, 1, 1)
    np_out, hnp_out = NPPool(spec)(x), HNPPool(spec)(x)
    assert torch.allclose(np_out[0], torch.stack([t.mean() for t in x.tensors]))
    w1, w2, b1, b2 = x.tensors
    expected = torch.cat([w1[0, 0].mean(0), w2[0, 0].mean(1), b1[0, 0].mean()[None], b2[0, 0]])
    assert torch.allclose(hnp_out[0], expected)


def test_hnp_pool_is_not_np_invariant_and_breaks_under_inconsistency():
    spec = NetworkSpec((3, 4, 2))
    assert invariance_error(HNPPool(spec), spec, "np") > 1e-3
    # Pools alone ignore which rows go with which columns; the control acts on pool∘layer in the
    # model tests. Here: a pool is blind to it, as it must be for a mean.
    err = invariance_error(
        NPPool(spec), spec, perturb=lambda x, g: inconsistent_permutation(x, 1, g)
    )
    assert err < 1e-12


def test_pool_rejects_other_spaces():
    with pytest.raises(ValueError, match="built for"):
        NPPool(NetworkSpec((3, 4, 2)))(random_features(NetworkSpec((3, 5, 2))))


@given(spec=network_specs(), channels=st.integers(1, 3), mode=st.sampled_from(["np", "hnp"]))
def test_stats_pool_is_invariant_with_the_advertised_size(spec, channels, mode):
    pool = StatsPool(spec, mode)
    assert_invariant(pool, spec, mode, in_channels=channels, rtol=1e-9)
    out = pool(random_features(spec, 3, channels))
    assert out.shape == (3, pool.output_size(channels))
    assert torch.isfinite(out).all()


def test_stats_pool_values_match_numpy_and_contain_the_mean_pool():
    spec = NetworkSpec((3, 4, 2))
    x = random_features(spec, 2, 1)
    out = StatsPool(spec, "np")(x)
    expected = []
    for t in x.tensors:
        flat = t.reshape(2, -1).numpy()
        stats = [flat.mean(1), np.sqrt(flat.var(1) + 1e-8)]
        stats += list(np.quantile(flat, [0, 0.25, 0.5, 0.75, 1], axis=1))
        expected.append(np.stack(stats, axis=1))
    assert np.allclose(out.numpy(), np.concatenate(expected, axis=1))
    # Under HNP, b_2 (no permuted axis) passes through once; W_1 pools over its hidden rows.
    hnp = StatsPool(spec, "hnp")(x)
    w1, b2 = x.weights[0], x.biases[1]
    assert torch.allclose(hnp[:, -2:], b2[:, 0])
    w1_means = hnp[:, : 7 * 3].reshape(2, 3, 7)[..., 0]
    assert torch.allclose(w1_means, w1[:, 0].mean(1))
    mean_pool = HNPPool(spec)(x)
    assert torch.allclose(w1_means, mean_pool[:, :3])


def test_stats_pool_controls_break():
    spec = NetworkSpec((3, 4, 2))
    # HNP's pool keeps inputs and outputs apart: permuting them (an NP element) must show.
    assert invariance_error(StatsPool(spec, "hnp"), spec, "np") > 1e-3
    # Not a disguised mean pool: scaling one entry of W_1 and compensating another keeps the
    # mean and moves the spread and the extremes.
    x = random_features(spec, 1, 1)
    w1 = x.weights[0].clone()
    delta = 5.0
    w1[0, 0, 0, 0] += delta
    w1[0, 0, 1, 1] -= delta
    y = type(x)([w1, *x.weights[1:]], x.biases, spec)
    before, after = StatsPool(spec, "np")(x)[0, :7], StatsPool(spec, "np")(y)[0, :7]
    assert torch.allclose(before[0], after[0])  # the mean
    assert (after[1:] - before[1:]).abs().max() > 1.0  # std and quantiles


def test_stats_pool_has_finite_gradients_on_constant_entries():
    spec = NetworkSpec((2, 3, 1))
    x = random_features(spec, 2, 1)
    const = type(x)([torch.ones_like(w).requires_grad_() for w in x.weights], x.biases, spec)
    StatsPool(spec, "np")(const).sum().backward()
    assert all(torch.isfinite(w.grad).all() for w in const.weights)


def test_stats_pool_rejects_other_spaces():
    with pytest.raises(ValueError, match="StatsPool: built for"):
        StatsPool(NetworkSpec((3, 4, 2)))(random_features(NetworkSpec((3, 5, 2))))
    with pytest.raises(TypeError, match="expected WeightSpaceFeatures"):
        StatsPool(NetworkSpec((3, 4, 2)))(torch.zeros(2, 3))
