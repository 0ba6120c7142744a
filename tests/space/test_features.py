import pytest
import torch
from torch.utils.data import DataLoader

from weightspace import NetworkSpec, WeightSpaceFeatures, collate, symmetry
from weightspace.testing import random_features

SPEC = NetworkSpec((3, 4, 5, 2))
CNN = NetworkSpec((2, 3, 4, 2), ((3, 3), (2, 2), ()))


def make(spec=SPEC, batch=2, channels=1, seed=0):
    return random_features(spec, batch, channels, generator=torch.Generator().manual_seed(seed))


def test_properties_and_spec_roundtrip():
    x = make(CNN, batch=3, channels=2)
    assert x.spec == CNN
    assert (x.batch_size, x.channels, x.num_layers) == (3, 2, 3)
    assert x.weights[0].shape == (3, 2, 3, 2, 3, 3)
    assert x.flatten().shape == (3, 2 * CNN.num_params)
    assert WeightSpaceFeatures.from_tensors(x.tensors).spec == CNN


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda w, b: (w[:1] + [w[1][..., :3]] + w[2:], b),
            r"W2 has shape \(2, 1, 5, 3\), expected \(2, 1, 5, 4\)",
        ),
        (
            lambda w, b: (w[:1] + [w[1][:, :, :3]] + w[2:], b),
            r"b2 has shape \(2, 1, 5\), expected \(2, 1, 3\)",
        ),
        (
            lambda w, b: (w, b[:2] + [b[2][..., :1]]),
            r"b3 has shape \(2, 1, 1\), expected \(2, 1, 2\)",
        ),
        (lambda w, b: (w, [b[0][:1]] + b[1:]), r"b1 has batch and channels \(1, 1\)"),
        (
            lambda w, b: ([w[0].float()] + w[1:], b),
            r"b1 is torch.float64 on cpu, but W1 is torch.float32",
        ),
        (lambda w, b: (w, b[:2]), "one weight and one bias per layer"),
        (
            lambda w, b: ([w[0][0]] + w[1:], b),
            r"W1 has shape \(1, 4, 3\), expected .* at least 4 axes",
        ),
        (lambda w, b: (w, b[:2] + [b[2].to("meta")]), "b3 is torch.float64 on meta"),
    ],
)
def test_validation_names_the_bad_tensor(mutate, match):
    x = make()
    weights, biases = mutate(list(x.weights), list(x.biases))
    with pytest.raises(ValueError, match=match):
        WeightSpaceFeatures(weights, biases)


def test_validation_against_a_spec():
    x = make()
    with pytest.raises(ValueError, match="W1 has shape"):
        WeightSpaceFeatures(x.weights, x.biases, NetworkSpec((4, 4, 5, 2)))
    with pytest.raises(TypeError, match=r"W1 must be a torch\.Tensor"):
        WeightSpaceFeatures([1.0], [torch.zeros(1, 1, 1)])


def test_permute_matches_explicit_indexing_and_inverts():
    x = make(CNN)
    g = symmetry.sample(CNN, "np", generator=torch.Generator().manual_seed(1))
    y = x.permute(g)
    w2 = x.weights[1][:, :, g[2]][:, :, :, g[1]]
    assert torch.equal(y.weights[1], w2)
    assert torch.equal(y.biases[0], x.biases[0][:, :, g[1]])
    back = y.permute(symmetry.inverse(g))
    assert all(torch.equal(a, b) for a, b in zip(back.tensors, x.tensors))


def test_per_network_permutations():
    x = make(batch=3)
    g = symmetry.sample(SPEC, "hnp", batch_size=3, generator=torch.Generator().manual_seed(2))
    y = x.permute(g)
    for n in range(3):
        single = [None if p is None else p[n] for p in g]
        expected = x[n].permute(single)
        assert all(torch.equal(a, b) for a, b in zip(y[n].tensors, expected.tensors))


def test_bad_permutations():
    x = make()
    with pytest.raises(ValueError, match="expected 4 entries"):
        x.permute([None, None])
    with pytest.raises(ValueError, match="layer 1 is not a permutation"):
        x.permute([None, torch.tensor([0, 0, 1, 2]), None, None])
    with pytest.raises(ValueError, match=r"layer 2: expected shape \(5,\)"):
        x.permute([None, None, torch.arange(4), None])
    with pytest.raises(TypeError, match="LongTensor"):
        x.permute([None, torch.arange(4.0), None, None])


def test_arithmetic_map_detach_to():
    x, y = make(), make(seed=1)
    # Distinct operands, so swapped ones or a dropped term would show.
    assert not torch.equal(x.weights[0], y.weights[0])
    z = 2 * x + y - x
    assert torch.allclose(z.weights[0], x.weights[0] + y.weights[0])
    for a, b, d in zip(x.tensors, y.tensors, (x - y).tensors):
        assert torch.equal(d, a - b)
        assert not torch.equal(d, b - a)
    for a, b, q in zip(x.tensors, y.tensors, (x * y + x).tensors):
        assert torch.allclose(q, a * b + a)
    assert torch.equal((-x).biases[1], -x.biases[1])
    assert torch.equal((x * x).weights[2], x.weights[2] ** 2)
    assert x.to(torch.float32).dtype == torch.float32
    assert x.map(torch.relu).weights[0].min() >= 0
    w = x.map(lambda t: t.clone().requires_grad_())
    assert not w.detach().weights[0].requires_grad
    with pytest.raises(ValueError, match="cannot combine"):
        x + make(CNN)


def test_indexing_cat_and_collate_with_dataloader():
    x = make(batch=5)
    assert x[2].batch_size == 1 and x[-1].batch_size == 1
    assert torch.equal(x[1:3].weights[0], x.weights[0][1:3])
    items = [(x[i], torch.tensor(i)) for i in range(5)]
    batches = list(DataLoader(items, batch_size=2, collate_fn=collate))
    feats, labels = batches[0]
    assert isinstance(feats, WeightSpaceFeatures) and feats.batch_size == 2
    assert torch.equal(labels, torch.tensor([0, 1]))
    whole = WeightSpaceFeatures.cat([b[0] for b in batches])
    assert all(torch.equal(a, b) for a, b in zip(whole.tensors, x.tensors))
    with pytest.raises(ValueError, match=r"items\[1\] is not on"):
        WeightSpaceFeatures.cat([x, make(CNN)])


def test_from_state_dicts_rejects_mismatch_and_junk():
    sd = {"a": torch.randn(4, 3), "b": torch.randn(4), "c": torch.randn(2, 4), "d": torch.randn(2)}
    other = {
        "a": torch.randn(5, 3),
        "b": torch.randn(5),
        "c": torch.randn(2, 5),
        "d": torch.randn(2),
    }
    with pytest.raises(ValueError, match=r"state_dicts\[1\] has weight shapes"):
        WeightSpaceFeatures.from_state_dicts([sd, other])
    with pytest.raises(ValueError, match=r"state_dicts\[0\]\['x'\]: shape \(\)"):
        WeightSpaceFeatures.from_state_dicts([{"x": torch.tensor(1.0)}])
    feats = WeightSpaceFeatures.from_state_dicts([sd])
    assert feats.spec == NetworkSpec((3, 4, 2))
    with pytest.raises(ValueError, match="4 names"):
        feats.to_state_dicts(["a"])
    with pytest.raises(ValueError, match="1-channel"):
        make(channels=2).to_state_dicts()
