import pytest
import torch

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.nn import Activation, HNPLinear, HNPPool
from weightspace.testing import (
    EquivarianceError,
    assert_equivariant,
    assert_invariant,
    inconsistent_permutation,
    invariance_error,
    random_features,
)

SPEC = NetworkSpec((3, 4, 5, 2))


def add_row_index(x: WeightSpaceFeatures) -> WeightSpaceFeatures:
    """Not equivariant: adds each hidden neuron's position to b_1 only."""
    biases = list(x.biases)
    biases[0] = biases[0] + torch.arange(biases[0].shape[-1], dtype=biases[0].dtype)
    return WeightSpaceFeatures(x.weights, biases)


def test_kit_passes_equivariant_and_reports_per_tensor():
    errors = assert_equivariant(HNPLinear(SPEC, 1, 2), SPEC, "hnp")
    assert set(errors) == {"W1", "W2", "W3", "b1", "b2", "b3"}
    assert max(errors.values()) < 1e-12


def test_kit_catches_a_broken_function_and_names_the_tensor():
    with pytest.raises(EquivarianceError, match=r"b1: [0-9.e-]+") as info:
        assert_equivariant(add_row_index, SPEC, "hnp")
    assert "W2" not in str(info.value)


def test_kit_checks_invariance():
    assert_invariant(HNPPool(SPEC), SPEC, "hnp")
    with pytest.raises(EquivarianceError, match="not NP-invariant"):
        assert_invariant(HNPPool(SPEC), SPEC, "np")


def test_kit_runs_modules_in_float64_without_touching_the_original():
    layer = HNPLinear(SPEC, 1, 1)
    assert_equivariant(layer, SPEC, "hnp")
    assert next(layer.parameters()).dtype == torch.float32


def test_inconsistent_permutation_is_not_a_symmetry():
    x = random_features(SPEC, 2, 1, generator=torch.Generator().manual_seed(0))
    y = inconsistent_permutation(x, 1, torch.Generator().manual_seed(1))
    assert not torch.equal(y.weights[0], x.weights[0])
    assert torch.equal(y.weights[1], x.weights[1])  # W2's columns deliberately left alone
    # A linear map followed by a pool only sees means and is blind to it; a nonlinearity is not.
    linear = torch.nn.Sequential(HNPLinear(SPEC, 1, 4), HNPPool(SPEC))
    assert (
        invariance_error(linear, SPEC, perturb=lambda f, g: inconsistent_permutation(f, 1, g))
        < 1e-12
    )
    model = torch.nn.Sequential(HNPLinear(SPEC, 1, 4), Activation("relu"), HNPPool(SPEC))
    assert (
        invariance_error(model, SPEC, perturb=lambda f, g: inconsistent_permutation(f, 1, g)) > 1e-3
    )
    with pytest.raises(ValueError, match="not a hidden layer"):
        inconsistent_permutation(x, 3)
