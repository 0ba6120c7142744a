import pytest
import torch
from hypothesis import given, settings

from weightspace import WeightSpaceFeatures, symmetry
from weightspace.data.inr import SIREN_SPEC, init_sirens, siren_activation
from weightspace.models import HybridModel, ProbeModel
from weightspace.testing import assert_invariant, inconsistent_permutation, invariance_error
from weightspace.testing.strategies import network_specs

HYPOTHESIS = settings(max_examples=10, deadline=None, derandomize=True)
SPECS = network_specs(min_layers=2, min_width=2, conv_dims=(0,))


@HYPOTHESIS
@given(spec=SPECS)
def test_probe_model_is_hnp_invariant_and_sees_an_inconsistent_permutation(spec):
    torch.manual_seed(0)
    model = ProbeModel(spec, (8,), 3, num_probes=6, activation="tanh", generator="deep-linear")
    assert_invariant(model, spec, "hnp", rtol=1e-9)
    err = invariance_error(model, spec, perturb=lambda x, g: inconsistent_permutation(x, 1, g))
    assert err > 1e-6


@HYPOTHESIS
@given(spec=SPECS)
def test_hybrid_is_hnp_invariant_and_only_the_nfn_branch_sees_sign_flips(spec):
    torch.manual_seed(0)
    hybrid = HybridModel(spec, "np", (4, 4), (8,), 2, num_probes=4, activation="tanh")
    assert_invariant(hybrid, spec, "hnp", rtol=1e-9)
    probe_only = ProbeModel(spec, (8,), 2, num_probes=4, activation="tanh")

    def flip(x, g):
        return symmetry.flip_signs(x, symmetry.sample_signs(spec, x.batch_size, generator=g))

    assert invariance_error(probe_only, spec, perturb=flip) < 1e-9
    # The NF-Layers read weights, not functions: a sign flip is not one of their symmetries.
    assert invariance_error(hybrid, spec, perturb=flip) > 1e-6


def test_hybrid_standardises_only_its_nfn_branch():
    torch.manual_seed(0)
    x = WeightSpaceFeatures.from_tensors([t.unsqueeze(1) for t in init_sirens(8)])
    hybrid = HybridModel(SIREN_SPEC, "np", (4,), (8,), 3, num_probes=5, activation=siren_activation)
    before_probe = hybrid.probe(x)
    before = hybrid(x)
    hybrid.set_statistics(x)
    torch.testing.assert_close(hybrid.probe(x), before_probe)  # the probes run raw weights
    assert (hybrid(x) - before).abs().max() > 1e-4  # the NFN branch sees standardised ones
    assert float(hybrid.nfn.scale[0]) != 1.0


def test_probe_model_trains_on_sirens_to_tell_two_images_apart():
    """End to end: two constant images (-0.5 and +0.5) fitted by hand-set SIRENs; the probes
    read the value the networks draw and the head separates them."""
    torch.manual_seed(0)
    tensors = [t.unsqueeze(1) for t in init_sirens(32)]
    labels = torch.arange(32) % 2
    tensors[-1] = tensors[-1] * 0 + (labels.float() - 0.5).view(32, 1, 1)  # b_L: the value
    tensors[2] = tensors[2] * 0.0  # W_L = 0: the image is its bias
    x = WeightSpaceFeatures.from_tensors(tensors)
    model = ProbeModel(SIREN_SPEC, (16,), 2, num_probes=4, activation=siren_activation)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()
    assert (model(x).argmax(1) == labels).all()


def test_probe_model_on_a_cnn_needs_its_input_shape():
    from weightspace.data.zoo import ZOO_SPEC

    with pytest.raises(ValueError, match="pass input_shape"):
        ProbeModel(ZOO_SPEC, (8,), 1, num_probes=4)
    model = ProbeModel(ZOO_SPEC, (8,), 1, num_probes=4, input_shape=(8, 8), padding=1, stride=2)
    from weightspace.testing import random_features

    assert model(random_features(ZOO_SPEC, 3, dtype=torch.float32)).shape == (3, 1)


def test_hybrid_nfn_branch_matches_its_module_chain_in_training(monkeypatch):
    """The NFN branch runs through the models' fast path (IO encoding as constant channels,
    channel dropout folded): outputs and gradients equal the plain chain of its modules."""
    from weightspace.nn import ChannelDropout, SinusoidalIOEncoding

    torch.manual_seed(0)
    x = WeightSpaceFeatures.from_tensors([t.unsqueeze(1).double() for t in init_sirens(6)])
    hybrid = HybridModel(
        SIREN_SPEC, "np", (4, 4), (8,), 3, num_probes=5, activation=siren_activation,
        fourier_features=3, channel_dropout=0.5,
    ).double().train()  # fmt: skip
    branch = hybrid.nfn.net
    assert list(branch.state_dict()) == list(torch.nn.Sequential(*branch).state_dict())

    def run(fast: bool, seed: int):
        hybrid.zero_grad()
        torch.manual_seed(seed)
        if fast:
            with monkeypatch.context() as m:  # the fast path calls neither module itself
                m.setattr(ChannelDropout, "forward", None)
                m.setattr(SinusoidalIOEncoding, "forward", None)
                out = branch(x)
        else:
            y = x
            for module in branch[0]:
                y = module(y)
            out = branch[1](y)
        (out.sin() * torch.arange(out.shape[1], dtype=out.dtype)).sum().backward()
        return [out.detach(), *(p.grad.clone() for p in branch.parameters())]

    fast, plain = run(True, 1), run(False, 1)
    for a, b in zip(fast, plain, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert not torch.allclose(run(True, 2)[0], plain[0])  # control: other dropout masks
