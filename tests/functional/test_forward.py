"""weightspace.functional.forward: batched evaluation of the networks that features describe."""

from __future__ import annotations

import pytest
import torch
from sklearn.datasets import load_digits
from tests.nets import cnn, mlp, stacked
from torch import Tensor, nn

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.functional import forward
from weightspace.functional.forward import tanh_

B = 3
ATOL = 1e-10


pytestmark = pytest.mark.usefixtures("one_thread")


class Sine(nn.Module):
    """The SIREN nonlinearity, sin(w0 * x)."""

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = w0

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * x)


_SPATIAL = {1: (16,), 2: (8, 7), 3: (6, 5, 6)}


def reference(modules: list[nn.Module], x: Tensor, shared: bool = True) -> Tensor:
    """Each module's own forward: on the shared x, or on its own slice of a per-network x."""
    with torch.no_grad():
        if shared:
            return torch.stack([m(x) for m in modules])
        assert x.shape[0] == len(modules)
        return torch.stack([m(xi) for m, xi in zip(modules, x)])


def assert_close(actual: Tensor, expected: Tensor, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# ------------------------------------------------------------------- MLPs
ACTIVATIONS = [
    ("relu", nn.ReLU),
    ("tanh", nn.Tanh),
    ("sigmoid", nn.Sigmoid),
    ("gelu", nn.GELU),
    ("silu", nn.SiLU),
    ("sin", lambda: Sine(1.0)),
    ("identity", nn.Identity),
    (lambda t: torch.sin(30 * t), Sine),
]


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_network"])
@pytest.mark.parametrize(
    ("activation", "module"),
    ACTIVATIONS,
    ids=[a if isinstance(a, str) else "sine30" for a, _ in ACTIVATIONS],
)
def test_mlp_matches_modules(activation, module, shared: bool) -> None:
    torch.manual_seed(0)
    modules, features = stacked(lambda: mlp((3, 16, 8, 2), module))
    x = torch.randn(5, 3, dtype=torch.float64) if shared else torch.randn(B, 5, 3).double()
    out = forward(features, x, activation)
    assert out.shape == (B, 5, 2)
    assert_close(out, reference(modules, x, shared))


def test_mlp_architecture_from_brief() -> None:
    """nn.Sequential(Linear, ReLU, Linear, ReLU, Linear), explicitly."""
    torch.manual_seed(1)
    modules, features = stacked(
        lambda: nn.Sequential(
            nn.Linear(4, 7), nn.ReLU(), nn.Linear(7, 5), nn.ReLU(), nn.Linear(5, 3)
        )
    )
    x = torch.randn(11, 4, dtype=torch.float64)
    assert_close(forward(features, x), reference(modules, x))


def test_single_layer_and_final_activation() -> None:
    torch.manual_seed(2)
    modules, features = stacked(lambda: nn.Linear(3, 2))
    x = torch.randn(4, 3, dtype=torch.float64)
    # One layer: the hidden activation never applies, the final one does.
    assert_close(forward(features, x, "sin"), reference(modules, x))
    assert_close(forward(features, x, final_activation="sigmoid"), reference(modules, x).sigmoid())
    modules, features = stacked(lambda: mlp((3, 6, 2), nn.Tanh))
    expected = torch.tanh(reference(modules, x))
    assert_close(forward(features, x, "tanh", final_activation=torch.tanh), expected)


def test_unbatched_slices_agree_with_batch() -> None:
    torch.manual_seed(3)
    _, features = stacked(lambda: mlp((2, 8, 8, 1), nn.ReLU), n=4)
    x = torch.randn(4, 9, 2, dtype=torch.float64)
    out = forward(features, x)
    for n in range(4):
        assert_close(forward(features[n], x[n]), out[n : n + 1])


# ------------------------------------------------------------------- CNNs
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_network"])
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_cnn_matches_modules(dim: int, shared: bool) -> None:
    torch.manual_seed(10 + dim)
    modules, features = stacked(lambda: cnn(dim))
    assert features.spec.kernel_shapes[:2] == ((3,) * dim,) * 2
    shape = (7, 2, *_SPATIAL[dim]) if shared else (B, 7, 2, *_SPATIAL[dim])
    x = torch.randn(shape, dtype=torch.float64)
    out = forward(features, x, "relu", stride=2, padding=1)
    assert out.shape == (B, 7, 3)
    assert_close(out, reference(modules, x, shared))


def test_cnn_tuple_stride_padding_and_rectangular_kernels() -> None:
    torch.manual_seed(20)

    def make() -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 3, (3, 2), stride=(2, 1), padding=(1, 0)),
            nn.Tanh(),
            nn.Conv2d(3, 2, (1, 3), stride=(2, 1), padding=(1, 0)),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )

    modules, features = stacked(make)
    x = torch.randn(B, 4, 1, 9, 6, dtype=torch.float64)
    out = forward(features, x, "tanh", stride=(2, 1), padding=(1, 0))
    assert out.shape == (B, 4, 2)
    assert_close(out, reference(modules, x, shared=False))
    # An all-conv network: the final activation comes before the pooling.
    out = forward(
        features, x[0], torch.tanh, final_activation="relu", stride=(2, 1), padding=(1, 0)
    )
    conv_out = [nn.Sequential(*list(m)[:3])(x[0]).relu().mean(dim=(2, 3)) for m in modules]
    assert_close(out, torch.stack(conv_out).detach())


# -------------------------------------------------------------- gradients
def test_gradcheck_weights_and_inputs_mlp() -> None:
    torch.manual_seed(30)
    spec = NetworkSpec((2, 3, 2))
    tensors = [
        torch.randn(2, 1, *s, dtype=torch.float64, requires_grad=True) for s in spec.weight_shapes
    ]
    tensors += [
        torch.randn(2, 1, *s, dtype=torch.float64, requires_grad=True) for s in spec.bias_shapes
    ]
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    shared = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)

    def fn(xx: Tensor, *ts: Tensor) -> Tensor:
        return forward(WeightSpaceFeatures.from_tensors(ts), xx, "tanh", final_activation="sin")

    assert torch.autograd.gradcheck(fn, (x, *tensors))
    assert torch.autograd.gradcheck(fn, (shared, *tensors))


def test_gradcheck_weights_and_inputs_cnn() -> None:
    torch.manual_seed(31)
    spec = NetworkSpec((2, 3, 2), ((3,), ()))
    tensors = [
        torch.randn(2, 1, *s, dtype=torch.float64, requires_grad=True) for s in spec.weight_shapes
    ]
    tensors += [
        torch.randn(2, 1, *s, dtype=torch.float64, requires_grad=True) for s in spec.bias_shapes
    ]
    x = torch.randn(3, 2, 6, dtype=torch.float64, requires_grad=True)

    def fn(xx: Tensor, *ts: Tensor) -> Tensor:
        return forward(WeightSpaceFeatures.from_tensors(ts), xx, "tanh", stride=2, padding=1)

    assert torch.autograd.gradcheck(fn, (x, *tensors))


def test_gradients_reach_every_tensor() -> None:
    torch.manual_seed(32)
    _, features = stacked(lambda: cnn(2))
    features = features.map(lambda t: t.clone().requires_grad_(True))
    x = torch.randn(B, 2, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    forward(features, x, "silu", stride=2, padding=1).square().sum().backward()
    for t in (*features.tensors, x):
        assert t.grad is not None
        assert t.grad.abs().sum() > 0


# ------------------------------------------------------- symmetry checks
@pytest.fixture(scope="module")
def digits() -> tuple[Tensor, Tensor]:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0  # pixel values 0..16 -> [0, 1]
    y = torch.tensor(data.target, dtype=torch.long)
    return x, y


@pytest.fixture(scope="module")
def trained_mlp(digits: tuple[Tensor, Tensor]) -> nn.Sequential:
    x, y = digits
    torch.manual_seed(40)
    model = mlp((64, 32, 32, 10), nn.ReLU)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    return model


def test_trained_mlp_learned(trained_mlp: nn.Sequential, digits: tuple[Tensor, Tensor]) -> None:
    x, y = digits
    with torch.no_grad():
        accuracy = (trained_mlp(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.9


def test_hnp_permuted_trained_mlp_same_outputs(trained_mlp, digits) -> None:
    x, _ = digits
    spec = NetworkSpec.from_module(trained_mlp)
    perms = symmetry.sample(spec, "hnp", generator=torch.Generator().manual_seed(41))
    assert all(not torch.equal(perms[i], torch.arange(spec.widths[i])) for i in (1, 2))
    permuted = symmetry.permute_module(trained_mlp, perms)
    assert not torch.equal(permuted[0].weight, trained_mlp[0].weight)
    with torch.no_grad():
        expected, actual = trained_mlp(x), permuted(x)
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    # The same through the functional forward on permuted features.
    features = WeightSpaceFeatures.from_modules([trained_mlp])
    out = forward(features.permute(perms), x)
    torch.testing.assert_close(out[0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(forward(features, x)[0], expected, atol=1e-5, rtol=0)


def test_input_permutation_changes_trained_mlp(trained_mlp, digits) -> None:
    """Control: an NP element that moves the input neurons is not a symmetry of the function."""
    x, _ = digits
    spec = NetworkSpec.from_module(trained_mlp)
    perms = symmetry.identity(spec)
    perms[0] = torch.randperm(64, generator=torch.Generator().manual_seed(42))
    permuted = symmetry.permute_module(trained_mlp, perms)
    with torch.no_grad():
        expected, actual = trained_mlp(x), permuted(x)
        assert (actual - expected).abs().max() > 0.1
        # ...but it is one once the inputs are permuted the same way.
        # Summing the inputs in another order: float32 rounding relative to logits of ~10.
        torch.testing.assert_close(permuted(x[:, perms[0]]), expected, atol=1e-5, rtol=1e-6)


def test_np_element_relabels_inputs_and_outputs(trained_mlp, digits) -> None:
    x, _ = digits
    spec = NetworkSpec.from_module(trained_mlp)
    perms = symmetry.sample(spec, "np", generator=torch.Generator().manual_seed(43))
    permuted = symmetry.permute_module(trained_mlp, perms)
    with torch.no_grad():
        expected = trained_mlp(x)[:, perms[-1]]
        assert (permuted(x) - expected).abs().max() > 0.1
        # Summing the inputs in another order: float32 rounding relative to logits of ~10.
        torch.testing.assert_close(permuted(x[:, perms[0]]), expected, atol=1e-5, rtol=1e-6)


def test_hnp_permuted_cnn_same_outputs() -> None:
    torch.manual_seed(50)
    model = cnn(2).eval()
    x = torch.randn(6, 2, 8, 8)
    spec = NetworkSpec.from_module(model)
    perms = symmetry.sample(spec, "hnp", generator=torch.Generator().manual_seed(51))
    permuted = symmetry.permute_module(model, perms)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(permuted(x), expected, atol=1e-5, rtol=0)
        out = forward(
            WeightSpaceFeatures.from_modules([model]).permute(perms), x, stride=2, padding=1
        )
        torch.testing.assert_close(out[0], expected, atol=1e-5, rtol=0)
        # Control: swapping the two input channels changes the function.
        control = symmetry.identity(spec)
        control[0] = torch.tensor([1, 0])
        assert (symmetry.permute_module(model, control)(x) - expected).abs().max() > 1e-3


# ------------------------------------------------------------------ tanh
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 2.5e-7), (torch.float64, 1e-15)])
def test_tanh_in_place_matches_torch(dtype: torch.dtype, atol: float) -> None:
    """The CPU tanh as 2 sigmoid(2t) - 1: close to torch.tanh everywhere, exact at the limits."""
    t = torch.cat(
        [
            torch.linspace(-30, 30, 200_001, dtype=dtype),
            torch.tensor([0.0, 1e-30, -1e-30, 1e4, -1e4, float("inf"), float("-inf")], dtype=dtype),
        ]
    )
    expected = torch.tanh(t)
    out = tanh_(t)
    assert out.data_ptr() == t.data_ptr()  # in place
    torch.testing.assert_close(out, expected, atol=atol, rtol=0)
    assert out[-4:].tolist() == [1.0, -1.0, 1.0, -1.0]
    assert tanh_(torch.tensor([float("nan")], dtype=dtype)).isnan().all()


def test_tanh_same_values_with_and_without_autograd() -> None:
    """forward's tanh (in place under no_grad, out of place when autograd records) gives
    bit-identical outputs either way, and its gradients are nn.Tanh's."""
    nets, features = stacked(lambda: mlp((4, 16, 16, 3), nn.Tanh))
    x = torch.randn(5, 4, dtype=torch.float64)
    with torch.no_grad():
        plain = forward(features, x, "tanh")
    weights = [w.clone().requires_grad_(True) for w in features.weights]
    recorded = forward(WeightSpaceFeatures(weights, features.biases), x, "tanh")
    assert torch.equal(recorded.detach(), plain)
    assert_close(plain, reference(nets, x))
    recorded.sum().backward()
    expected = torch.autograd.grad(
        torch.stack([m(x) for m in nets]).sum(), [m[0].weight for m in nets]
    )
    for b, g in enumerate(expected):
        assert_close(weights[0].grad[b, 0], g)


# ------------------------------------------------------------------ errors
def test_error_more_than_one_channel() -> None:
    _, features = stacked(lambda: mlp((3, 4, 2), nn.ReLU))
    with pytest.raises(ValueError, match=r"must have 1 channel.*got 2 channels"):
        forward(features.cat_channels(features), torch.randn(5, 3, dtype=torch.float64))


@pytest.mark.parametrize("shared", [True, False])
def test_error_wrong_input_features(shared: bool) -> None:
    _, features = stacked(lambda: mlp((3, 4, 2), nn.ReLU))
    x = torch.randn(5, 4) if shared else torch.randn(B, 5, 4)
    with pytest.raises(ValueError, match=r"4 input features.*expected n_0=3"):
        forward(features, x.double())


@pytest.mark.parametrize("shared", [True, False])
def test_error_wrong_input_channels(shared: bool) -> None:
    _, features = stacked(lambda: cnn(2))
    x = torch.randn(5, 3, 8, 8) if shared else torch.randn(B, 5, 3, 8, 8)
    with pytest.raises(ValueError, match=r"3 input channels.*expected n_0=2"):
        forward(features, x.double())


@pytest.mark.parametrize(
    "make", [lambda: mlp((3, 4, 2), nn.ReLU), lambda: cnn(1)], ids=["mlp", "cnn"]
)
def test_error_batch_size_mismatch(make) -> None:
    _, features = stacked(make)
    x = (
        torch.randn(B + 1, 5, 3)
        if features.spec.kernel_shapes[0] == ()
        else torch.randn(B + 1, 5, 2, 8)
    )
    with pytest.raises(ValueError, match=rf"inputs for {B + 1} networks.*B={B}"):
        forward(features, x.double())


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: mlp((3, 4, 2), nn.ReLU), (3,)),
        (lambda: mlp((3, 4, 2), nn.ReLU), (1, B, 5, 3)),
        (lambda: cnn(2), (5, 2, 8)),
        (lambda: cnn(2), (1, B, 5, 2, 8, 8)),
        (lambda: cnn(1), (5, 2)),
    ],
    ids=["mlp_1d", "mlp_4d", "cnn2d_3d", "cnn2d_6d", "cnn1d_2d"],
)
def test_error_wrong_ndim(make, shape: tuple[int, ...]) -> None:
    _, features = stacked(make)
    with pytest.raises(ValueError, match=r"axes\), expected \(N, n_0"):
        forward(features, torch.randn(shape, dtype=torch.float64))


def test_error_bad_architecture_and_arguments() -> None:
    w = [torch.randn(1, 1, 4, 3), torch.randn(1, 1, 2, 4, 3)]
    b = [torch.randn(1, 1, 4), torch.randn(1, 1, 2)]
    with pytest.raises(ValueError, match="conv layers must come before dense layers"):
        forward(WeightSpaceFeatures(w, b), torch.randn(5, 3))
    w = [torch.randn(1, 1, 4, 3, 3), torch.randn(1, 1, 2, 4, 3, 3)]
    with pytest.raises(ValueError, match="same dimensionality"):
        forward(WeightSpaceFeatures(w, b), torch.randn(5, 3, 8))
    _, features = stacked(lambda: cnn(2))
    with pytest.raises(ValueError, match=r"stride .* one entry per spatial axis"):
        forward(features, torch.randn(5, 2, 8, 8).double(), stride=(2, 2, 2))
    with pytest.raises(ValueError, match="unknown activation"):
        forward(features, torch.randn(5, 2, 8, 8).double(), "swish")
