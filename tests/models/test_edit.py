"""weightspace.models.edit: U' = U + γ ⊙ σ ⊙ delta(standardised U)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from weightspace import WeightSpaceFeatures
from weightspace.models import EquivariantNFN
from weightspace.models.edit import FlatDelta, WeightEdit
from weightspace.space.spec import NetworkSpec
from weightspace.tasks.inr_editing import build_editor
from weightspace.testing import EquivarianceError, assert_equivariant, random_features
from weightspace.testing.strategies import network_specs


def trained_like(edit: WeightEdit, spec: NetworkSpec) -> WeightEdit:
    """Non-trivial statistics and γ, so that nothing hides behind zeros and ones."""
    g = torch.Generator().manual_seed(1)
    data = random_features(spec, 16, dtype=torch.float32, generator=g) * 3.0 + 0.5
    edit.set_statistics(data)
    with torch.no_grad():
        edit.gamma.copy_(torch.rand(len(spec.tensors), generator=g) + 0.1)
    return edit


@settings(max_examples=15, deadline=None)
@given(
    spec=network_specs(conv_dims=(0,), max_layers=4, max_width=6),
    mode=st.sampled_from(["np", "hnp", "pt"]),
)
def test_nfn_edits_are_hnp_equivariant_on_random_architectures(spec, mode) -> None:
    torch.manual_seed(0)
    io = "sinusoidal" if mode == "np" else None
    edit = trained_like(WeightEdit(EquivariantNFN(spec, mode, (4,), io_encoding=io), spec), spec)
    assert_equivariant(edit, spec, "hnp")


def test_the_mlp_edit_is_not_equivariant() -> None:
    spec = NetworkSpec((2, 5, 4, 1))
    edit = trained_like(WeightEdit(FlatDelta(spec, (16,)), spec), spec)
    with pytest.raises(EquivarianceError):
        assert_equivariant(edit, spec, "hnp")


def test_the_edit_is_the_input_plus_the_scaled_delta() -> None:
    spec = NetworkSpec((2, 6, 1))
    torch.manual_seed(0)
    delta = EquivariantNFN(spec, "hnp", (4,), io_encoding=None)
    edit = trained_like(WeightEdit(delta, spec, gamma_init=0.01), spec)
    x = random_features(spec, 3, dtype=torch.float32)
    std = edit.standardize
    standardised = WeightSpaceFeatures.from_tensors(
        [(t - std.shift[k]) / std.scale[k] for k, t in enumerate(x.tensors)], spec
    )
    d = delta(standardised)
    out = edit(x)
    for k, (a, t, dt) in enumerate(zip(out.tensors, x.tensors, d.tensors)):
        expected = t + edit.gamma[k] * std.scale[k] * dt
        assert torch.allclose(a, expected, atol=1e-6)
    # γ = 0 is the identity, whatever the delta model says.
    with torch.no_grad():
        edit.gamma.zero_()
    assert all(torch.equal(a, b) for a, b in zip(edit(x).tensors, x.tensors))


def test_gamma_has_one_scalar_per_tensor_at_its_initial_value() -> None:
    spec = NetworkSpec((2, 32, 32, 1))
    for model in ("np", "hnp", "pt", "mlp"):
        edit = build_editor(model, spec, hidden_channels=(4,), mlp_hidden=(8,), gamma_init=0.01)
        assert edit.gamma.shape == (6,) and torch.all(edit.gamma == 0.01)
        x = random_features(spec, 2, dtype=torch.float32)
        with torch.no_grad():
            y = edit(x)
        assert y.spec == spec and y.channels == 1
        gap = max(float((a - b).abs().max()) for a, b in zip(y.tensors, x.tensors))
        assert 0 < gap < 1  # a small step away from the identity at initialisation


def test_delta_models_of_the_wrong_shape_are_named() -> None:
    spec = NetworkSpec((2, 6, 1))
    edit = WeightEdit(EquivariantNFN(spec, "hnp", (4,), out_channels=2, io_encoding=None), spec)
    with pytest.raises(ValueError, match="delta model's output"):
        edit(random_features(spec, 2, dtype=torch.float32))
    with pytest.raises(ValueError, match=r"from_flat: got shape \(2, 5\); expected \(B, 25\)"):
        WeightSpaceFeatures.from_flat(torch.zeros(2, 5), spec)


@settings(max_examples=20, deadline=None)
@given(spec=network_specs(max_layers=3, max_width=5, max_kernel=3), channels=st.integers(1, 3))
def test_from_flat_inverts_flatten(spec, channels) -> None:
    x = random_features(spec, 2, channels)
    y = WeightSpaceFeatures.from_flat(x.flatten(), spec, channels)
    assert all(torch.equal(a, b) for a, b in zip(x.tensors, y.tensors))
