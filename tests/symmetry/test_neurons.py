import pytest
import torch

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.data.inr import init_sirens, render
from weightspace.functional import forward
from weightspace.testing import random_features

SPEC = NetworkSpec((3, 5, 4, 2))
CNN = NetworkSpec((2, 4, 3, 2), ((3, 3), (3, 3), ()))


def flipped(spec: NetworkSpec, batch: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    features = random_features(spec, batch, generator=gen)
    signs = symmetry.sample_signs(spec, batch, generator=gen, dtype=torch.float64)
    return features, signs, symmetry.flip_signs(features, signs)


def test_sample_signs_draws_plus_or_minus_one_per_hidden_neuron():
    signs = symmetry.sample_signs(SPEC, 64, generator=torch.Generator().manual_seed(0))
    assert [tuple(s.shape) for s in signs] == [(64, 5), (64, 4)]
    for s in signs:
        assert set(s.unique().tolist()) == {-1.0, 1.0}
    a = symmetry.sample_signs(SPEC, 3, generator=torch.Generator().manual_seed(7))
    b = symmetry.sample_signs(SPEC, 3, generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("activation", ["tanh", "sin"])
def test_odd_activations_compute_the_same_function(activation):
    features, _, out = flipped(SPEC)
    assert not torch.equal(out.weights[0], features.weights[0])  # something did flip
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(forward(out, x, activation), forward(features, x, activation))


def test_cnn_kernels_are_carried_along():
    features, signs, out = flipped(CNN)
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(forward(out, x, "tanh"), forward(features, x, "tanh"))
    # Row j of W_1 is negated in every kernel position, as is column j of W_2.
    s = signs[0][0]
    torch.testing.assert_close(
        out.weights[0][0, 0], features.weights[0][0, 0] * s.view(-1, 1, 1, 1)
    )


def test_a_sine_siren_renders_the_same_image():
    gen = torch.Generator().manual_seed(1)
    tensors = [t.unsqueeze(1) for t in init_sirens(3, generator=gen, dtype=torch.float64)]
    features = WeightSpaceFeatures.from_tensors(tensors)
    signs = symmetry.sample_signs(features.spec, 3, generator=gen, dtype=torch.float64)
    out = symmetry.flip_signs(features, signs)
    torch.testing.assert_close(render(out, 8, 8), render(features, 8, 8))


def test_control_relu_networks_change():
    features, _, out = flipped(SPEC)
    x = torch.randn(6, 3, dtype=torch.float64)
    assert (forward(out, x, "relu") - forward(features, x, "relu")).abs().max() > 1e-3


def test_flipping_twice_is_the_identity_and_channels_flip_together():
    features, signs, out = flipped(SPEC)
    back = symmetry.flip_signs(out, signs)
    for a, b in zip(back.tensors, features.tensors):
        assert torch.equal(a, b)
    wide = random_features(SPEC, 4, channels=3)
    out = symmetry.flip_signs(wide, signs)
    ratio = out.biases[0] / wide.biases[0]
    assert torch.equal(ratio, signs[0].unsqueeze(1).expand_as(ratio))


def test_bad_signs_are_refused():
    features = random_features(SPEC, 4)
    with pytest.raises(ValueError, match="expected 2 signs tensors"):
        symmetry.flip_signs(features, [torch.ones(4, 5)])
    with pytest.raises(ValueError, match=r"signs\[1\] \(hidden layer 2\) has shape \(4, 5\), "):
        symmetry.flip_signs(features, [torch.ones(4, 5), torch.ones(4, 5)])
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        symmetry.sample_signs(SPEC, 0)


# ------------------------------------------------------------------ positive scales (ReLU)
def rescaled(spec: NetworkSpec, batch: int = 4, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    features = random_features(spec, batch, generator=gen)
    scales = symmetry.sample_scales(spec, batch, max_factor=3.0, generator=gen, dtype=torch.float64)
    return features, scales, symmetry.rescale_neurons(features, scales)


def test_sample_scales_are_log_uniform_in_range():
    scales = symmetry.sample_scales(SPEC, 2000, max_factor=4.0, generator=torch.Generator())
    assert [tuple(s.shape) for s in scales] == [(2000, 5), (2000, 4)]
    logs = torch.cat([s.flatten() for s in scales]).double().log() / torch.tensor(4.0).log()
    assert logs.min() >= -1 and logs.max() <= 1
    assert abs(float(logs.mean())) < 0.03 and abs(float((logs > 0.5).double().mean()) - 0.25) < 0.03


@pytest.mark.parametrize("spec", [SPEC, CNN], ids=["mlp", "cnn"])
def test_relu_networks_compute_the_same_function(spec):
    features, _, out = rescaled(spec)
    assert not torch.allclose(out.weights[1], features.weights[1])
    x = torch.randn(5, *((3,) if spec is SPEC else (2, 8, 8)), dtype=torch.float64)
    torch.testing.assert_close(forward(out, x, "relu"), forward(features, x, "relu"))


def test_control_tanh_networks_change_under_rescaling():
    features, _, out = rescaled(SPEC)
    x = torch.randn(6, 3, dtype=torch.float64)
    assert (forward(out, x, "tanh") - forward(features, x, "tanh")).abs().max() > 1e-3


def test_bad_scales_are_refused():
    features = random_features(SPEC, 4)
    with pytest.raises(ValueError, match="scales\\[0\\] must be positive"):
        symmetry.rescale_neurons(features, [-torch.ones(4, 5), torch.ones(4, 4)])
    with pytest.raises(ValueError, match="expected 2 scales tensors"):
        symmetry.rescale_neurons(features, [torch.ones(4, 5)])
    with pytest.raises(ValueError, match="max_factor must be a finite number >= 1"):
        symmetry.sample_scales(SPEC, 2, max_factor=0.5)
