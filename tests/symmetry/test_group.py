import pytest
import torch

from weightspace import NetworkSpec, symmetry
from weightspace.testing import random_features

SPEC = NetworkSpec((2, 3, 3, 2))


def test_sample_permutes_only_the_groups_layers():
    gen = torch.Generator().manual_seed(0)
    hnp = symmetry.sample(SPEC, "hnp", generator=gen)
    assert hnp[0] is None and hnp[3] is None
    assert sorted(hnp[1].tolist()) == [0, 1, 2]
    np_ = symmetry.sample(SPEC, "np", generator=gen)
    assert all(p is not None for p in np_)
    batched = symmetry.sample(SPEC, "hnp", batch_size=4, generator=gen)
    assert batched[1].shape == (4, 3)
    assert torch.equal(batched[2].sort(dim=1).values, torch.arange(3).expand(4, 3))


def test_sample_honours_the_generator():
    a = symmetry.sample(SPEC, "np", generator=torch.Generator().manual_seed(5))
    b = symmetry.sample(SPEC, "np", generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("mode", ["np", "hnp"])
def test_elements_enumerate_the_group(mode):
    elems = list(symmetry.elements(SPEC, mode))
    assert len(elems) == SPEC.group_order(mode)
    keys = {tuple(tuple(p.tolist()) if p is not None else () for p in g) for g in elems}
    assert len(keys) == len(elems)


def test_inverse_and_compose_act_as_a_group():
    x = random_features(SPEC, 2, 1)
    gen = torch.Generator().manual_seed(3)
    g, h = symmetry.sample(SPEC, "np", generator=gen), symmetry.sample(SPEC, "np", generator=gen)
    twice = x.permute(g).permute(h)
    once = x.permute(symmetry.compose(g, h))
    assert all(torch.equal(a, b) for a, b in zip(twice.tensors, once.tensors))
    back = x.permute(g).permute(symmetry.inverse(g))
    assert all(torch.equal(a, b) for a, b in zip(back.tensors, x.tensors))
    assert symmetry.permute_features(x, g).weights[0].shape == x.weights[0].shape
