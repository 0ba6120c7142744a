import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.data.inr import OMEGA_0, SIREN_SPEC, Sine, init_sirens, render, siren_activation
from weightspace.functional import forward
from weightspace.tasks.inputs import SymmetryAugmentation
from weightspace.testing import random_features

CNN = NetworkSpec((2, 4, 3, 2), ((3, 3), (3, 3), ()))


def sirens(spec: NetworkSpec, batch: int, seed: int, dtype=torch.float64) -> WeightSpaceFeatures:
    """SIREN-initialised networks whose biases are spread over many periods (``ω0 b`` up to ±60),
    so that every branch of the fold is taken."""
    gen = torch.Generator().manual_seed(seed)
    tensors = [t.unsqueeze(1) for t in init_sirens(batch, generator=gen, spec=spec, dtype=dtype)]
    features = WeightSpaceFeatures.from_tensors(tensors, spec)
    biases = [b * 2 / b.abs().max() for b in features.biases[:-1]] + [features.biases[-1]]
    return WeightSpaceFeatures(features.weights, biases)


def points(n: int = 64, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def run(features: WeightSpaceFeatures, x: torch.Tensor) -> torch.Tensor:
    return forward(features, x, siren_activation)


def worst(a: WeightSpaceFeatures, b: WeightSpaceFeatures) -> float:
    return max(float((s - t).abs().max()) for s, t in zip(a.tensors, b.tensors))


def hidden_phases(features: WeightSpaceFeatures, omega0: float = OMEGA_0) -> torch.Tensor:
    """``ω0 b_ij`` of every hidden neuron, computed in float64 with no reduction modulo 2π."""
    return torch.cat([(omega0 * b.double()).flatten() for b in features.biases[:-1]])


specs = st.builds(
    lambda n1, n2: NetworkSpec((2, n1, n2, 1)), st.integers(1, 12), st.integers(1, 12)
)


# ------------------------------------------------------------------ half-period shifts
@given(spec=specs, batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_half_period_shifts_keep_the_render(spec, batch, seed):
    features = sirens(spec, batch, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    shifts = symmetry.sample_half_period_shifts(spec, batch, generator=gen)
    out = symmetry.shift_half_periods(features, shifts)
    x = points(seed=seed)
    torch.testing.assert_close(run(out, x), run(features, x), rtol=0, atol=1e-10)
    # Exactly the shifted neurons moved by π/ω0, and only their outgoing columns flipped.
    for i, s in enumerate(shifts, start=1):
        step = (out.biases[i - 1] - features.biases[i - 1])[:, 0]
        torch.testing.assert_close(step, s.double() * math.pi / OMEGA_0, rtol=0, atol=1e-12)
        sign = (out.weights[i] / features.weights[i])[:, 0]
        torch.testing.assert_close(sign, (1 - 2 * s.double()).unsqueeze(1).expand_as(sign))


def test_sample_half_period_shifts_are_fair_seeded_bools():
    shifts = symmetry.sample_half_period_shifts(SIREN_SPEC, 500, generator=torch.Generator())
    assert [tuple(s.shape) for s in shifts] == [(500, 32), (500, 32)]
    assert all(s.dtype == torch.bool for s in shifts)
    frac = float(torch.cat([s.flatten() for s in shifts]).double().mean())
    assert abs(frac - 0.5) < 0.02
    a = symmetry.sample_half_period_shifts(
        SIREN_SPEC, 3, generator=torch.Generator().manual_seed(4)
    )
    b = symmetry.sample_half_period_shifts(
        SIREN_SPEC, 3, generator=torch.Generator().manual_seed(4)
    )
    assert all(torch.equal(s, t) for s, t in zip(a, b))


def test_two_half_periods_are_a_full_period_and_channels_shift_together():
    features = sirens(SIREN_SPEC, 3, seed=2)
    shifts = symmetry.sample_half_period_shifts(SIREN_SPEC, 3, generator=torch.Generator())
    twice = symmetry.shift_half_periods(symmetry.shift_half_periods(features, shifts), shifts)
    for a, b in zip(twice.weights, features.weights):
        assert torch.equal(a, b)  # negated twice
    x = points()
    torch.testing.assert_close(run(twice, x), run(features, x), rtol=0, atol=1e-10)
    wide = random_features(SIREN_SPEC, 3, channels=4)
    out = symmetry.shift_half_periods(wide, [s.int() for s in shifts])  # 0/1 works as well
    step = out.biases[0] - wide.biases[0]
    torch.testing.assert_close(
        step, (shifts[0].double() * math.pi / OMEGA_0).unsqueeze(1).expand_as(step)
    )


def test_sine_cnn_kernels_are_carried_along():
    features = random_features(CNN, 3, generator=torch.Generator().manual_seed(0))
    shifts = symmetry.sample_half_period_shifts(CNN, 3, generator=torch.Generator().manual_seed(1))
    out = symmetry.shift_half_periods(features, shifts, omega0=1.0)
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(forward(out, x, "sin"), forward(features, x, "sin"))
    assert not torch.allclose(forward(out, x, "tanh"), forward(features, x, "tanh"))


def test_float32_sirens_render_the_same_image_to_rounding():
    features = sirens(SIREN_SPEC, 4, seed=3, dtype=torch.float32)
    shifts = symmetry.sample_half_period_shifts(SIREN_SPEC, 4, generator=torch.Generator())
    for out in (
        symmetry.shift_half_periods(features, shifts),
        symmetry.canonicalize_sines(features),
    ):
        assert float((render(out, 28, 28) - render(features, 28, 28)).abs().max()) < 1e-4


# ------------------------------------------------------------------ canonical form
@given(spec=specs, batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_canonical_form_keeps_the_render_and_is_idempotent(spec, batch, seed):
    features = sirens(spec, batch, seed)
    canon = symmetry.canonicalize_sines(features)
    x = points(seed=seed)
    torch.testing.assert_close(run(canon, x), run(features, x), rtol=0, atol=1e-10)
    # The phase ω0 b itself (no reduction mod 2π) lies in [0, π/2]; the biases did move.
    phases = hidden_phases(canon)
    assert phases.min() >= 0 and phases.max() <= math.pi / 2 + 1e-12
    assert hidden_phases(features).abs().max() > math.pi / 2
    again = symmetry.canonicalize_sines(canon)
    for a, b in zip(again.tensors, canon.tensors):
        assert torch.equal(a, b)
    # The output layer is linear: its bias never changes.
    assert torch.equal(canon.biases[-1], features.biases[-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_biases_a_few_ulps_from_the_fold_boundaries_still_end_canonical(dtype):
    # Biases at multiples of π/(2ω0) and of π/ω0, nudged by up to 3 ulps either way: where
    # floor and the fold round the wrong way, only the final clamp keeps the result canonical.
    quarter = torch.tensor(math.pi / (2 * OMEGA_0), dtype=dtype)
    up, down = torch.tensor(math.inf, dtype=dtype), torch.tensor(-math.inf, dtype=dtype)
    half = torch.tensor(math.pi / OMEGA_0, dtype=dtype)
    bases = [
        quarter * torch.arange(-200, 201, dtype=dtype),
        half * torch.arange(-100, 101, dtype=dtype),
    ]
    nudged = list(bases)
    for base in bases:
        for direction in (up, down):
            t = base
            for _ in range(3):
                t = torch.nextafter(t, direction)
                nudged.append(t)
    b = torch.cat(nudged)  # (n,) hidden biases of one wide first layer
    n = b.numel()
    spec = NetworkSpec((2, n, 3, 1))
    features = sirens(spec, 1, seed=0, dtype=dtype)
    biases = [b.view(1, 1, n)] + list(features.biases[1:])
    features = WeightSpaceFeatures(features.weights, biases)
    canon = symmetry.canonicalize_sines(features)
    assert bool((canon.biases[0] >= 0).all()) and bool((canon.biases[0] <= quarter).all())
    again = symmetry.canonicalize_sines(canon)
    assert all(torch.equal(a, c) for a, c in zip(again.tensors, canon.tensors))
    x = points(dtype=dtype)
    atol = 1e-10 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(run(canon, x), run(features, x), rtol=0, atol=atol)


@given(spec=specs, batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_canonical_form_is_invariant_to_the_sine_symmetries(spec, batch, seed):
    features = sirens(spec, batch, seed)
    gen = torch.Generator().manual_seed(seed + 7)
    signs = symmetry.sample_signs(spec, batch, generator=gen, dtype=torch.float64)
    shifts = symmetry.sample_half_period_shifts(spec, batch, generator=gen)
    periods = [torch.randint(-3, 4, s.shape, generator=gen) for s in shifts]
    signs[0][0, 0], shifts[0][0, 0], periods[0][0, 0] = -1, True, 1  # each copy really differs
    full = WeightSpaceFeatures(
        features.weights,
        [
            b + 2 * math.pi / OMEGA_0 * k.unsqueeze(1).double()
            for b, k in zip(features.biases, periods)
        ]
        + [features.biases[-1]],
    )
    copies = {
        "signs": symmetry.flip_signs(features, signs),
        "half periods": symmetry.shift_half_periods(features, shifts),
        "full periods": full,
        "all": symmetry.shift_half_periods(symmetry.flip_signs(full, signs), shifts),
    }
    canon = symmetry.canonicalize_sines(features)
    x = points(seed=seed)
    for name, copy in copies.items():
        assert worst(copy, features) > 1e-3, name  # the copy really differs
        torch.testing.assert_close(run(copy, x), run(features, x), rtol=0, atol=1e-10, msg=name)
        assert worst(symmetry.canonicalize_sines(copy), canon) < 1e-12, name


@given(spec=specs, batch=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_canonical_form_commutes_with_permutations(spec, batch, seed):
    features = sirens(spec, batch, seed)
    gen = torch.Generator().manual_seed(seed + 3)
    perm = symmetry.sample(spec, "hnp", batch_size=batch, generator=gen)
    signs = symmetry.sample_signs(spec, batch, generator=gen, dtype=torch.float64)
    moved = symmetry.flip_signs(features, signs).permute(perm)
    x = points(seed=seed)
    canon = symmetry.canonicalize_sines(moved)
    torch.testing.assert_close(run(canon, x), run(features, x), rtol=0, atol=1e-10)
    expected = symmetry.canonicalize_sines(features).permute(perm)
    assert worst(canon, expected) < 1e-12


def test_canonicalize_reads_omega0_from_the_activation():
    features = sirens(SIREN_SPEC, 3, seed=5)
    ref = symmetry.canonicalize_sines(features, omega0=OMEGA_0)
    for activation in (siren_activation, Sine(OMEGA_0)):
        out = symmetry.canonicalize(features, activation)
        assert all(torch.equal(a, b) for a, b in zip(out.tensors, ref.tensors))
    x = points()
    for activation in ("sin", torch.sin, Sine(7.0)):
        out = symmetry.canonicalize(features, activation)
        torch.testing.assert_close(
            forward(out, x, activation), forward(features, x, activation), rtol=0, atol=1e-10
        )
        assert worst(out, ref) > 1e-3  # a different ω0, a different fold


def test_canonicalize_works_on_sine_cnns():
    features = random_features(CNN, 3, generator=torch.Generator().manual_seed(0)) * 3.0
    out = symmetry.canonicalize(features, "sin")
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(forward(out, x, "sin"), forward(features, x, "sin"))
    assert float(hidden_phases(out, 1.0).max()) <= math.pi / 2 + 1e-12


# ------------------------------------------------------------------ controls that must break
def test_control_shift_without_the_column_changes_the_render():
    features = sirens(SIREN_SPEC, 3, seed=6)
    biases = [b + math.pi / OMEGA_0 for b in features.biases[:-1]] + [features.biases[-1]]
    broken = WeightSpaceFeatures(features.weights, biases)
    x = points()
    assert float((run(broken, x) - run(features, x)).abs().max()) > 1e-2


def test_control_column_without_the_shift_changes_the_render():
    features = sirens(SIREN_SPEC, 3, seed=6)
    weights = list(features.weights)
    weights[1] = -weights[1]
    weights[2] = -weights[2]
    broken = WeightSpaceFeatures(weights, features.biases)
    x = points()
    assert float((run(broken, x) - run(features, x)).abs().max()) > 1e-2


def test_control_the_wrong_omega0_changes_the_render():
    features = sirens(SIREN_SPEC, 3, seed=6)
    x = points()
    for omega0 in (20.0, 1.0):
        wrong = symmetry.canonicalize_sines(features, omega0=omega0)
        assert float((run(wrong, x) - run(features, x)).abs().max()) > 1e-2, omega0
    wrong = symmetry.shift_half_periods(
        features, symmetry.sample_half_period_shifts(SIREN_SPEC, 3), omega0=15.0
    )
    assert float((run(wrong, x) - run(features, x)).abs().max()) > 1e-2


def test_control_tanh_networks_change_under_the_shift():
    features = sirens(SIREN_SPEC, 3, seed=6)
    shifts = [torch.ones(3, 32, dtype=torch.bool)] * 2
    out = symmetry.shift_half_periods(features, shifts)
    x = points()
    assert float((forward(out, x, "tanh") - forward(features, x, "tanh")).abs().max()) > 1e-2


# ------------------------------------------------------------------ augmentation
def test_symmetry_augmentation_shifts_half_periods():
    features = sirens(SIREN_SPEC, 4, seed=8)
    assert SymmetryAugmentation(SIREN_SPEC, half_periods=True).active
    assert not SymmetryAugmentation(SIREN_SPEC).active
    torch.manual_seed(0)
    out = SymmetryAugmentation(SIREN_SPEC, half_periods=True)(features)
    steps = torch.cat([(o - b).flatten() for o, b in zip(out.biases[:-1], features.biases[:-1])])
    shifted = (steps - math.pi / OMEGA_0).abs() < 1e-12
    assert shifted.any() and not shifted.all() and ((steps == 0) | shifted).all()
    x = points()
    torch.testing.assert_close(run(out, x), run(features, x), rtol=0, atol=1e-10)
    # With signs and permutations too, and a wrong ω0 as a control.
    both = SymmetryAugmentation(SIREN_SPEC, signs=True, permute=True, half_periods=True)(features)
    torch.testing.assert_close(run(both, x), run(features, x), rtol=0, atol=1e-10)
    wrong = SymmetryAugmentation(SIREN_SPEC, half_periods=True, omega0=20.0)(features)
    assert float((run(wrong, x) - run(features, x)).abs().max()) > 1e-2


# ------------------------------------------------------------------ bad input
def test_bad_shifts_are_refused_naming_the_layer():
    features = sirens(SIREN_SPEC, 3, seed=0)
    ok = torch.zeros(3, 32, dtype=torch.bool)
    with pytest.raises(ValueError, match="expected 2 shifts tensors"):
        symmetry.shift_half_periods(features, [ok])
    with pytest.raises(
        ValueError, match=r"shifts\[1\] \(hidden layer 2\) has shape \(3, 5\), expected \(3, 32\)"
    ):
        symmetry.shift_half_periods(features, [ok, torch.zeros(3, 5, dtype=torch.bool)])
    with pytest.raises(ValueError, match=r"shifts\[0\] must be bool or 0/1"):
        symmetry.shift_half_periods(features, [ok.double() + 0.5, ok])
    with pytest.raises(ValueError, match="omega0 must be a positive finite number"):
        symmetry.shift_half_periods(features, [ok, ok], omega0=0.0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        symmetry.sample_half_period_shifts(SIREN_SPEC, 0)


def test_bad_canonicalisation_input_is_refused():
    features = sirens(SIREN_SPEC, 3, seed=0)
    for activation, name in (("relu", "'relu'"), ("tanh", "'tanh'"), (torch.tanh, "tanh")):
        with pytest.raises(
            ValueError,
            match=f"activation {name} is not a sine; canonicalisation is defined for sine networks",
        ):
            symmetry.canonicalize(features, activation)
    with pytest.raises(ValueError, match="activation Tanh is not a sine"):
        symmetry.canonicalize(features, torch.nn.Tanh())
    with pytest.raises(ValueError, match="features have 2 channels, expected 1"):
        symmetry.canonicalize_sines(random_features(SIREN_SPEC, 3, channels=2))
    biases = list(features.biases)
    biases[1] = biases[1].clone()
    biases[1][0, 0, 3] = float("nan")
    with pytest.raises(ValueError, match=r"b_2 \(hidden layer 2\) has non-finite entries"):
        symmetry.canonicalize_sines(WeightSpaceFeatures(features.weights, biases))
    with pytest.raises(ValueError, match="omega0 must be a positive finite number"):
        symmetry.canonicalize(features, Sine(-1.0))
