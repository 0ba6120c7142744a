import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.nn import Activation, HNPLinear, NPLinear, PointwiseLinear
from weightspace.testing import (
    EquivarianceError,
    assert_equivariant,
    equivariance_errors,
    random_features,
)
from weightspace.testing.strategies import network_specs

LAYERS = {"np": NPLinear, "hnp": HNPLinear}


def _randomise(layer: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-zero random values everywhere (the default bias is zero, which would hide bias bugs)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return layer


@given(
    spec=network_specs(),
    c_in=st.integers(1, 4),
    c_out=st.integers(1, 4),
    mode=st.sampled_from(["np", "hnp"]),
)
def test_nf_layers_are_equivariant(spec, c_in, c_out, mode):
    layer = _randomise(LAYERS[mode](spec, c_in, c_out), seed=c_in * 10 + c_out)
    errors = assert_equivariant(layer, spec, mode, in_channels=c_in, rtol=1e-9, trials=2)
    assert set(errors) == {t.name for t in spec.tensors}


@given(spec=network_specs(), c_in=st.integers(1, 4), c_out=st.integers(1, 4))
def test_pointwise_layer_is_equivariant(spec, c_in, c_out):
    layer = _randomise(PointwiseLinear(spec, c_in, c_out), seed=c_in + c_out)
    assert_equivariant(layer, spec, "np", in_channels=c_in, rtol=1e-9, trials=2)


@pytest.mark.parametrize(
    "spec",
    [
        NetworkSpec((3, 4, 5, 2)),
        NetworkSpec((3, 2)),
        NetworkSpec((2, 3, 4, 2), ((3, 3), (2, 2), ())),
    ],
)
def test_hnp_layer_is_not_equivariant_to_permuting_inputs_or_outputs(spec):
    layer = _randomise(HNPLinear(spec, 2, 2), seed=0)
    # Permute only the input neurons, then only the output neurons: both must break.
    for layer_index in (0, spec.num_layers):
        g = [None] * (spec.num_layers + 1)
        n = spec.widths[layer_index]
        g[layer_index] = torch.roll(torch.arange(n), 1)
        errors = equivariance_errors(layer, spec, "np", in_channels=2, perms=g)
        assert max(errors.values()) > 1e-3, (layer_index, errors)
    with pytest.raises(EquivarianceError, match="not NP-equivariant"):
        assert_equivariant(layer, spec, "np", in_channels=2)


def test_layer_output_shapes_and_repr():
    spec = NetworkSpec((1, 16, 16, 16, 10), ((3, 3),) * 3 + ((),))
    x = random_features(spec, 4, 3, dtype=torch.float32)
    for cls in (NPLinear, HNPLinear, PointwiseLinear):
        y = cls(spec, 3, 7)(x)
        assert y.spec == spec and y.channels == 7 and y.batch_size == 4
        text = repr(cls(spec, 3, 7))
        assert "in_channels=3" in text and "out_channels=7" in text


def test_layers_reject_wrong_features():
    spec = NetworkSpec((3, 4, 2))
    layer = NPLinear(spec, 2, 2)
    with pytest.raises(ValueError, match="expected 2 input channels, got 1"):
        layer(random_features(spec, 1, 1, dtype=torch.float32))
    with pytest.raises(ValueError, match="built for NetworkSpec"):
        layer(random_features(NetworkSpec((3, 5, 2)), 1, 2, dtype=torch.float32))
    with pytest.raises(TypeError, match="expected WeightSpaceFeatures"):
        layer(torch.zeros(3))
    with pytest.raises(ValueError, match="channels must be positive"):
        HNPLinear(spec, 0, 2)


@pytest.mark.parametrize("cls", [NPLinear, HNPLinear])
@pytest.mark.parametrize(
    "spec",
    [
        NetworkSpec((2, 32, 32, 1)),
        NetworkSpec((64, 16, 16, 10)),
        NetworkSpec((1, 16, 16, 16, 10), ((3, 3),) * 3 + ((),)),
    ],
)
def test_init_keeps_activation_scale_through_8_layers(cls, spec):
    torch.manual_seed(0)
    x = random_features(spec, 8, 16, dtype=torch.float32)
    stack = torch.nn.Sequential(
        *[m for _ in range(8) for m in (cls(spec, 16, 16), Activation("relu"))][:-1]
    )
    with torch.no_grad():
        y = stack(x)
    ratio = y.flatten().std().item() / x.flatten().std().item()
    assert 0.25 < ratio < 4.0, ratio


def test_gradients_reach_every_parameter():
    spec = NetworkSpec((2, 3, 4, 2), ((3,), (3,), ()))
    layer = HNPLinear(spec, 2, 3)
    layer(random_features(spec, 2, 2, dtype=torch.float32)).flatten().square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _as_function(layer, spec):
    """``(fn, args, x)``: the layer as a function of its input tensors and parameters, for
    gradcheck, at random float64 inputs (2 networks, 2 channels)."""
    names = [name for name, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in layer.parameters()]
    x = random_features(spec, 2, 2, generator=torch.Generator().manual_seed(0))
    xs = [t.clone().requires_grad_() for t in x.tensors]

    def fn(*args):
        feats = WeightSpaceFeatures.from_tensors(args[: len(xs)])
        out = torch.func.functional_call(layer, dict(zip(names, args[len(xs) :])), (feats,))
        return out.tensors

    return fn, (*xs, *params), x


@pytest.mark.parametrize("mode", ["np", "hnp"])
@pytest.mark.parametrize(
    "spec",
    [
        NetworkSpec((2, 3)),
        NetworkSpec((2, 3, 2)),
        NetworkSpec((3, 2, 4, 2)),
        NetworkSpec((2, 3, 2, 2), ((2, 2), (3,), ())),
    ],
    ids=str,
)
def test_hand_written_backward_matches_finite_differences(spec, mode):
    """The layer's custom backward against numerical gradients, for inputs and parameters."""
    layer = _randomise(LAYERS[mode](spec, 2, 3), seed=1).double()
    fn, args, _ = _as_function(layer, spec)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


def test_backward_handles_unused_outputs_and_inputs_without_grad():
    spec = NetworkSpec((3, 4, 2))
    layer = NPLinear(spec, 1, 2).double()
    x = random_features(spec, 2, 1)
    y = layer(x)
    y.weights[0].sum().backward()  # only W1's output feeds the loss; x needs no gradient
    assert all(p.grad is not None for p in layer.parameters())


@pytest.mark.parametrize("mode", ["np", "hnp"])
@pytest.mark.parametrize(
    "spec",
    [NetworkSpec((2, 3, 2)), NetworkSpec((2, 3, 2, 2), ((2, 2), (3,), ()))],
    ids=str,
)
def test_fused_relu_backward_matches_finite_differences(spec, mode):
    """The ReLU fused into the layer's autograd function, against numerical gradients."""
    layer = _randomise(LAYERS[mode](spec, 2, 3, activation="relu"), seed=1).double()
    fn, args, x = _as_function(layer, spec)

    plain = LAYERS[mode](spec, 2, 3).double()
    plain.load_state_dict(layer.state_dict())
    pre = plain(x).tensors
    # Entries at the kink would make finite differences meaningless; random inputs avoid them.
    assert all((y.abs() > 1e-3).all() for y in pre)
    assert any((y < 0).any() for y in pre) and any((y > 0).any() for y in pre)
    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("mode", ["np", "hnp"])
def test_layer_activation_matches_a_separate_activation(mode, activation):
    spec = NetworkSpec((2, 3, 2, 2), ((2, 2), (3,), ()))
    fused = _randomise(LAYERS[mode](spec, 2, 3, activation=activation), seed=2).double()
    plain = LAYERS[mode](spec, 2, 3).double()
    plain.load_state_dict(fused.state_dict())
    assert activation in repr(fused)
    x = random_features(spec, 3, 2)
    xs = [t.clone().requires_grad_() for t in x.tensors]
    ref_xs = [t.clone().requires_grad_() for t in x.tensors]
    y = fused(WeightSpaceFeatures.from_tensors(xs))
    ref = Activation(activation)(plain(WeightSpaceFeatures.from_tensors(ref_xs)))
    for a, b in zip(y.tensors, ref.tensors):
        torch.testing.assert_close(a, b)
    weights = [torch.randn_like(t) for t in y.tensors]
    sum((w * t).sum() for w, t in zip(weights, y.tensors)).backward()
    sum((w * t).sum() for w, t in zip(weights, ref.tensors)).backward()
    for a, b in zip(xs, ref_xs):
        torch.testing.assert_close(a.grad, b.grad)
    for (name, p), q in zip(fused.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_layer_rejects_unknown_activation():
    with pytest.raises(ValueError, match="unknown activation"):
        NPLinear(NetworkSpec((2, 3, 2)), 1, 1, activation="swishy")


@pytest.mark.parametrize("mode", ["np", "hnp"])
def test_row_sums_agree_whichever_way_they_are_taken(mode, monkeypatch):
    """`_sum_last` takes short axes by a matrix-vector product and long ones by `sum`; the
    small specs of the gradient checks only reach the first. Both give the layer's outputs and
    gradients, on axes on both sides of the switch (2, 16 and 20 entries)."""
    from weightspace.nn import _terms

    spec = NetworkSpec((16, 20, 2, 20), ((), (2,), ()))
    layer = _randomise(LAYERS[mode](spec, 2, 3, activation="relu"), seed=2).double()
    x = random_features(spec, 3, 2, generator=torch.Generator().manual_seed(0))
    results = []
    for short in (0, 10_000):  # always `sum`, always the product
        monkeypatch.setattr(_terms, "_SHORT_AXIS", short)
        xs = [t.detach().clone().requires_grad_() for t in x.tensors]
        layer.zero_grad()
        out = layer(WeightSpaceFeatures.from_tensors(xs))
        sum((t.sin() * (k + 1)).sum() for k, t in enumerate(out.tensors)).backward()
        results.append([*out.tensors, *(t.grad for t in xs), *(p.grad for p in layer.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _fold_cases(test):
    """Dense and CNN specs, one with a single layer; NP and HNP; the fused ReLU or none."""
    test = pytest.mark.parametrize("activation", ["relu", None])(test)
    test = pytest.mark.parametrize("mode", ["np", "hnp"])(test)
    specs = [
        NetworkSpec((3, 4, 5, 2)),
        NetworkSpec((2, 3, 4, 2), ((3, 3), (2, 2), ())),
        NetworkSpec((3, 2)),
    ]
    return pytest.mark.parametrize("spec", specs, ids=str)(test)


def _scale(batch: int, channels: int, seed: int) -> torch.Tensor:
    """Dropout-like factors: zeros and 1 / (1 - p), float64."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, channels, generator=gen, dtype=torch.float64) >= 0.4) / 0.6


def _outputs_and_grads(layer, x, scale=None, after=None, constant=None):
    """Outputs and gradients (inputs, parameters) of a fixed random loss."""
    layer.zero_grad()
    xs = [t.detach().clone().requires_grad_() for t in x.tensors]
    out = layer(WeightSpaceFeatures.from_tensors(xs), out_scale=scale, constant=constant)
    if after is not None:
        out = out.map(lambda t: t * after.reshape(*after.shape, *([1] * (t.ndim - 2))))
    gen = torch.Generator().manual_seed(7)
    probes = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in out.tensors]
    sum((p * t.sin()).sum() for p, t in zip(probes, out.tensors)).backward()
    return [*out.tensors, *(t.grad for t in xs), *(p.grad.clone() for p in layer.parameters())]


@_fold_cases
def test_out_scale_equals_scaling_the_outputs_afterwards(spec, mode, activation):
    """``out_scale`` (a channel dropout folded into the layer's products) gives the outputs and
    every gradient of multiplying the outputs by the same factors afterwards."""
    layer = _randomise(LAYERS[mode](spec, 2, 3, activation=activation), seed=3).double()
    x = random_features(spec, 4, 2, generator=torch.Generator().manual_seed(1))
    scale = _scale(4, 3, seed=0)
    assert (scale == 0).any() and (scale > 0).any()
    folded = _outputs_and_grads(layer, x, scale=scale)
    after = _outputs_and_grads(layer, x, after=scale)
    for a, b in zip(folded, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # Control: another network's factors (rows swapped) must change the outputs.
    swapped = _outputs_and_grads(layer, x, scale=scale.roll(1, dims=0))
    assert not all(torch.allclose(a, b) for a, b in zip(swapped, after))


@pytest.mark.parametrize("mode", ["np", "hnp"])
def test_out_scale_backward_matches_finite_differences(mode):
    spec = NetworkSpec((2, 3, 2, 2), ((2, 2), (3,), ()))
    layer = _randomise(LAYERS[mode](spec, 2, 3, activation="relu"), seed=1).double()
    _, args, _ = _as_function(layer, spec)
    scale = _scale(2, 3, seed=1) + 0.25  # no zeros: every output moves

    def scaled(*a):
        n = len(spec.tensors)
        feats = WeightSpaceFeatures.from_tensors(a[:n])
        names = [name for name, _ in layer.named_parameters()]
        params = dict(zip(names, a[n:]))
        out = torch.func.functional_call(layer, params, (feats,), {"out_scale": scale})
        return out.tensors

    assert torch.autograd.gradcheck(scaled, args, eps=1e-6, atol=1e-6)


def test_out_scale_is_checked():
    spec = NetworkSpec((3, 4, 2))
    x = random_features(spec, 2, 2)
    layer = NPLinear(spec, 2, 3, activation="relu").double()
    with pytest.raises(ValueError, match=r"NPLinear: out_scale must be \(batch, out_channels\)"):
        layer(x, out_scale=torch.ones(2, 2, dtype=torch.float64))
    tanh = HNPLinear(spec, 2, 3, activation="tanh").double()
    assert not tanh.folds_channel_scale and layer.folds_channel_scale
    with pytest.raises(ValueError, match="HNPLinear: out_scale needs activation None or 'relu'"):
        tanh(x, out_scale=torch.ones(2, 3, dtype=torch.float64))


def _constant(spec: NetworkSpec, channels: int, zero: tuple[int, ...], seed: int):
    """Batch-1 random features with the tensors numbered in ``zero`` all zero."""
    c = random_features(spec, 1, channels, generator=torch.Generator().manual_seed(seed))
    return WeightSpaceFeatures.from_tensors(
        [t * 0 if k in zero else t for k, t in enumerate(c.tensors)]
    )


@_fold_cases
def test_constant_channels_equal_concatenating_them_to_every_network(spec, mode, activation):
    """``constant=`` (channels shared by every network, computed once) gives the outputs and
    every gradient of concatenating them to each network's channels; with ``out_scale`` too."""
    layer = _randomise(LAYERS[mode](spec, 5, 3, activation=activation), seed=4).double()
    x = random_features(spec, 4, 2, generator=torch.Generator().manual_seed(2))
    zero = (1,) if len(spec.tensors) > 2 else ()
    const = _constant(spec, 3, zero, seed=5)
    joined = WeightSpaceFeatures.from_tensors(
        [torch.cat([a, c.expand(4, *c.shape[1:])], 1) for a, c in zip(x.tensors, const.tensors)]
    )
    for scale in (None, _scale(4, 3, seed=2)):
        got = _outputs_and_grads(layer, x, scale, constant=const)
        want = _outputs_and_grads(layer, joined, scale)
        # x's gradient is the first channels of the joined input's.
        n = len(spec.tensors)
        want[n : 2 * n] = [g[:, :2] for g in want[n : 2 * n]]
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # Control: other constants (one tensor changed) change the outputs.
    moved = WeightSpaceFeatures.from_tensors(
        [t + 1 if k == 0 else t for k, t in enumerate(const.tensors)]
    )
    other = _outputs_and_grads(layer, x, constant=moved)
    assert not all(torch.allclose(a, b) for a, b in zip(other[:n], got[:n]))


def test_constant_channels_are_checked():
    spec = NetworkSpec((3, 4, 2))
    layer = NPLinear(spec, 4, 3).double()
    x = random_features(spec, 2, 2)
    with pytest.raises(
        ValueError, match="NPLinear: constant must be WeightSpaceFeatures of batch size 1"
    ):
        layer(x, constant=random_features(spec, 2, 2))
    with pytest.raises(ValueError, match="constant has 4 channels, but the layer takes 4 in all"):
        layer(x, constant=random_features(spec, 1, 4))
    with pytest.raises(ValueError, match="NPLinear"):
        layer(x, constant=random_features(spec, 1, 1))  # 2 + 1 channels, the layer takes 4
