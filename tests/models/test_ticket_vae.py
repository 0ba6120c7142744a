"""weightspace.models.ticket_vae: the conditional VAE of NF-Layers that predicts ticket masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.models import MaskVAE, mask_elbo, mask_iou, top_k_mask
from weightspace.nn import HNPLinear, NPLinear, PointwiseLinear
from weightspace.nn.encoding import SinusoidalIOEncoding
from weightspace.testing import assert_equivariant, equivariance_errors, random_features
from weightspace.testing.strategies import network_specs

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = NetworkSpec((5, 4, 3, 2))
SPECS = network_specs(conv_dims=(0,), min_layers=2, max_layers=3, min_width=2, max_width=5)
HYPOTHESIS = settings(max_examples=6, deadline=None, derandomize=True)
# The symmetry group each mode's stacks commute with: NP with its IO encoding tells inputs and
# outputs apart, so it is HNP-equivariant; PT commutes with every neuron permutation (and more).
GROUP = {"np": "hnp", "hnp": "hnp", "pt": "np"}
LATENT = 3


def inits(
    spec: NetworkSpec, n: int, gen: torch.Generator, dtype: torch.dtype = torch.float32
) -> WeightSpaceFeatures:
    """Initialisations like ``nn.Linear``'s: uniform in ``±1/sqrt(fan_in)`` per layer."""
    weights, biases = [], []
    for rows, cols in spec.weight_shapes:
        bound = 1 / math.sqrt(cols)
        weights.append((torch.rand(n, 1, rows, cols, generator=gen, dtype=dtype) * 2 - 1) * bound)
        biases.append((torch.rand(n, 1, rows, generator=gen, dtype=dtype) * 2 - 1) * bound)
    return WeightSpaceFeatures(weights, biases, spec)


def random_mask(spec: NetworkSpec, n: int, gen: torch.Generator, dtype=torch.float64):
    mask = random_features(spec, n, dtype=dtype, generator=gen).map(lambda t: (t > 0.5).to(dtype))
    return WeightSpaceFeatures(mask.weights, [torch.ones_like(b) for b in mask.biases], spec)


def vae64(spec: NetworkSpec, mode: str, **kwargs) -> MaskVAE:
    """A float64 model in eval mode with non-trivial statistics."""
    torch.manual_seed(0)
    model = MaskVAE(spec, mode, (4, 4), LATENT, **kwargs).double().eval()
    data = random_features(spec, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    model.set_statistics(data * 0.3 + 0.1)
    return model


def channels(x: WeightSpaceFeatures, start: int, stop: int | None = None) -> WeightSpaceFeatures:
    return x.map(lambda t: t[:, start:stop])


def permute_each_tensor(x: WeightSpaceFeatures, gen: torch.Generator) -> tuple:
    """A random permutation of the rows and of the columns of every tensor, each its own: PT's
    symmetry, which is not a symmetry of the network. Returns the permuted features and a
    function applying the same permutations to other features."""
    perms = [[torch.randperm(n, generator=gen) for n in t.neuron_shape] for t in x.spec.tensors]

    def apply(y: WeightSpaceFeatures) -> WeightSpaceFeatures:
        out = []
        for t, ps in zip(y.tensors, perms):
            for axis, p in enumerate(ps, start=2):
                t = t.index_select(axis, p)
            out.append(t)
        return WeightSpaceFeatures.from_tensors(out)

    return apply(x), apply


def moving_inputs(spec: NetworkSpec, gen: torch.Generator) -> list:
    """An NP element that moves every input neuron and hidden neurons at random."""
    perms = symmetry.sample(spec, "hnp", generator=gen)
    perms[0] = torch.roll(torch.arange(spec.widths[0]), 1)
    return perms


# ------------------------------------------------------------------ structure
def test_stacks_are_four_nf_layers_of_the_mode():
    for mode, layer in (("np", NPLinear), ("hnp", HNPLinear), ("pt", PointwiseLinear)):
        model = MaskVAE(SPEC, mode)
        for stack, c_in, c_out in ((model.encoder, 2, 10), (model.decoder, 6, 1)):
            layers = [m for m in stack.layers if isinstance(m, layer)]
            assert len(layers) == 4
            assert (stack.in_channels, stack.out_channels) == (c_in, c_out)
            assert [m.out_channels for m in layers] == [32, 32, 32, c_out]
            assert isinstance(stack.layers[0], SinusoidalIOEncoding) == (mode == "np")
    assert "latent_channels=5" in repr(MaskVAE(SPEC, "hnp"))


def test_shapes_of_every_call():
    gen = torch.Generator().manual_seed(0)
    model = MaskVAE(SPEC, "hnp", (4,), LATENT)
    init, mask = inits(SPEC, 3, gen), random_mask(SPEC, 3, gen, torch.float32)
    mean, logvar = model.encode(init, mask)
    assert mean.channels == logvar.channels == LATENT and mean.spec == SPEC
    logits, mean2, _ = model(init, mask)
    assert logits.channels == 1 and logits.batch_size == 3 and mean2.channels == LATENT
    assert model(init).channels == 1 and model.sample(init).channels == 1


# -------------------------------------------------------------- equivariance
@HYPOTHESIS
@given(spec=SPECS, mode=st.sampled_from(["np", "hnp", "pt"]))
def test_with_the_magnitude_channel_both_stacks_stay_equivariant(spec, mode):
    model = vae64(spec, mode, magnitude=True)
    gen = torch.Generator().manual_seed(3)
    x = inits(spec, 2, gen, torch.float64).cat_channels(random_mask(spec, 2, gen))

    def both(x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        mean, logvar = model.encode(channels(x, 0, 1), channels(x, 1))
        return model.decode(channels(x, 0, 1), mean).cat_channels(logvar)

    errors = equivariance_errors(both, spec, GROUP[mode], in_channels=2, features=x)
    assert max(errors.values()) <= 1e-9, errors


def test_the_magnitude_channel_is_the_absolute_standardised_init():
    gen = torch.Generator().manual_seed(4)
    init = inits(SPEC, 3, gen)
    model = MaskVAE(SPEC, "pt", (4,), LATENT, magnitude=True)
    model.set_statistics(init)
    x = model._init(init, "test")
    assert x.channels == 2
    plain = model.standardize(init)
    for got, want in zip(x.tensors, plain.tensors):
        torch.testing.assert_close(got[:, :1], want)
        torch.testing.assert_close(got[:, 1:], want.abs())
    assert "magnitude=True" in repr(model)


@HYPOTHESIS
@given(spec=SPECS, mode=st.sampled_from(["np", "hnp", "pt"]))
def test_decoder_is_equivariant(spec, mode):
    model = vae64(spec, mode)
    assert_equivariant(
        lambda x: model.decode(channels(x, 0, 1), channels(x, 1)),
        spec,
        GROUP[mode],
        in_channels=1 + LATENT,
    )


@HYPOTHESIS
@given(spec=SPECS, mode=st.sampled_from(["np", "hnp", "pt"]))
def test_encoder_is_equivariant(spec, mode):
    model = vae64(spec, mode)
    gen = torch.Generator().manual_seed(2)
    x = inits(spec, 2, gen, torch.float64).cat_channels(random_mask(spec, 2, gen))

    def encode(x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        mean, logvar = model.encode(channels(x, 0, 1), channels(x, 1))
        return mean.cat_channels(logvar)

    errors = equivariance_errors(encode, spec, GROUP[mode], in_channels=2, features=x)
    assert max(errors.values()) <= 1e-9, errors


def test_pt_commutes_with_every_row_and_column_permutation_and_hnp_does_not():
    gen = torch.Generator().manual_seed(3)
    init, mask = inits(SPEC, 2, gen, torch.float64), random_mask(SPEC, 2, gen)
    z = random_features(SPEC, 2, LATENT, generator=gen)
    for mode, equivariant in (("pt", True), ("hnp", False)):
        model = vae64(SPEC, mode)
        x, apply = permute_each_tensor(init.cat_channels(mask).cat_channels(z), gen)
        p_init, p_mask, p_z = channels(x, 0, 1), channels(x, 1, 2), channels(x, 2)
        with torch.no_grad():
            pairs = [
                (model.decode(p_init, p_z), apply(model.decode(init, z))),
                (model.encode(p_init, p_mask)[0], apply(model.encode(init, mask)[0])),
            ]
        for a, b in pairs:
            err = max(float((s - t).abs().max()) for s, t in zip(a.weights, b.weights))
            # Control: HNP layers mix rows and columns, so this is not a symmetry of theirs.
            assert (err < 1e-10) if equivariant else (err > 1e-4), (mode, err)


def test_control_np_with_io_encoding_is_not_np_equivariant():
    model = vae64(SPEC, "np")
    gen = torch.Generator().manual_seed(4)
    errors = equivariance_errors(
        lambda x: model.decode(channels(x, 0, 1), channels(x, 1)),
        SPEC,
        "np",
        in_channels=1 + LATENT,
        perms=moving_inputs(SPEC, gen),
    )
    assert max(errors.values()) > 1e-4


def test_predictions_from_the_prior_mean_are_equivariant_and_a_seeded_sample_is_not():
    spec = NetworkSpec((4, 5, 5, 2))
    assert_equivariant(vae64(spec, "hnp", prior_seed=None), spec, "hnp")
    # Control: a seeded prior sample stays put while the init is permuted.
    errors = equivariance_errors(vae64(spec, "hnp", prior_seed=0), spec, "hnp")
    assert max(errors.values()) > 1e-4


def test_biases_of_the_mask_are_read_as_kept():
    model = vae64(SPEC, "hnp")
    gen = torch.Generator().manual_seed(5)
    init, mask = inits(SPEC, 2, gen, torch.float64), random_mask(SPEC, 2, gen)
    zeroed = WeightSpaceFeatures(mask.weights, [torch.zeros_like(b) for b in mask.biases])
    with torch.no_grad():
        a, b = model.encode(init, mask)[0], model.encode(init, zeroed)[0]
    assert all(torch.equal(s, t) for s, t in zip(a.tensors, b.tensors))


# --------------------------------------------------------------- statistics
def test_set_statistics_standardises_each_tensor():
    gen = torch.Generator().manual_seed(6)
    init = inits(SPEC, 6, gen)
    z = random_features(SPEC, 6, LATENT, dtype=torch.float32, generator=gen)
    # Each tensor scaled and shifted by its own constant: after set_statistics, the same input.
    scales = [0.5, 3.0, 10.0, 0.1, 2.0, 7.0]
    moved = WeightSpaceFeatures.from_tensors(
        [t * s + 0.2 * k for k, (t, s) in enumerate(zip(init.tensors, scales))], SPEC
    )
    torch.manual_seed(0)
    model = MaskVAE(SPEC, "hnp", (4,), LATENT)
    model.set_statistics(init)
    with torch.no_grad():
        expected = model.decode(init, z)
        model.set_statistics(moved)
        got = model.decode(moved, z)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got.tensors, expected.tensors))
        # Control: without new statistics the moved init is a different input.
        model.set_statistics(init)
        other = model.decode(moved, z)
    assert max(float((a - b).abs().max()) for a, b in zip(other.tensors, expected.tensors)) > 1e-2
    assert model.standardize.scale.shape == (6,)


# ---------------------------------------------------------------- prediction
def test_eval_predictions_are_deterministic_and_independent_of_the_batch():
    gen = torch.Generator().manual_seed(7)
    init = inits(SPEC, 4, gen)
    torch.manual_seed(0)
    model = MaskVAE(SPEC, "hnp", (4,), LATENT).eval()
    with torch.no_grad():
        a, b = model(init), model(init)
        one = model(init[2])
        assert all(torch.equal(s, t) for s, t in zip(a.tensors, b.tensors))
        assert all(torch.allclose(s[2:3], t, atol=1e-6) for s, t in zip(a.tensors, one.tensors))
        # Controls: another prior seed, train mode, and explicit samples all draw other z.
        model.prior_seed = 1
        c = model(init)
        model.prior_seed = 0
        model.train()
        d, e = model(init), model(init)
        f = model.sample(init, torch.Generator().manual_seed(0))
    for x, y in ((a, c), (d, e), (a, f)):
        assert not torch.allclose(x.weights[0], y.weights[0])


# ---------------------------------------------------------------------- loss
def test_mask_elbo_matches_a_hand_computation():
    spec = NetworkSpec((2, 1))  # W1 (1, 2), b1 (1,)
    logits = WeightSpaceFeatures([torch.tensor([[[[0.5, -2.0]]]])], [torch.tensor([[[9.0]]])])
    mask = WeightSpaceFeatures([torch.tensor([[[[1.0, 0.0]]]])], [torch.tensor([[[1.0]]])])
    mean = WeightSpaceFeatures(
        [torch.tensor([[[[0.3, -1.0]], [[0.0, 2.0]]]])], [torch.tensor([[[0.5], [0.0]]])]
    )
    logvar = WeightSpaceFeatures(
        [torch.tensor([[[[0.0, 0.5]], [[-1.0, 0.0]]]])], [torch.tensor([[[0.2], [0.0]]])]
    )
    assert mean.spec == spec and mean.channels == 2

    def sigmoid(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    bce = -(math.log(sigmoid(0.5)) + math.log(1 - sigmoid(-2.0))) / 2

    def kl(m: float, lv: float) -> float:
        return 0.5 * (m * m + math.exp(lv) - 1 - lv)

    pairs = [(0.3, 0.0), (-1.0, 0.5), (0.0, -1.0), (2.0, 0.0), (0.5, 0.2), (0.0, 0.0)]
    kl_hand = sum(kl(m, lv) for m, lv in pairs) / 2  # over all latent entries, per weight entry
    loss, got_bce, got_kl = mask_elbo(logits, mask, mean, logvar, kl_weight=0.25)
    assert got_bce.item() == pytest.approx(bce, rel=1e-6)
    assert got_kl.item() == pytest.approx(kl_hand, rel=1e-6)
    assert loss.item() == pytest.approx(bce + 0.25 * kl_hand, rel=1e-6)


def test_mask_elbo_ignores_biases_and_its_kl_vanishes_at_the_prior():
    gen = torch.Generator().manual_seed(8)
    logits = random_features(SPEC, 3, generator=gen)
    mask = random_mask(SPEC, 3, gen)
    zeros = random_features(SPEC, 3, LATENT).map(torch.zeros_like)
    _, bce, kl = mask_elbo(logits, mask, zeros, zeros)
    assert kl.item() == 0.0
    other_logits = WeightSpaceFeatures(logits.weights, [b * 100 - 7 for b in logits.biases])
    other_mask = WeightSpaceFeatures(mask.weights, [torch.zeros_like(b) for b in mask.biases])
    assert mask_elbo(other_logits, other_mask, zeros, zeros)[1].item() == bce.item()
    # Controls: the weights' logits do count, and a posterior away from the prior costs KL.
    flipped = WeightSpaceFeatures([-w for w in logits.weights], logits.biases)
    assert mask_elbo(flipped, mask, zeros, zeros)[1].item() != pytest.approx(bce.item())
    assert mask_elbo(logits, mask, zeros + 0.5, zeros)[2].item() > 0


def test_gradient_reaches_every_parameter():
    gen = torch.Generator().manual_seed(9)
    init, mask = inits(SPEC, 4, gen), random_mask(SPEC, 4, gen, torch.float32)
    for mode in ("np", "hnp", "pt"):
        torch.manual_seed(0)
        model = MaskVAE(SPEC, mode, (8, 8), LATENT)
        loss, _, _ = mask_elbo(*_train_outputs(model, init, mask), kl_weight=1.0)
        loss.backward()
        for name, p in model.named_parameters():
            # PT carries nothing between tensors, so its decoder's bias path only makes the
            # bias logits, which the loss ignores; every other parameter is trained.
            dead = mode == "pt" and name.startswith("decoder") and int(name[-1]) >= 3
            assert (p.grad is None) if dead else bool(p.grad.abs().sum() > 0), (mode, name)


def _train_outputs(model: MaskVAE, init: WeightSpaceFeatures, mask: WeightSpaceFeatures):
    logits, mean, logvar = model(init, mask)
    return logits, mask, mean, logvar


# ----------------------------------------------------------------- top-k mask
def test_top_k_mask_matches_a_numpy_argsort_with_ties():
    gen = torch.Generator().manual_seed(10)
    # Integer scores: many ties, broken by position in flatten order.
    logits = random_features(SPEC, 5, generator=gen).map(lambda t: (t * 2).round())
    for sparsity in (0.5, 0.8, 0.95):
        mask = top_k_mask(logits, sparsity)
        scores = torch.cat([w.reshape(5, -1) for w in logits.weights], dim=1).numpy()
        n = scores.shape[1]
        k = round((1 - sparsity) * n)
        for b in range(5):
            expected = np.zeros(n)
            expected[np.argsort(-scores[b], kind="stable")[:k]] = 1
            got = torch.cat([w[b].reshape(-1) for w in mask.weights]).numpy()
            np.testing.assert_array_equal(got, expected)
        assert all(torch.all(b == 1) for b in mask.biases)
        assert mask.spec == SPEC and mask.dtype == logits.dtype


def test_top_k_mask_is_global_over_layers():
    spec = NetworkSpec((10, 10, 10))  # 200 weights; 10 % kept = 20
    gen = torch.Generator().manual_seed(11)
    logits = random_features(spec, 2, generator=gen)
    # W2's scores are all above W1's: a global top-k takes W2 only, a per-layer one would not.
    logits = WeightSpaceFeatures([logits.weights[0] - 10, logits.weights[1]], logits.biases)
    mask = top_k_mask(logits, 0.9)
    assert mask.weights[0].sum().item() == 0
    assert mask.weights[1].sum(dim=(1, 2, 3)).tolist() == [20.0, 20.0]
    # |init| as scores: global magnitude pruning.
    magnitude = top_k_mask(inits(spec, 3, gen).map(torch.abs), 0.95)
    assert [sum(int(w[b].sum()) for w in magnitude.weights) for b in range(3)] == [10, 10, 10]


@pytest.mark.parametrize("bad", [0, 1, 0.0, 1.0, -0.1, 1.5, True, "0.9", float("nan")])
def test_top_k_mask_refuses_a_sparsity_outside_the_open_interval(bad):
    logits = random_features(SPEC, 1)
    with pytest.raises(ValueError, match=r"top_k_mask: sparsity must be a number in \(0, 1\)"):
        top_k_mask(logits, bad)


def test_top_k_mask_refuses_nan_and_a_sparsity_that_keeps_nothing():
    logits = random_features(SPEC, 1)
    with pytest.raises(ValueError, match="keeps no weight"):
        top_k_mask(logits, 0.999)
    broken = WeightSpaceFeatures(
        [logits.weights[0], logits.weights[1] * math.nan, logits.weights[2]], logits.biases
    )
    with pytest.raises(ValueError, match="logits W2 hold NaN"):
        top_k_mask(broken, 0.5)


def test_mask_iou():
    spec = NetworkSpec((4, 1))
    a = WeightSpaceFeatures(
        [torch.tensor([[[[1.0, 1.0, 0.0, 0.0]]], [[[0.0] * 4]]])], [torch.ones(2, 1, 1)]
    )
    b = WeightSpaceFeatures(
        [torch.tensor([[[[1.0, 0.0, 1.0, 0.0]]], [[[0.0] * 4]]])], [torch.zeros(2, 1, 1)]
    )
    assert a.spec == spec
    assert mask_iou(a, b).tolist() == [1 / 3, 1.0]


# ---------------------------------------------------------------------- errors
def test_bad_inputs_are_named():
    gen = torch.Generator().manual_seed(12)
    model = MaskVAE(SPEC, "hnp", (4,), LATENT)
    init, mask = inits(SPEC, 2, gen), random_mask(SPEC, 2, gen, torch.float32)
    halves = WeightSpaceFeatures(
        [mask.weights[0], mask.weights[1] * 0.5, mask.weights[2]], mask.biases
    )
    with pytest.raises(ValueError, match=r"MaskVAE.encode: mask W2 is not binary \(holds 0.5\)"):
        model(init, halves)
    with pytest.raises(ValueError, match=r"mask_elbo: mask W2 is not binary"):
        mask_elbo(init, halves, *model.encode(init, mask))
    nan = WeightSpaceFeatures(
        init.weights, [init.biases[0], init.biases[1] * math.nan, init.biases[2]]
    )
    with pytest.raises(ValueError, match=r"MaskVAE.decode: init b2 holds NaN or inf"):
        model(nan)
    with pytest.raises(ValueError, match=r"MaskVAE.set_statistics: init b2 holds NaN"):
        model.set_statistics(nan)
    with pytest.raises(ValueError, match=r"MaskVAE.encode: init: expected 1 input channels, got 2"):
        model.encode(init.cat_channels(init), mask)
    other = inits(NetworkSpec((5, 6, 3, 2)), 2, gen)
    with pytest.raises(ValueError, match=r"MaskVAE: init: built for NetworkSpec"):
        model(other)
    z = random_features(SPEC, 2, LATENT + 1, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"MaskVAE.decode: z: expected 3 input channels, got 4"):
        model.decode(init, z)
    with pytest.raises(TypeError, match="expected WeightSpaceFeatures"):
        model(init.weights[0])
    with pytest.raises(ValueError, match="kl_weight must be a finite number >= 0"):
        mask_elbo(*_train_outputs(model, init, mask), kl_weight=-1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"latent_channels": 0}, "latent_channels must be a positive integer"),
        ({"latent_channels": True}, "latent_channels must be a positive integer"),
        ({"latent_channels": 2.5}, "latent_channels must be a positive integer"),
        ({"hidden_channels": ()}, "hidden_channels needs at least one width"),
        ({"hidden_channels": (8, 0)}, "every entry of hidden_channels must be a positive"),
        ({"hidden_channels": 32}, "hidden_channels must be a sequence"),
        ({"prior_seed": 1.5}, "prior_seed must be an integer or None"),
        ({"magnitude": 1}, "magnitude must be True or False"),
        ({"mode": "cnn"}, "mode must be one of"),
        ({"mode": "hnp", "io_encoding": "sinusoidal"}, "io_encoding='sinusoidal'"),
    ],
)
def test_bad_hyperparameters_are_named(kwargs, match):
    kwargs = {"mode": "hnp", **kwargs}
    with pytest.raises(ValueError, match=match):
        MaskVAE(SPEC, **kwargs)


# ----------------------------------------------------------------- learning
@pytest.mark.parametrize(("mode", "steps"), [("hnp", 150), ("pt", 150)])
def test_learns_global_magnitude_pruning_of_the_init(mode, steps):
    """On 16 inits whose masks are the top 5 % |init|, the ELBO teaches the prior-sampled top-k
    mask to find them (chance IoU is about 0.03 here)."""
    spec = NetworkSpec((6, 10, 10, 3))
    gen = torch.Generator().manual_seed(0)
    init = inits(spec, 16, gen)
    target = top_k_mask(init.map(torch.abs), 0.95)
    torch.manual_seed(0)
    model = MaskVAE(spec, mode, (16, 16), latent_channels=2)
    model.set_statistics(init)

    def iou() -> float:
        model.eval()
        with torch.no_grad():
            return mask_iou(top_k_mask(model(init), 0.95), target).mean().item()

    before = iou()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss, _, _ = mask_elbo(*_train_outputs(model, init, target))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = iou()
    assert before < 0.3 and after > 0.7, (before, after)


# --------------------------------------------------------------------- allocated top-k
def test_layer_budgets_split_k_in_proportion_under_the_caps() -> None:
    from weightspace.models.ticket_vae import layer_budgets

    got = layer_budgets(
        torch.tensor([[3.0, 15.0, 31.0], [1.0, 1.0, 1.0], [0.0, 0.0, 5.0]]), 100, [1000, 100, 10]
    )
    assert got.tolist() == [[15, 75, 10], [45, 45, 10], [45, 45, 10]]
    assert got.sum(1).tolist() == [100, 100, 100]
    exact = layer_budgets(torch.tensor([[1.0, 3.0]]), 8, [100, 100])
    assert exact.tolist() == [[2, 6]]


def test_allocated_top_k_keeps_the_expected_share_of_each_tensor() -> None:
    from weightspace.models.ticket_vae import allocated_top_k

    spec = NetworkSpec((40, 20, 10))
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(3, 1, *s, generator=g) * 0.1 for s in spec.weight_shapes]
    # the model expects 5 % of W1 (800 entries) and 50 % of W2 (200) kept: 140 in all
    offsets = [math.log(0.05 / 0.95), 0.0]
    logits = WeightSpaceFeatures(
        [n + o for n, o in zip(noise, offsets)],
        [torch.zeros(3, 1, *s) for s in spec.bias_shapes],
        spec,
    )
    sparsity = 1 - 140 / 1000
    mask = allocated_top_k(logits, sparsity)
    kept = [w.flatten(1).sum(1) for w in mask.weights]
    total = kept[0] + kept[1]
    assert total.tolist() == [140.0] * 3
    assert all(30 <= k <= 50 for k in kept[0].tolist())  # ≈ 40 = 5 % of 800
    # within a tensor, the highest logits are kept
    for w, m in zip(logits.weights, mask.weights):
        for b in range(3):
            assert w[b][m[b] == 1].min() >= w[b][m[b] == 0].max()
    # a global top-k of the same logits empties W1: the failure this decoding avoids
    assert float(top_k_mask(logits, sparsity).weights[0].sum()) < float(mask.weights[0].sum()) / 10
    assert all(bool((b == 1).all()) for b in mask.biases)


def test_set_mask_prior_starts_logits_at_the_training_log_odds() -> None:
    vae = MaskVAE(SPEC, "pt", hidden_channels=(4,))
    init = random_features(SPEC, 6, dtype=torch.float32)
    mask = top_k_mask(init.map(torch.abs), 0.7)
    vae.set_mask_prior(mask)
    density = torch.tensor([float(w.mean()) for w in mask.weights])
    torch.testing.assert_close(vae.logit_offset.detach(), density.logit())
    bad = mask.map(lambda t: t * 0.5)
    with pytest.raises(ValueError, match=r"not binary|0 or 1|other than"):
        vae.set_mask_prior(bad)


# --------------------------------------------------------------------- sampled top-k
def _two_level_logits(spec: NetworkSpec, batch: int = 3) -> WeightSpaceFeatures:
    """Logits 2 on the first half of every tensor's entries, -2 on the rest, plus small noise."""
    g = torch.Generator().manual_seed(1)
    weights = []
    for s in spec.weight_shapes:
        t = torch.randn(batch, 1, *s, generator=g) * 0.01
        flat = t.view(batch, -1)
        half = flat.shape[1] // 2
        flat[:, :half] += 2.0
        flat[:, half:] -= 2.0
        weights.append(t)
    return WeightSpaceFeatures(weights, [torch.zeros(batch, 1, *s) for s in spec.bias_shapes], spec)


def test_sampled_top_k_fills_the_same_budgets_and_draws_by_probability() -> None:
    from weightspace.models.ticket_vae import allocated_top_k, sampled_top_k

    spec = NetworkSpec((40, 20, 10))
    logits = _two_level_logits(spec)
    sparsity = 0.9
    top = allocated_top_k(logits, sparsity)
    drawn = sampled_top_k(logits, sparsity, seed=0)
    for a, b in zip(top.weights, drawn.weights):
        assert a.flatten(1).sum(1).tolist() == b.flatten(1).sum(1).tolist()  # same budgets
    assert all(bool((b == 1).all()) for b in drawn.biases)
    # Top-k keeps only high logits; a draw keeps mostly high ones, and some low ones (the
    # control: sampling is not the top-k under another name).
    w1_top, w1_drawn = top.weights[0].view(3, -1), drawn.weights[0].view(3, -1)
    half = w1_top.shape[1] // 2
    assert w1_top[:, half:].sum() == 0
    high, low = w1_drawn[:, :half].sum(), w1_drawn[:, half:].sum()
    assert high > 5 * low > 0
    # Deterministic per seed, another seed another draw; a cold temperature is the top-k.
    assert torch.equal(sampled_top_k(logits, sparsity, seed=0).weights[0], drawn.weights[0])
    assert not torch.equal(sampled_top_k(logits, sparsity, seed=1).weights[0], drawn.weights[0])
    cold = sampled_top_k(logits, sparsity, seed=0, temperature=1e-6)
    assert all(torch.equal(a, b) for a, b in zip(cold.weights, top.weights))


def test_sampled_top_k_does_not_depend_on_the_batch() -> None:
    from weightspace.models.ticket_vae import sampled_top_k

    spec = NetworkSpec((12, 8, 4))
    logits = _two_level_logits(spec, batch=4)
    together = sampled_top_k(logits, 0.8, seed=3)
    alone = sampled_top_k(logits[2:3], 0.8, seed=3)
    assert all(torch.equal(a[2:3], b) for a, b in zip(together.weights, alone.weights))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": 0.0}, "temperature must be a positive number"),
        ({"temperature": math.inf}, "temperature must be a positive number"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"sparsity": 1.0}, "sparsity"),
    ],
)
def test_sampled_top_k_refuses_bad_arguments(kwargs, match) -> None:
    from weightspace.models.ticket_vae import sampled_top_k

    spec = NetworkSpec((12, 8, 4))
    kwargs = {"sparsity": 0.8, **kwargs}
    with pytest.raises(ValueError, match=match):
        sampled_top_k(_two_level_logits(spec), **kwargs)
