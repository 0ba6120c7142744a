import pytest
import torch
from torch import nn

from weightspace import NetworkSpec


class Sine(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(30 * x)


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.inner(x)


def test_sizes_derive_from_widths_and_kernels():
    spec = NetworkSpec((1, 16, 16, 16, 10), ((3, 3), (3, 3), (3, 3), ()))
    assert spec.num_layers == 4
    assert spec.weight_shapes == ((16, 1, 3, 3), (16, 16, 3, 3), (16, 16, 3, 3), (10, 16))
    assert spec.bias_shapes == ((16,), (16,), (16,), (10,))
    assert spec.num_params == 4970  # the Small CNN Zoo architecture
    assert spec.is_cnn
    assert [t.name for t in spec.tensors] == ["W1", "W2", "W3", "W4", "b1", "b2", "b3", "b4"]


def test_symmetry_sizes():
    spec = NetworkSpec((2, 3, 3, 2))
    assert spec.permuted_layers("np") == (0, 1, 2, 3)
    assert spec.permuted_layers("hnp") == (1, 2)
    assert spec.group_order("hnp") == 36
    assert spec.group_order("np") == 144
    assert spec.pool_size("np", 1) == 6
    # HNP keeps W1's 2 per-input means, W3's 2 per-output means and b3 in full.
    assert spec.pool_size("hnp", 3) == 3 * (2 + 1 + 1 + 1 + 2 + 2)
    with pytest.raises(ValueError, match="mode must be one of"):
        spec.permuted_layers("xyz")


def test_from_module_nested_sequential_with_parameter_free_modules():
    module = nn.Sequential(
        nn.Linear(2, 32),
        Sine(),
        nn.Sequential(nn.Linear(32, 32), nn.Dropout(0.1), Sine()),
        nn.Linear(32, 1),
    )
    spec = NetworkSpec.from_module(module)
    assert spec == NetworkSpec((2, 32, 32, 1))
    assert spec.num_params == sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_from_module_cnn(dim):
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[dim]
    pool = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[dim]
    module = nn.Sequential(
        conv(3, 8, 3, stride=2),
        nn.ReLU(),
        conv(8, 4, 2),
        nn.ReLU(),
        pool(1),
        nn.Flatten(),
        nn.Linear(4, 5),
    )
    spec = NetworkSpec.from_module(module)
    assert spec.widths == (3, 8, 4, 5)
    assert spec.kernel_shapes == ((3,) * dim, (2,) * dim, ())
    assert spec.num_params == sum(p.numel() for p in module.parameters())


def test_bias_free_layers_are_accepted():
    spec = NetworkSpec.from_module(
        nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2))
    )
    assert spec.widths == (3, 4, 2)


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (
            nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)),
            r"'1' \(BatchNorm1d\)",
        ),
        (nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)), r"'1' \(LayerNorm\)"),
        (
            nn.Sequential(nn.Linear(4, 8), Residual(), nn.Linear(8, 2)),
            r"node 'add'.*combines the output of '0' and the output of '1\.inner'.*residual",
        ),
        (nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 2)), r"'0' \(Embedding\)"),
        (nn.Sequential(nn.MultiheadAttention(8, 2)), "MultiheadAttention"),
        (
            nn.Sequential(nn.Conv2d(4, 8, 3, groups=2), nn.Flatten(), nn.Linear(8, 2)),
            "grouped convolution",
        ),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36, 2)), "global pooling"),
        (
            nn.Sequential(nn.Linear(4, 8), nn.Linear(9, 2)),
            r"layer '1'.*expects 9 inputs.*8 neurons",
        ),
        (
            nn.Sequential(nn.Linear(4, 8), nn.Unflatten(1, (8, 1)), nn.Conv1d(8, 2, 1)),
            "follows a dense",
        ),
        (nn.Sequential(nn.ReLU()), "no nn.Linear or nn.Conv"),
    ],
)
def test_from_module_rejects_what_breaks_the_structure(module, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec.from_module(module)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": (3,)}, "L >= 1"),
        ({"widths": (3, 0)}, r"widths\[1\]"),
        ({"widths": (3, 2.0)}, r"widths\[1\]"),
        ({"widths": (3, 4, 2), "kernel_shapes": ((3,),)}, "one entry per layer"),
        ({"widths": (3, 4), "kernel_shapes": ((0,),)}, r"kernel_shapes\[0\]"),
    ],
)
def test_invalid_spec(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NetworkSpec(**kwargs)


def test_spec_is_immutable_and_hashable():
    spec = NetworkSpec((2, 3))
    with pytest.raises(AttributeError):
        spec.widths = (1, 1)  # type: ignore[misc]
    assert {spec: 1}[NetworkSpec((2, 3), ((),))] == 1
