import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightspace import NetworkSpec, symmetry
from weightspace.models import EquivariantNFN, InvariantNFN, MLPHead
from weightspace.nn import (
    Activation,
    ChannelDropout,
    HNPLinear,
    HNPPool,
    NPLinear,
    NPPool,
    PointwiseLinear,
    StatsPool,
)
from weightspace.nn.encoding import GaussianFourierFeatures, LearnedIOEncoding, SinusoidalIOEncoding
from weightspace.testing import (
    assert_equivariant,
    assert_invariant,
    equivariance_errors,
    inconsistent_permutation,
    invariance_error,
    random_features,
)
from weightspace.testing.strategies import network_specs

SPECS = network_specs()
HIDDEN_SPECS = network_specs(min_layers=2, min_width=2)
HYPOTHESIS = settings(max_examples=15, deadline=None, derandomize=True)
SMALL = {"hidden_channels": (4, 4), "head_hidden": (8,)}


def moving_inputs(spec: NetworkSpec, gen: torch.Generator) -> list:
    """An NP element that moves every input neuron (n_0 >= 2) and hidden neurons at random."""
    perms = symmetry.sample(spec, "hnp", generator=gen)
    perms[0] = torch.roll(torch.arange(spec.widths[0]), 1)
    return perms


# ---------------------------------------------------------------- invariant
@HYPOTHESIS
@given(spec=SPECS)
def test_invariant_hnp_is_hnp_invariant(spec):
    torch.manual_seed(0)
    assert_invariant(InvariantNFN(spec, "hnp", in_channels=2, **SMALL), spec, "hnp", in_channels=2)


@HYPOTHESIS
@given(spec=SPECS)
def test_invariant_np_without_io_encoding_is_np_invariant(spec):
    torch.manual_seed(0)
    model = InvariantNFN(spec, "np", io_encoding=None, **SMALL)
    assert_invariant(model, spec, "np")


@HYPOTHESIS
@given(spec=SPECS, io_encoding=st.sampled_from(["learned", "sinusoidal"]))
def test_invariant_np_with_io_encoding_is_hnp_but_not_np_invariant(spec, io_encoding):
    torch.manual_seed(0)
    model = InvariantNFN(spec, "np", io_encoding=io_encoding, **SMALL)
    assert_invariant(model, spec, "hnp", rtol=1e-9)
    if spec.widths[0] >= 2:
        # Control: permuting the inputs is no longer a symmetry of the model.
        err = invariance_error(model, spec, perturb=lambda x, g: x.permute(moving_inputs(spec, g)))
        assert err > 1e-6


@HYPOTHESIS
@given(spec=SPECS, mode=st.sampled_from(["hnp", "np"]))
def test_invariant_with_the_stats_pool_keeps_its_symmetry(spec, mode):
    torch.manual_seed(0)
    model = InvariantNFN(spec, mode, io_encoding=None, pool="stats", **SMALL)
    assert isinstance(model.pool, StatsPool)
    assert model.head.in_features == model.pool.output_size(4)
    assert_invariant(model, spec, mode)
    if spec.num_layers >= 2 and spec.widths[1] >= 2:
        # Control: an inconsistent permutation changes the network, and the model sees it.
        err = invariance_error(model, spec, perturb=lambda x, g: inconsistent_permutation(x, 1, g))
        assert err > 1e-6


def test_invariant_rejects_an_unknown_pool():
    with pytest.raises(ValueError, match=r"pool must be one of \('mean', 'stats'\)"):
        InvariantNFN(NetworkSpec((2, 3, 1)), "hnp", pool="max", **SMALL)


@HYPOTHESIS
@given(spec=SPECS)
def test_invariant_with_fourier_features_keeps_its_symmetry(spec):
    torch.manual_seed(0)
    model = InvariantNFN(spec, "np", io_encoding=None, fourier_features=3, **SMALL)
    assert isinstance(model.encoder[0], GaussianFourierFeatures)
    assert_invariant(model, spec, "np")


@HYPOTHESIS
@given(spec=HIDDEN_SPECS, mode=st.sampled_from(["hnp", "np"]), data=st.data())
def test_invariant_changes_under_inconsistent_permutation(spec, mode, data):
    """Control: permuting rows of W_i without the columns of W_{i+1} is not a symmetry."""
    layer = data.draw(st.integers(1, spec.num_layers - 1))
    torch.manual_seed(0)
    # No IO encoding: its constant channels would dominate the output and shrink the change.
    model = InvariantNFN(spec, mode, io_encoding=None, **SMALL)
    err = invariance_error(model, spec, perturb=lambda x, g: inconsistent_permutation(x, layer, g))
    assert err > 1e-3


def test_invariant_structure_and_defaults():
    spec = NetworkSpec((3, 4, 5, 2))
    hnp = InvariantNFN(spec, hidden_channels=(4, 6), head_hidden=(8, 8), out_features=3)
    kinds = [type(m) for m in hnp.encoder]
    # ReLU after each layer, fused into it; an Identity keeps the activation's slot.
    assert kinds == [HNPLinear, torch.nn.Identity, HNPLinear, torch.nn.Identity]
    assert [m.activation for m in hnp.encoder[::2]] == ["relu", "relu"]
    tanh = InvariantNFN(spec, hidden_channels=(4, 6), activation="tanh")
    assert [type(m) for m in tanh.encoder] == [HNPLinear, Activation, HNPLinear, Activation]
    assert isinstance(hnp.pool, HNPPool)
    assert hnp.head[0].in_features == hnp.pool.output_size(6)
    assert hnp(random_features(spec, 5, dtype=torch.float32)).shape == (5, 3)
    np_model = InvariantNFN(spec, "np", in_channels=2, **SMALL)
    assert isinstance(np_model.encoder[0], SinusoidalIOEncoding)  # the NP default
    assert isinstance(np_model.encoder[1], NPLinear) and isinstance(np_model.pool, NPPool)
    assert np_model.encoder[1].in_channels == np_model.encoder[0].out_channels
    learned = InvariantNFN(spec, "np", io_encoding="learned", **SMALL)
    assert isinstance(learned.encoder[0], LearnedIOEncoding)
    assert learned.spec == spec and "mode='np'" in repr(learned) and str(spec) in repr(learned)


def test_invariant_head_dropout_only_in_training():
    torch.manual_seed(0)
    spec = NetworkSpec((2, 3, 1))
    model = InvariantNFN(spec, hidden_channels=(4,), head_hidden=(64,), dropout=0.5)
    assert any(isinstance(m, torch.nn.Dropout) for m in model.head)
    x = random_features(spec, 4, dtype=torch.float32)
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x), model(x))


def test_invariant_errors():
    spec = NetworkSpec((3, 4, 2))
    model = InvariantNFN(spec, **SMALL)
    with pytest.raises(
        ValueError, match=r"InvariantNFN: built for NetworkSpec\(widths=\(3, 4, 2\)"
    ):
        model(random_features(NetworkSpec((3, 5, 2)), dtype=torch.float32))
    with pytest.raises(ValueError, match="InvariantNFN: expected 1 input channels, got 2"):
        model(random_features(spec, channels=2, dtype=torch.float32))
    with pytest.raises(ValueError, match="io_encoding=None"):
        InvariantNFN(spec, "hnp", io_encoding="sinusoidal")
    with pytest.raises(ValueError, match="io_encoding must be one of"):
        InvariantNFN(spec, "np", io_encoding="fourier")
    with pytest.raises(ValueError, match="mode"):
        InvariantNFN(spec, "pt")
    with pytest.raises(ValueError, match="hidden_channels"):
        InvariantNFN(spec, hidden_channels=())


@HYPOTHESIS
@given(spec=SPECS, mode=st.sampled_from(["hnp", "np"]))
def test_invariant_with_channel_dropout_is_invariant_in_eval_mode(spec, mode):
    torch.manual_seed(0)
    model = InvariantNFN(spec, mode, io_encoding=None, channel_dropout=0.5, **SMALL)
    assert sum(isinstance(m, ChannelDropout) for m in model.encoder) == 2
    assert_invariant(model, spec, mode)  # the kit evaluates a float64 copy in eval mode


def _copy_parameters(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Same parameters in the same order (module indices differ once dropout slots exist)."""
    pairs = list(zip(source.parameters(), target.parameters(), strict=True))
    with torch.no_grad():
        for a, b in pairs:
            b.copy_(a)


def test_channel_dropout_after_each_activation_and_only_in_training():
    torch.manual_seed(0)
    spec = NetworkSpec((3, 4, 5, 2))
    model = InvariantNFN(spec, hidden_channels=(6, 6), head_hidden=(8,), channel_dropout=0.5)
    kinds = [type(m) for m in model.encoder]
    assert kinds == [HNPLinear, torch.nn.Identity, ChannelDropout] * 2
    tanh = InvariantNFN(spec, hidden_channels=(6,), activation="tanh", channel_dropout=0.1)
    assert [type(m) for m in tanh.encoder] == [HNPLinear, Activation, ChannelDropout]
    plain = InvariantNFN(spec, hidden_channels=(6, 6), head_hidden=(8,))
    _copy_parameters(plain, model)
    x = random_features(spec, 8, dtype=torch.float32)
    model.train()
    a, b = model(x), model(x)
    assert not torch.equal(a, b)  # other channels dropped in each call
    model.eval()
    plain.eval()
    assert torch.equal(model(x), plain(x))  # eval mode: the model without dropout

    eq = EquivariantNFN(spec, "hnp", (4, 5), channel_dropout=0.5)
    # Between NF-Layers, none after the last.
    assert [type(m) for m in eq.layers] == [
        HNPLinear, torch.nn.Identity, ChannelDropout, HNPLinear, torch.nn.Identity,
        ChannelDropout, HNPLinear,
    ]  # fmt: skip
    eq.train()
    assert not torch.equal(eq(x).weights[0], eq(x).weights[0])
    eq.eval()
    plain_eq = EquivariantNFN(spec, "hnp", (4, 5))
    _copy_parameters(plain_eq, eq)
    assert all(torch.equal(u, v) for u, v in zip(eq(x).tensors, plain_eq.eval()(x).tensors))


def test_no_channel_dropout_keeps_the_state_dict_keys():
    """p = 0 adds no module: checkpoints of models saved before the option still load."""
    spec = NetworkSpec((3, 4, 2))
    for p in (0, 0.0):
        inv = InvariantNFN(spec, hidden_channels=(4, 4), head_hidden=(8,), channel_dropout=p)
        keys = inv.state_dict()
        assert {k.split(".")[1] for k in keys if k.startswith("encoder.")} == {"0", "2"}
        assert not any(isinstance(m, ChannelDropout) for m in inv.modules())
        eq = EquivariantNFN(spec, "np", (4,), channel_dropout=p)  # sinusoidal encoding first
        assert {k.split(".")[1] for k in eq.state_dict()} == {"1", "3"}
    # Control: a positive p moves the second layer.
    inv = InvariantNFN(spec, hidden_channels=(4, 4), head_hidden=(8,), channel_dropout=0.1)
    assert "encoder.3.bias" in inv.state_dict() and "encoder.2.bias" not in inv.state_dict()


@pytest.mark.parametrize("bad", [-0.1, 1.0, True, "0.5", None])
def test_channel_dropout_is_checked(bad):
    spec = NetworkSpec((3, 4, 2))
    with pytest.raises(ValueError, match=r"InvariantNFN: channel_dropout must be a number in"):
        InvariantNFN(spec, channel_dropout=bad)
    with pytest.raises(ValueError, match=r"EquivariantNFN: channel_dropout must be a number in"):
        EquivariantNFN(spec, channel_dropout=bad)


# -------------------------------------------------------------- equivariant
@HYPOTHESIS
@given(spec=SPECS, mode=st.sampled_from(["np", "hnp", "pt"]))
def test_equivariant_is_equivariant_for_its_group(spec, mode):
    torch.manual_seed(0)
    model = EquivariantNFN(spec, mode, (4, 4), in_channels=2, out_channels=3, io_encoding=None)
    group = "hnp" if mode == "hnp" else "np"  # PT commutes with every neuron permutation
    errors = assert_equivariant(model, spec, group, in_channels=2)
    assert set(errors) == {t.name for t in spec.tensors}


@HYPOTHESIS
@given(spec=SPECS, io_encoding=st.sampled_from(["learned", "sinusoidal"]))
def test_equivariant_np_with_io_encoding_is_hnp_but_not_np_equivariant(spec, io_encoding):
    torch.manual_seed(0)
    model = EquivariantNFN(spec, "np", (4, 4), io_encoding=io_encoding)
    assert_equivariant(model, spec, "hnp")
    if spec.widths[0] >= 2:
        gen = torch.Generator().manual_seed(0)
        errors = equivariance_errors(model, spec, "np", perms=moving_inputs(spec, gen))
        assert max(errors.values()) > 1e-6


def test_equivariant_structure_and_shapes():
    spec = NetworkSpec((2, 3, 4, 1), ((3, 3), (3, 3), ()))
    model = EquivariantNFN(spec, "hnp", hidden_channels=(4, 5), in_channels=2, out_channels=3)
    kinds = [type(m) for m in model.layers]
    # ReLUs between NF-Layers (fused, an Identity in their slot), not after the last one.
    assert kinds == [HNPLinear, torch.nn.Identity, HNPLinear, torch.nn.Identity, HNPLinear]
    assert [m.activation for m in model.layers[::2]] == ["relu", "relu", None]
    assert [m.out_channels for m in model.layers[::2]] == [4, 5, 3]
    x = random_features(spec, 2, 2, dtype=torch.float32)
    y = model(x)
    assert y.spec == spec and y.channels == 3 and y.batch_size == 2
    pt = EquivariantNFN(spec, "pt", hidden_channels=(4,))
    assert [type(m) for m in pt.layers] == [PointwiseLinear, Activation, PointwiseLinear]
    assert isinstance(EquivariantNFN(spec, "np", (4,)).layers[0], SinusoidalIOEncoding)
    assert isinstance(
        EquivariantNFN(spec, "pt", (4,), io_encoding="learned").layers[0], LearnedIOEncoding
    )
    assert "out_channels=3" in repr(model) and model.spec == spec


def test_equivariant_errors():
    spec = NetworkSpec((3, 4, 2))
    model = EquivariantNFN(spec, "np", (4,), in_channels=2)
    with pytest.raises(ValueError, match="EquivariantNFN: built for"):
        model(random_features(NetworkSpec((3, 4, 4)), channels=2, dtype=torch.float32))
    with pytest.raises(ValueError, match="EquivariantNFN: expected 2 input channels"):
        model(random_features(spec, channels=1, dtype=torch.float32))
    with pytest.raises(ValueError, match="mode must be one of"):
        EquivariantNFN(spec, "xyz")
    with pytest.raises(ValueError, match="io_encoding=None"):
        EquivariantNFN(spec, "hnp", io_encoding="learned")


# --------------------------------------------------------------------- head
def test_mlp_head():
    head = MLPHead(5, (7, 6), 2, dropout=0.1)
    assert [type(m).__name__ for m in head] == [
        "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear",
    ]  # fmt: skip
    assert head(torch.zeros(3, 5)).shape == (3, 2)
    assert [type(m).__name__ for m in MLPHead(5, (), 2)] == ["Linear"]
    with pytest.raises(ValueError, match="dropout"):
        MLPHead(5, (4,), 1, dropout=1.0)


def test_invariant_fourier_and_io_front_end_is_fused_with_the_same_outputs():
    # InvariantNFN hands the sinusoidal IO encoding after its Fourier features to the first
    # NF-Layer as constant channels; running its encoder module by module must give the same
    # logits and gradients.
    torch.manual_seed(0)
    spec = NetworkSpec((2, 6, 5, 1))
    model = InvariantNFN(
        spec, "np", (4, 4), head_hidden=(8,), out_features=3, fourier_features=6, fourier_scale=3.0
    ).double()
    assert isinstance(model.encoder[0], GaussianFourierFeatures)
    assert isinstance(model.encoder[1], SinusoidalIOEncoding)
    x = random_features(spec, 3)
    y = model(x)
    plain = model.head(model.pool(model.encoder(x)))
    torch.testing.assert_close(y, plain, rtol=1e-12, atol=1e-12)
    g = torch.autograd.grad(y.square().sum(), list(model.parameters()))
    g_plain = torch.autograd.grad(plain.square().sum(), list(model.parameters()))
    for a, b in zip(g, g_plain):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _module_by_module(encoder: torch.nn.Sequential, x):
    """The encoder's modules applied one after the other: no fused front end, no folded
    dropout (the definition the models' fast path must reproduce)."""
    for module in encoder:
        x = module(x)
    return x


@pytest.mark.parametrize("mode", ["np", "hnp"])
def test_folded_channel_dropout_gives_the_module_by_module_values(mode):
    """In training, the models fold each ChannelDropout into the NF-Layer before it. Same random
    stream, same masks: outputs and parameter gradients equal the plain module chain's."""
    spec = NetworkSpec((2, 5, 4, 3), ((3, 3), (3, 3), ()))
    fourier = 4 if mode == "np" else None  # NP: Fourier features + sinusoidal IO encoding
    model = InvariantNFN(
        spec, mode, hidden_channels=(4, 5), head_hidden=(8,), channel_dropout=0.5,
        fourier_features=fourier,
    ).double().train()  # fmt: skip
    eq = EquivariantNFN(spec, mode, (4, 5), channel_dropout=0.5).double().train()
    x = random_features(spec, 6, generator=torch.Generator().manual_seed(0))

    def run(fast: bool, net, seed: int):
        net.zero_grad()
        torch.manual_seed(seed)
        if net is model:
            out = net(x) if fast else net.head(net.pool(_module_by_module(net.encoder, x)))
        else:
            y = net(x) if fast else _module_by_module(net.layers, x)
            out = torch.cat([t.flatten(1) for t in y.tensors], 1)
        (out.sin() * torch.arange(out.shape[1], dtype=out.dtype)).sum().backward()
        return [out.detach(), *(p.grad.clone() for p in net.parameters())]

    for net in (model, eq):
        fast, plain = run(True, net, seed=3), run(False, net, seed=3)
        for a, b in zip(fast, plain, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        # Control: other masks (another seed) give other outputs.
        assert not torch.allclose(run(True, net, seed=4)[0], plain[0])
