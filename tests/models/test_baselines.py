import numpy as np
import pytest
import torch
from hypothesis import given, settings

from weightspace import NetworkSpec
from weightspace.models import FlatMLP, StatNet, baselines, tensor_statistics
from weightspace.testing import assert_invariant, invariance_error, random_features
from weightspace.testing.strategies import network_specs

SPECS = network_specs()
HYPOTHESIS = settings(max_examples=20, deadline=None, derandomize=True)
SMALL = {"head_hidden": (8,)}


def reference_statistics(features) -> np.ndarray:
    """Slow and obvious: numpy, one network, tensor and channel at a time."""
    rows = []
    for n in range(features.batch_size):
        row = []
        for t in features.tensors:
            for c in range(features.channels):
                entries = t[n, c].numpy().ravel()
                row += [entries.mean(), entries.var()]
                row += list(np.quantile(entries, [0.0, 0.25, 0.5, 0.75, 1.0]))
        rows.append(row)
    return np.array(rows)


@HYPOTHESIS
@given(spec=SPECS)
def test_tensor_statistics_match_numpy(spec):
    gen = torch.Generator().manual_seed(0)
    x = random_features(spec, batch_size=3, channels=2, generator=gen)
    stats = tensor_statistics(x)
    assert stats.shape == (3, 7 * 2 * spec.num_layers * 2)
    np.testing.assert_allclose(stats.numpy(), reference_statistics(x), rtol=1e-12, atol=1e-12)


@HYPOTHESIS
@given(spec=SPECS)
def test_tensor_statistics_are_np_invariant(spec):
    assert_invariant(tensor_statistics, spec, "np", in_channels=2)


@pytest.mark.parametrize("limit", [30, 7])
def test_tensor_statistics_large_inputs(monkeypatch, limit):
    """Inputs beyond torch.quantile's size limit: chunked rows (30), or a full sort (7)."""
    spec = NetworkSpec((3, 4, 2))
    x = random_features(spec, batch_size=5, channels=2, generator=torch.Generator().manual_seed(1))
    expected = tensor_statistics(x)
    monkeypatch.setattr(baselines, "_QUANTILE_MAX_NUMEL", limit)
    torch.testing.assert_close(tensor_statistics(x), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tensor_statistics(x).numpy(), reference_statistics(x), rtol=1e-12)


@HYPOTHESIS
@given(spec=SPECS)
def test_statnet_is_np_invariant(spec):
    torch.manual_seed(0)
    assert_invariant(StatNet(spec, in_channels=2, **SMALL), spec, "np", in_channels=2)


def test_shapes_and_repr():
    torch.manual_seed(0)
    spec = NetworkSpec((3, 4, 5, 2), ((3, 3), (3, 3), ()))
    x = random_features(spec, batch_size=6, channels=2, dtype=torch.float32)
    stat = StatNet(spec, in_channels=2, head_hidden=(8, 8), out_features=3, dropout=0.1)
    flat = FlatMLP(spec, in_channels=2, head_hidden=(8,), out_features=4)
    assert stat(x).shape == (6, 3) and flat(x).shape == (6, 4)
    assert stat.head[0].in_features == 7 * 6 * 2
    assert flat.head[0].in_features == 2 * spec.num_params
    for model in (stat, flat):
        assert model.spec == spec
        assert str(spec) in repr(model) and "in_channels=2" in repr(model)


def test_flat_mlp_is_not_invariant():
    """Control: an MLP on raw weights does not know the symmetry."""
    torch.manual_seed(0)
    spec = NetworkSpec((3, 4, 5, 2))
    assert invariance_error(FlatMLP(spec, **SMALL), spec, "hnp") > 1e-3


@pytest.mark.parametrize("model_cls", [StatNet, FlatMLP])
def test_errors(model_cls):
    spec = NetworkSpec((3, 4, 2))
    model = model_cls(spec, in_channels=1, **SMALL)
    name = model_cls.__name__
    with pytest.raises(ValueError, match=rf"{name}: built for NetworkSpec\(widths=\(3, 4, 2\)"):
        model(random_features(NetworkSpec((3, 4, 4)), dtype=torch.float32))
    with pytest.raises(ValueError, match=f"{name}: expected 1 input channels, got 3"):
        model(random_features(spec, channels=3, dtype=torch.float32))
