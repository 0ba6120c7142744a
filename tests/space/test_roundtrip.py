"""Round trips between modules, state dicts and WeightSpaceFeatures."""

from __future__ import annotations

import string
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.functional import forward

B = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def make_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3))


def make_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 5, 3, stride=2, padding=1), nn.ReLU()),  # nested keys
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(5, 3),
    )


def make_bias_free() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 6, bias=False), nn.Tanh(), nn.Linear(6, 3))


ARCHS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "mlp": (make_mlp, (4,)),
    "cnn": (make_cnn, (2, 8, 8)),
}


def modules_and_input(arch: str, seed: int) -> tuple[list[nn.Module], Tensor, Callable]:
    make, in_shape = ARCHS[arch]
    torch.manual_seed(seed)
    modules = [make().double() for _ in range(B)]
    x = torch.randn(6, *in_shape, dtype=torch.float64)
    return modules, x, make


def outputs(module: nn.Module, x: Tensor) -> Tensor:
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_to_state_dicts_load_state_dict(arch: str) -> None:
    modules, x, make = modules_and_input(arch, 0)
    features = WeightSpaceFeatures.from_modules(modules)
    template = make()
    state_dicts = features.to_state_dicts(template)
    assert len(state_dicts) == B
    for module, sd in zip(modules, state_dicts):
        assert list(sd) == list(module.state_dict())
        fresh = make().double()
        assert not torch.equal(outputs(fresh, x), outputs(module, x))
        fresh.load_state_dict(sd)  # strict: exactly the module's own keys
        for key, value in module.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value)
        torch.testing.assert_close(outputs(fresh, x), outputs(module, x), atol=0, rtol=0)


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_load_into(arch: str) -> None:
    modules, x, make = modules_and_input(arch, 1)
    features = WeightSpaceFeatures.from_modules(modules)
    for n, module in enumerate(modules):
        fresh = make().double()
        assert features.load_into(fresh, index=n) is fresh
        torch.testing.assert_close(outputs(fresh, x), outputs(module, x), atol=0, rtol=0)
    # And back again: the reloaded modules give the same features.
    reloaded = [features.load_into(make().double(), n) for n in range(B)]
    again = WeightSpaceFeatures.from_modules(reloaded)
    assert all(torch.equal(a, b) for a, b in zip(again.tensors, features.tensors))


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_from_state_dicts_any_key_names(arch: str) -> None:
    modules, _, _ = modules_and_input(arch, 2)
    features = WeightSpaceFeatures.from_modules(modules)
    renamed = [dict(zip(string.ascii_lowercase, m.state_dict().values())) for m in modules]
    assert list(renamed[0])[:3] == ["a", "b", "c"]
    parsed = WeightSpaceFeatures.from_state_dicts(renamed, features.spec)
    assert parsed.spec == features.spec == NetworkSpec.from_module(modules[0])
    assert all(torch.equal(a, b) for a, b in zip(parsed.tensors, features.tensors))
    # to_state_dicts with a list of key names, and with the default "{i}.weight" names.
    keys = list(renamed[0])
    for sd_in, sd_out in zip(renamed, features.to_state_dicts(keys)):
        assert list(sd_out) == keys
        assert all(torch.equal(sd_out[k], sd_in[k]) for k in keys)
    default = WeightSpaceFeatures.from_state_dicts(features.to_state_dicts())
    assert all(torch.equal(a, b) for a, b in zip(default.tensors, features.tensors))


def test_bias_free_layer_gives_zero_biases() -> None:
    torch.manual_seed(3)
    modules = [make_bias_free().double() for _ in range(B)]
    features = WeightSpaceFeatures.from_modules(modules)
    assert features.biases[0].shape == (B, 1, 6)
    assert torch.equal(features.biases[0], torch.zeros(B, 1, 6, dtype=torch.float64))
    assert torch.equal(features.biases[1][:, 0], torch.stack([m[2].bias for m in modules]))
    # from_state_dicts on the bias-free state dicts, keys renamed: the same zeros.
    renamed = [dict(zip("xyz", m.state_dict().values())) for m in modules]
    parsed = WeightSpaceFeatures.from_state_dicts(renamed)
    assert all(torch.equal(a, b) for a, b in zip(parsed.tensors, features.tensors))
    # The functional forward and load_into compute the module's function.
    x = torch.randn(5, 4, dtype=torch.float64)
    expected = torch.stack([outputs(m, x) for m in modules])
    torch.testing.assert_close(forward(features, x, "tanh"), expected, atol=1e-12, rtol=0)
    for n, module in enumerate(modules):
        fresh = features.load_into(make_bias_free().double(), n)
        torch.testing.assert_close(outputs(fresh, x), outputs(module, x), atol=0, rtol=0)


def test_load_into_refuses_nonzero_bias_for_bias_free_layer() -> None:
    torch.manual_seed(4)
    features = WeightSpaceFeatures.from_modules([make_bias_free()])
    with pytest.raises(ValueError, match="has no bias but b is nonzero"):
        (features + 1.0).load_into(make_bias_free())


def test_to_state_dicts_bias_free_template_loads() -> None:
    torch.manual_seed(5)
    module = make_bias_free()
    sd = WeightSpaceFeatures.from_modules([module]).to_state_dicts(module)[0]
    fresh = make_bias_free()
    fresh.load_state_dict(sd)
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), module.parameters()))
    with pytest.raises(ValueError, match="has no bias but b1 is nonzero"):
        (WeightSpaceFeatures.from_modules([module]) + 1.0).to_state_dicts(module)


def test_to_state_dicts_bare_layer_template_loads() -> None:
    torch.manual_seed(6)
    module = nn.Linear(3, 2)
    sd = WeightSpaceFeatures.from_modules([module]).to_state_dicts(module)[0]
    assert sorted(sd) == ["bias", "weight"]
    nn.Linear(3, 2).load_state_dict(sd)


def test_from_modules_refuses_mixed_dtypes() -> None:
    with pytest.raises(ValueError, match=r"modules\[1\] mixes dtypes"):
        WeightSpaceFeatures.from_modules([nn.Linear(3, 2), nn.Linear(3, 2).double()])
