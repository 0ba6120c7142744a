import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from weightspace import NetworkSpec
from weightspace.nn import HNPPool, NPPool
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
