import math

import pytest
import torch
from hypothesis import given, settings

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.nn.encoding import (
    GaussianFourierFeatures,
    LearnedIOEncoding,
    SinusoidalIOEncoding,
    sinusoidal_encoding,
)
from weightspace.testing import (
    EquivarianceError,
    assert_equivariant,
    equivariance_errors,
    random_features,
)
from weightspace.testing.strategies import network_specs

SPECS = network_specs()
HYPOTHESIS = settings(max_examples=20, deadline=None, derandomize=True)


def zeros(spec: NetworkSpec, channels: int = 1) -> WeightSpaceFeatures:
    return random_features(spec, 2, channels) * 0.0


def moving_io(spec: NetworkSpec) -> list:
    """An NP element that moves every input and output neuron when there are two or more."""
    perms: list = [None] * (spec.num_layers + 1)
    perms[0] = torch.roll(torch.arange(spec.widths[0]), 1)
    perms[-1] = torch.roll(torch.arange(spec.widths[-1]), 1)
    return perms


# ------------------------------------------------------------------ learned
def test_learned_adds_embeddings_along_columns_of_w1_and_rows_of_wl():
    torch.manual_seed(0)
    spec = NetworkSpec((3, 4, 2), ((3,), ()))
    enc = LearnedIOEncoding(spec, channels=2).double()
    y = enc(zeros(spec, 2))
    assert [t.shape for t in y.tensors] == [t.shape for t in zeros(spec, 2).tensors]
    # W_1[b, c, j, k, kernel] = input_embedding[c, k, kernel] for every row j.
    expected_w1 = enc.input_embedding[None, :, None].expand(2, 2, 4, 3, 3)
    torch.testing.assert_close(y.weights[0], expected_w1, rtol=0, atol=0)
    # W_L[b, c, o, j] = output_weight_embedding[c, o] for every column j.
    expected_w2 = enc.output_weight_embedding[None, :, :, None].expand(2, 2, 2, 4)
    torch.testing.assert_close(y.weights[1], expected_w2, rtol=0, atol=0)
    torch.testing.assert_close(y.biases[1], enc.output_bias_embedding[None].expand(2, 2, 2))
    assert torch.count_nonzero(y.biases[0]) == 0


def test_learned_single_layer_gets_both_embeddings_on_w1():
    torch.manual_seed(0)
    spec = NetworkSpec((3, 2))
    enc = LearnedIOEncoding(spec, channels=1).double()
    y = enc(zeros(spec))
    expected = enc.input_embedding[:, None, :] + enc.output_weight_embedding[:, :, None]
    torch.testing.assert_close(y.weights[0][0], expected)
    torch.testing.assert_close(y.biases[0][0], enc.output_bias_embedding)


def test_learned_init_is_small_and_distinguishes_neurons():
    torch.manual_seed(0)
    enc = LearnedIOEncoding(NetworkSpec((5, 4, 3)), channels=8)
    for p in (enc.input_embedding, enc.output_weight_embedding, enc.output_bias_embedding):
        assert 0.0 < p.abs().max() < 1.0
        assert p.std(dim=1).min() > 0  # neurons differ in every channel


@HYPOTHESIS
@given(spec=SPECS)
def test_learned_is_hnp_equivariant(spec):
    torch.manual_seed(0)
    assert_equivariant(LearnedIOEncoding(spec, 2), spec, "hnp", in_channels=2)


@HYPOTHESIS
@given(spec=SPECS)
def test_learned_is_not_np_equivariant(spec):
    """Control: moving input or output neurons must not commute with their embeddings."""
    if max(spec.widths[0], spec.widths[-1]) < 2:
        return
    torch.manual_seed(0)
    enc = LearnedIOEncoding(spec, 2)
    errors = equivariance_errors(enc, spec, "np", in_channels=2, perms=moving_io(spec))
    assert max(errors.values()) > 1e-6


def test_learned_repr_and_errors():
    spec = NetworkSpec((3, 4, 2))
    enc = LearnedIOEncoding(spec, 2)
    assert "channels=2" in repr(enc) and "(3, 4, 2)" in repr(enc)
    with pytest.raises(ValueError, match="LearnedIOEncoding"):
        enc(random_features(NetworkSpec((3, 5, 2)), channels=2, dtype=torch.float32))
    with pytest.raises(ValueError, match="channels"):
        enc(random_features(spec, channels=1, dtype=torch.float32))
    with pytest.raises(ValueError, match="positive"):
        LearnedIOEncoding(spec, 0)


# --------------------------------------------------------------- sinusoidal
def test_sinusoidal_encoding_matches_formula():
    enc = sinusoidal_encoding(5, num_bands=3, max_freq=8.0)
    assert enc.shape == (7, 5)
    x = torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0])
    freqs = [1.0, 2.5, 4.0]
    expected = [x] + [torch.sin(math.pi * f * x) for f in freqs]
    expected += [torch.cos(math.pi * f * x) for f in freqs]
    torch.testing.assert_close(enc, torch.stack(expected))
    # A single neuron sits at x = 0.
    torch.testing.assert_close(sinusoidal_encoding(1, 2)[:, 0], torch.tensor([0.0, 0, 0, 1, 1]))


def test_sinusoidal_channels_sit_on_w1_columns_and_wl_rows_only():
    spec = NetworkSpec((3, 4, 5, 2), ((2, 2), (3, 3), ()))
    enc = SinusoidalIOEncoding(spec, channels=2, num_bands=4, max_freq=6.0)
    E = 9
    assert enc.out_channels == 2 + 2 * E
    x = random_features(spec, 2, 2)
    y = enc(x)
    assert y.channels == enc.out_channels
    for a, b in zip(y.tensors, x.tensors):
        torch.testing.assert_close(a[:, :2], b, rtol=0, atol=0)
    inp = sinusoidal_encoding(3, 4, 6.0).double()
    out = sinusoidal_encoding(2, 4, 6.0).double()
    # Input encoding: W_1[:, 2 + e, j, k, ...] = inp[e, k], constant over rows and kernel.
    torch.testing.assert_close(
        y.weights[0][:, 2 : 2 + E], inp[None, :, None, :, None, None].expand(2, E, 4, 3, 2, 2)
    )
    # Output encoding: W_L[:, 2 + E + e, o, j] = out[e, o] and b_L[:, 2 + E + e, o] = out[e, o].
    torch.testing.assert_close(y.weights[2][:, 2 + E :], out[None, :, :, None].expand(2, E, 2, 5))
    torch.testing.assert_close(y.biases[2][:, 2 + E :], out[None].expand(2, E, 2))
    # Zeros elsewhere.
    assert torch.count_nonzero(y.weights[0][:, 2 + E :]) == 0
    assert torch.count_nonzero(y.weights[2][:, 2 : 2 + E]) == 0
    assert torch.count_nonzero(y.weights[1][:, 2:]) == 0
    assert torch.count_nonzero(y.biases[0][:, 2:]) == 0
    assert torch.count_nonzero(y.biases[2][:, 2 : 2 + E]) == 0


def test_sinusoidal_single_layer_carries_both_encodings():
    spec = NetworkSpec((3, 2))
    enc = SinusoidalIOEncoding(spec, channels=1, num_bands=2)
    y = enc(zeros(spec))
    inp = sinusoidal_encoding(3, 2).double()
    out = sinusoidal_encoding(2, 2).double()
    torch.testing.assert_close(y.weights[0][0, 1:6], inp[:, None, :].expand(5, 2, 3))
    torch.testing.assert_close(y.weights[0][0, 6:], out[:, :, None].expand(5, 2, 3))
    torch.testing.assert_close(y.biases[0][0, 6:], out)
    assert torch.count_nonzero(y.biases[0][0, 1:6]) == 0


@HYPOTHESIS
@given(spec=SPECS)
def test_sinusoidal_is_hnp_equivariant(spec):
    assert_equivariant(SinusoidalIOEncoding(spec, 2, num_bands=3), spec, "hnp", in_channels=2)


@HYPOTHESIS
@given(spec=SPECS)
def test_sinusoidal_is_not_np_equivariant(spec):
    if max(spec.widths[0], spec.widths[-1]) < 2:
        return
    enc = SinusoidalIOEncoding(spec, 1, num_bands=3)
    errors = equivariance_errors(enc, spec, "np", perms=moving_io(spec))
    assert max(errors.values()) > 1e-6


def test_sinusoidal_repr_errors_and_state_dict():
    spec = NetworkSpec((3, 4, 2))
    enc = SinusoidalIOEncoding(spec, 2)
    assert "out_channels=28" in repr(enc)
    assert enc.state_dict() == {}  # the encodings are recomputed from the spec
    with pytest.raises(ValueError, match="SinusoidalIOEncoding"):
        enc(random_features(NetworkSpec((3, 4, 3)), channels=2))
    with pytest.raises(ValueError, match="channels"):
        enc(random_features(spec, channels=3))
    with pytest.raises(EquivarianceError):
        assert_equivariant(enc, spec, "np", in_channels=2, trials=5)


# ---------------------------------------------------------------- fourier
def test_fourier_features_match_formula():
    spec = NetworkSpec((2, 3, 1), ((3,), ()))
    ff = GaussianFourierFeatures(2, mapping_size=5, scale=3.0, seed=1).double()
    assert ff.out_channels == 10 and ff.B.shape == (2, 5)
    x = random_features(spec, 2, 2)
    y = ff(x)
    for a, b in zip(y.tensors, x.tensors):
        z = 2 * math.pi * torch.einsum("bc...,cm->bm...", b, ff.B)
        torch.testing.assert_close(a, torch.cat([z.sin(), z.cos()], dim=1))


def test_fourier_features_are_seeded():
    a, b = GaussianFourierFeatures(3, 64, seed=0), GaussianFourierFeatures(3, 64, seed=0)
    torch.testing.assert_close(a.B, b.B, rtol=0, atol=0)
    assert not torch.equal(a.B, GaussianFourierFeatures(3, 64, seed=1).B)
    big = GaussianFourierFeatures(4, 4096, scale=10.0)
    assert abs(big.B.std().item() - 10.0) < 0.5
    assert "mapping_size=4096" in repr(big)


@HYPOTHESIS
@given(spec=SPECS)
def test_fourier_features_are_np_equivariant(spec):
    assert_equivariant(GaussianFourierFeatures(2, 6, scale=1.0), spec, "np", in_channels=2)


def test_fourier_features_errors():
    ff = GaussianFourierFeatures(2)
    with pytest.raises(ValueError, match="2 input channels"):
        ff(random_features(NetworkSpec((2, 2)), channels=3))
    with pytest.raises(ValueError, match="mapping_size"):
        GaussianFourierFeatures(2, 0)


def _plain_fourier(x: WeightSpaceFeatures, B: torch.Tensor) -> WeightSpaceFeatures:
    """The formula, through autograd: ``cat([sin(2π x B), cos(2π x B)])`` along channels."""

    def lift(t: torch.Tensor) -> torch.Tensor:
        z = 2 * math.pi * torch.einsum("bc...,cm->bm...", t, B)
        return torch.cat([z.sin(), z.cos()], dim=1)

    return x.map(lift)


@pytest.mark.parametrize("channels", [1, 3])
def test_fourier_features_and_their_gradients_match_the_autograd_formula(channels):
    # The forward writes sin and cos into one output; the backward reuses them (sin' = cos).
    torch.manual_seed(0)
    spec = NetworkSpec((2, 3, 1), ((3,), ()))
    ff = GaussianFourierFeatures(channels, mapping_size=4, scale=2.0, seed=2).double()
    x = random_features(spec, 2, channels).map(lambda t: t.requires_grad_())
    y, expected = ff(x), _plain_fourier(x, ff.B)
    weights = [torch.randn_like(t) for t in expected.tensors]
    for a, b in zip(y.tensors, expected.tensors):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    grads = torch.autograd.grad(sum((a * w).sum() for a, w in zip(y.tensors, weights)), x.tensors)
    plain = torch.autograd.grad(
        sum((a * w).sum() for a, w in zip(expected.tensors, weights)), x.tensors
    )
    for a, b in zip(grads, plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("channels", [1, 2])
def test_fourier_function_passes_gradcheck(channels):
    from weightspace.nn.encoding import _FourierFeatures

    torch.manual_seed(0)
    x = torch.randn(2, channels, 3, 2, dtype=torch.float64, requires_grad=True)
    proj = torch.randn(channels, 3, dtype=torch.float64, requires_grad=True)

    def fn(x: torch.Tensor, proj: torch.Tensor) -> torch.Tensor:
        return _FourierFeatures.apply(x, proj, 0, None)

    assert torch.autograd.gradcheck(fn, (x, proj))

    class Broken(_FourierFeatures):  # a control that must break: cos' = +sin
        @staticmethod
        def backward(ctx, grad):
            M = ctx.saved_tensors[1].shape[1]
            flipped = torch.cat([grad[:, :M], -grad[:, M:]], dim=1)
            return _FourierFeatures.backward(ctx, flipped)

    broken = lambda x, proj: Broken.apply(x, proj, 0, None)  # noqa: E731
    assert not torch.autograd.gradcheck(broken, (x, proj), raise_exception=False)


def test_sinusoidal_gradients_reach_the_input_channels_only():
    spec = NetworkSpec((3, 4, 2), ((2,), ()))
    enc = SinusoidalIOEncoding(spec, channels=2, num_bands=2).double()
    x = random_features(spec, 2, 2).map(lambda t: t.requires_grad_())
    assert torch.autograd.gradcheck(
        lambda *ts: enc(WeightSpaceFeatures.from_tensors(ts)).tensors, x.tensors
    )
    y = enc(x)
    for a, b in zip(y.tensors, x.tensors):
        torch.testing.assert_close(a[:, :2], b, rtol=0, atol=0)


@pytest.mark.parametrize(
    "spec",
    [
        NetworkSpec((3, 4, 5, 2), ((2, 2), (3, 3), ())),
        NetworkSpec((3, 2)),
        NetworkSpec((2, 32, 32, 1)),
    ],
)
def test_fourier_fused_with_io_encoding_equals_the_two_layers(spec):
    torch.manual_seed(0)
    ff = GaussianFourierFeatures(1, mapping_size=5, scale=3.0).double()
    io = SinusoidalIOEncoding(spec, ff.out_channels, num_bands=2).double()
    x = random_features(spec, 2, 1).map(lambda t: t.requires_grad_())
    fused, expected = ff(x, io=io), io(ff(x))
    for a, b in zip(fused.tensors, expected.tensors):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    if sum(t.numel() for t in x.tensors) < 200:  # gradcheck's Jacobians grow quadratically
        assert torch.autograd.gradcheck(
            lambda *ts: ff(WeightSpaceFeatures.from_tensors(ts), io=io).tensors, x.tensors
        )


def test_fourier_fused_errors():
    spec = NetworkSpec((2, 3, 1))
    ff = GaussianFourierFeatures(1, mapping_size=4)
    with pytest.raises(ValueError, match="io must be a SinusoidalIOEncoding of 8 channels"):
        ff(random_features(spec, 1, 1, dtype=torch.float32), io=SinusoidalIOEncoding(spec, 7))
    with pytest.raises(ValueError, match="GaussianFourierFeatures"):
        ff(random_features(NetworkSpec((2, 4, 1)), 1, 1), io=SinusoidalIOEncoding(spec, 8))


def test_sinusoidal_encodings_are_the_forward_tail_built_once_per_dtype():
    spec = NetworkSpec((3, 4, 2), ((2, 2), ()))
    enc = SinusoidalIOEncoding(spec, channels=1, num_bands=2)
    full = enc(zeros(spec).to(torch.float64))
    constant = enc.encodings(torch.float64, "cpu")
    assert constant.batch_size == 1 and constant.channels == 2 * enc.encoding_size
    for got, want in zip(constant.tensors, full.tensors):
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, want[:1, 1:], rtol=0, atol=0)
    # Built once: the same tensors again, while another dtype gets its own.
    assert enc.encodings(torch.float64, "cpu") is constant
    single = enc.encodings(torch.float32, "cpu")
    assert single is not constant and single.weights[0].dtype == torch.float32
    # A changed buffer is not served stale (the control: the cache must notice).
    with torch.no_grad():
        enc.input_encoding.mul_(2)
    rebuilt = enc.encodings(torch.float64, "cpu")
    torch.testing.assert_close(rebuilt.weights[0][0, :5], 2 * constant.weights[0][0, :5])
