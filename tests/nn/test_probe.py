import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.data.inr import SIREN_SPEC, init_sirens, siren_activation
from weightspace.nn import ProbeFeatures
from weightspace.testing import assert_invariant, inconsistent_permutation, invariance_error
from weightspace.testing.strategies import network_specs

HYPOTHESIS = settings(max_examples=12, deadline=None, derandomize=True)
GENERATORS = st.sampled_from(["points", "deep-linear"])


def probe_for(spec, generator, activation="tanh", **options):
    conv = bool(spec.kernel_shapes[0])
    shape = (6,) * len(spec.kernel_shapes[0]) if conv else None
    return ProbeFeatures(
        spec, 5, activation=activation, generator=generator, input_shape=shape, padding=2, **options
    )


def sirens(n=3, dtype=torch.float64):
    torch.manual_seed(0)
    return WeightSpaceFeatures.from_tensors([t.unsqueeze(1).to(dtype) for t in init_sirens(n)])


@HYPOTHESIS
@given(spec=network_specs(min_layers=2, min_width=2, conv_dims=(0, 1, 2)), generator=GENERATORS)
def test_probe_features_are_hnp_invariant_on_random_architectures(spec, generator):
    torch.manual_seed(0)
    probe = probe_for(spec, generator)
    assert_invariant(probe, spec, "hnp", rtol=1e-9)
    # Control: an inconsistent permutation changes the function, so the probes see it.
    err = invariance_error(probe, spec, perturb=lambda x, g: inconsistent_permutation(x, 1, g))
    assert err > 1e-6


@HYPOTHESIS
@given(spec=network_specs(min_layers=2, min_width=2, conv_dims=(0, 2)), generator=GENERATORS)
def test_probe_features_are_invariant_to_sign_flips_of_odd_and_scales_of_relu_networks(
    spec, generator
):
    torch.manual_seed(0)
    odd, relu = probe_for(spec, generator, "tanh"), probe_for(spec, generator, "relu")

    def flip(x, g):
        return symmetry.flip_signs(x, symmetry.sample_signs(spec, x.batch_size, generator=g))

    def scale(x, g):
        factors = symmetry.sample_scales(spec, x.batch_size, generator=g, dtype=torch.float64)
        return symmetry.rescale_neurons(x, factors)

    assert invariance_error(odd, spec, perturb=flip) < 1e-9
    assert invariance_error(relu, spec, perturb=scale) < 1e-9
    # Controls: the symmetry of one activation is not one of the other.
    assert invariance_error(relu, spec, perturb=flip) > 1e-6
    assert invariance_error(odd, spec, perturb=scale) > 1e-6


def test_probe_features_of_sirens_are_invariant_to_the_half_period_shift():
    x = sirens()
    probe = ProbeFeatures(SIREN_SPEC, 16, activation=siren_activation).double()
    # Neuron 3 of hidden layer 1: b += pi / 30, and its outgoing column negated.
    w, b = [t.clone() for t in x.weights], [t.clone() for t in x.biases]
    b[0][:, :, 3] += math.pi / 30
    w[1][:, :, :, 3] *= -1
    shifted = WeightSpaceFeatures(w, b)
    torch.testing.assert_close(probe(shifted), probe(x), rtol=0, atol=1e-12)
    # Control: the shift without the negated column is another function.
    b_only = WeightSpaceFeatures(x.weights, b)
    assert (probe(b_only) - probe(x)).abs().max() > 1e-3


def test_probe_outputs_are_the_networks_values_at_the_probes():
    x = sirens(2)
    probe = ProbeFeatures(SIREN_SPEC, 7, activation=siren_activation, generator="points").double()
    from weightspace.functional import forward

    expected = forward(x, probe.probes(), siren_activation)[..., 0]
    torch.testing.assert_close(probe(x), expected)


@pytest.mark.parametrize("generator", ["points", "deep-linear"])
def test_probes_learn_gradients_reach_the_probe_parameters(generator):
    x = sirens(2, torch.float32)
    probe = ProbeFeatures(SIREN_SPEC, 8, activation=siren_activation, generator=generator)
    probe(x).square().sum().backward()
    grads = [p.grad for p in probe.parameters()]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_deep_linear_initial_probes_spread_like_the_requested_init():
    torch.manual_seed(0)
    probe = ProbeFeatures(SIREN_SPEC, 128, generator="deep-linear", init_scale=1.0)
    p = probe.probes().detach()
    assert p.shape == (128, 2)
    # Uniform in [-1, 1] has std 1/sqrt(3); the generator's probes are rescaled to it.
    assert abs(float(p.std()) - 1 / math.sqrt(3)) < 0.05


def test_activation_override_per_network_matches_one_activation_each():
    spec = SIREN_SPEC
    x = sirens(2)
    probe = ProbeFeatures(spec, 4, activation="tanh").double()
    mixed = probe(x, ["tanh", "relu"])
    torch.testing.assert_close(mixed[0], probe(x)[0])
    torch.testing.assert_close(mixed[1], probe(x, "relu")[1])


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match=r"cannot run the networks' activation.*'swish'"):
        ProbeFeatures(SIREN_SPEC, 4, activation="swish")
    with pytest.raises(ValueError, match="generator must be one of"):
        ProbeFeatures(SIREN_SPEC, 4, generator="gan")
    with pytest.raises(ValueError, match="num_probes must be a positive int"):
        ProbeFeatures(SIREN_SPEC, 0)
    from weightspace.data.zoo import ZOO_SPEC

    with pytest.raises(ValueError, match="pass input_shape with 2 spatial sizes"):
        ProbeFeatures(ZOO_SPEC, 4)
    x = sirens(3)
    w = [t.clone() for t in x.weights]
    w[1][2, 0, 0, 0] = float("nan")
    probe = ProbeFeatures(SIREN_SPEC, 4, activation=siren_activation).double()
    with pytest.raises(
        ValueError, match="network 2 of the batch has NaN or infinite entries in W2"
    ):
        probe(WeightSpaceFeatures(w, x.biases))
    with pytest.raises(ValueError, match="ProbeFeatures"):
        probe(
            WeightSpaceFeatures.from_tensors(
                [t.repeat(1, 2, *[1] * (t.ndim - 2)) for t in x.tensors]
            )
        )


# ------------------------------------------------------------------ derivatives at the probes
@pytest.mark.parametrize("generator", ["points", "deep-linear"])
def test_probe_gradients_are_the_outputs_and_their_input_derivatives(generator):
    x = sirens(2)
    scale = 2 / 27
    plain = ProbeFeatures(SIREN_SPEC, 6, activation=siren_activation, generator=generator)
    probe = ProbeFeatures(
        SIREN_SPEC,
        6,
        activation=siren_activation,
        generator=generator,
        gradients=True,
        gradient_scale=scale,
    )
    probe.load_state_dict(plain.state_dict())
    plain, probe = plain.double(), probe.double()
    assert probe.output_size == 6 * 1 * 3 == probe(x).shape[1]
    out = probe(x).reshape(2, 6, 3)  # per probe: value, d/dx1, d/dx2 (n_L = 1, n_0 = 2)
    torch.testing.assert_close(out[..., 0], plain(x))
    # Central finite differences of the network along each input axis, one pixel's step.
    from weightspace.functional import forward

    points, h = probe.probes().detach(), 1e-6
    for axis in range(2):
        step = torch.zeros_like(points)
        step[:, axis] = h
        diff = forward(x, points + step, siren_activation) - forward(
            x, points - step, siren_activation
        )
        torch.testing.assert_close(
            out[..., 1 + axis], scale * diff[..., 0] / (2 * h), rtol=1e-6, atol=1e-6
        )


@HYPOTHESIS
@given(spec=network_specs(min_layers=2, min_width=2, conv_dims=(0,)))
def test_probe_gradients_keep_every_invariance_of_the_outputs(spec):
    torch.manual_seed(0)
    probe = probe_for(spec, "deep-linear", gradients=True)
    assert probe.output_size == 5 * spec.widths[-1] * (1 + spec.widths[0])
    assert_invariant(probe, spec, "hnp", rtol=1e-9)

    def flip(x, g):
        return symmetry.flip_signs(x, symmetry.sample_signs(spec, x.batch_size, generator=g))

    assert invariance_error(probe, spec, perturb=flip) < 1e-9
    # Controls: an inconsistent permutation is another function, and so are its slopes.
    err = invariance_error(probe, spec, perturb=lambda x, g: inconsistent_permutation(x, 1, g))
    assert err > 1e-6


def test_probe_gradients_of_sirens_are_invariant_to_the_half_period_shift():
    x = sirens()
    probe = ProbeFeatures(SIREN_SPEC, 16, activation=siren_activation, gradients=True).double()
    w, b = [t.clone() for t in x.weights], [t.clone() for t in x.biases]
    b[1][:, :, 5] += math.pi / 30
    w[2][:, :, :, 5] *= -1
    torch.testing.assert_close(probe(WeightSpaceFeatures(w, b)), probe(x), rtol=0, atol=1e-11)
    # Control: the shift alone changes the slopes too, not only the values.
    moved = probe(WeightSpaceFeatures(x.weights, b)).reshape(3, 16, 3)
    assert (moved[..., 1:] - probe(x).reshape(3, 16, 3)[..., 1:]).abs().max() > 1e-3


def test_probe_gradients_backpropagate_to_weights_and_probes():
    torch.manual_seed(0)
    spec = NetworkSpec((2, 3, 1))
    probe = ProbeFeatures(spec, 3, activation="tanh", generator="points", gradients=True).double()
    shapes = [*spec.weight_shapes, *spec.bias_shapes]
    tensors = [
        torch.randn(2, 1, *shape, dtype=torch.float64, requires_grad=True) for shape in shapes
    ]

    def features(*ts):
        return probe(WeightSpaceFeatures.from_tensors(list(ts)))

    assert torch.autograd.gradcheck(features, tuple(tensors))
    with torch.no_grad():  # forward's tanh runs in place there: the same values
        plain = features(*tensors)
    assert torch.equal(plain, features(*tensors).detach())
    probe(WeightSpaceFeatures.from_tensors(tensors)).square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in probe.parameters())


def test_probe_gradients_are_refused_for_conv_networks_and_bad_scales():
    from weightspace.data.zoo import ZOO_SPEC

    with pytest.raises(ValueError, match="gradients=True needs a dense network"):
        ProbeFeatures(ZOO_SPEC, 4, input_shape=(28, 28), gradients=True)
    with pytest.raises(ValueError, match="gradients must be True or False"):
        ProbeFeatures(SIREN_SPEC, 4, gradients="yes")
    for bad in (0, -1.0, float("inf"), True):
        with pytest.raises(ValueError, match="gradient_scale must be a positive number"):
            ProbeFeatures(SIREN_SPEC, 4, gradients=True, gradient_scale=bad)
    assert "gradients (scale 0.5)" in repr(
        ProbeFeatures(SIREN_SPEC, 4, gradients=True, gradient_scale=0.5)
    )
