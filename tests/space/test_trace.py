"""Weight spaces of custom ``nn.Module``s, read by tracing their forward (``torch.fx``)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.nn import functional as F

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.functional import forward
from weightspace.space.trace import trace_module
from weightspace.symmetry import permute_module, sample
from weightspace.testing.strategies import network_specs

pytestmark = pytest.mark.usefixtures("one_thread")
HYPOTHESIS = settings(max_examples=25, deadline=None, derandomize=True)


class Sine(nn.Module):
    """A user's parameter-free activation module (taken as entrywise, not traced)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(2.0 * x)


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)  # two tensor inputs from one layer: still entrywise


#: Functional activations, and the nn.Module an equivalent nn.Sequential uses.
ACTIVATIONS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[], nn.Module]]] = {
    "relu": (torch.relu, nn.ReLU),
    "gelu": (F.gelu, nn.GELU),
    "tanh": (torch.tanh, nn.Tanh),
    "swish": (swish, nn.SiLU),
    "sine": (Sine(), Sine),
}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class Block(nn.Module):
    """A user's block with parameters: a layer and its activation (traced through)."""

    def __init__(self, layer: nn.Module, act: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.layer = layer
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.layer(x))


class Chain(nn.Module):
    """A feedforward chain written as a custom module: layers registered in a shuffled order
    under arbitrary names (some in a ModuleList, some inside a Block), called in forward order."""

    def __init__(self, spec: NetworkSpec, act: str, seed: int) -> None:
        super().__init__()
        rng = random.Random(seed)
        fn = ACTIVATIONS[act][0]
        self.fn = fn
        self.dim = len(spec.kernel_shapes[0])
        layers: list[nn.Module] = []
        for (n_in, n_out), kernel in zip(itertools.pairwise(spec.widths), spec.kernel_shapes):
            if kernel:
                layers.append(_CONV[len(kernel)](n_in, n_out, kernel))
            else:
                layers.append(nn.Linear(n_in, n_out))
        self.order: list[tuple[str, int | None]] = []
        kinds = [rng.choice(["attr", "list", "block"]) for _ in layers[:-1]] + ["attr"]
        names = [f"layer_{c}" for c in rng.sample("abcdefghijklmnop", len(layers))]
        listed = [i for i, k in enumerate(kinds) if k == "list"]
        self.stack = nn.ModuleList(layers[i] for i in listed)
        registration = list(range(len(layers)))
        rng.shuffle(registration)  # __init__ order differs from forward order
        for i in registration:
            if kinds[i] == "attr":
                setattr(self, names[i], layers[i])
            elif kinds[i] == "block":
                setattr(self, names[i], Block(layers[i], fn))
        for i, kind in enumerate(kinds):
            self.order.append((names[i], listed.index(i) if kind == "list" else None))
        self.kinds = kinds

    def forward(self, x: Tensor) -> Tensor:
        L = len(self.order)
        for i, ((name, slot), kind) in enumerate(zip(self.order, self.kinds)):
            layer = self.stack[slot] if slot is not None else getattr(self, name)
            x = layer(x)
            if kind != "block" and i < L - 1:
                x = self.fn(x)
            if self.dim and i < L - 1 and not isinstance(self._layer(i + 1), _CONV[self.dim]):
                x = F.adaptive_avg_pool1d(x.flatten(2), 1).flatten(1)  # global average pooling
        return x

    def _layer(self, i: int) -> nn.Module:
        name, slot = self.order[i]
        module = self.stack[slot] if slot is not None else getattr(self, name)
        return module.layer if isinstance(module, Block) else module

    def layers_in_order(self) -> list[nn.Module]:
        return [self._layer(i) for i in range(len(self.order))]


def as_sequential(chain: Chain, act: str) -> nn.Sequential:
    """The same layer objects, in forward order, as an nn.Sequential with activation modules."""
    make = ACTIVATIONS[act][1]
    parts: list[nn.Module] = []
    layers = chain.layers_in_order()
    for i, layer in enumerate(layers):
        parts.append(layer)
        if i < len(layers) - 1:
            parts.append(make())
            if chain.dim and not isinstance(layers[i + 1], _CONV[chain.dim]):
                parts += [nn.Flatten(2), nn.AdaptiveAvgPool1d(1), nn.Flatten()]
    return nn.Sequential(*parts)


def random_input(spec: NetworkSpec, generator: torch.Generator) -> Tensor:
    dim = len(spec.kernel_shapes[0])
    shape = (5, spec.widths[0]) + (8,) * dim  # room for three 3-wide 'valid' convs
    return torch.randn(shape, generator=generator, dtype=torch.float64)


@HYPOTHESIS
@given(
    spec=network_specs(max_layers=4, max_width=6, conv_dims=(0, 0, 1, 2), max_kernel=3),
    act=st.sampled_from(sorted(ACTIVATIONS)),
    seed=st.integers(0, 2**16),
)
def test_custom_chains_read_like_their_sequential(spec: NetworkSpec, act: str, seed: int) -> None:
    torch.manual_seed(seed)
    chain = Chain(spec, act, seed).double()
    seq = as_sequential(chain, act)
    x = random_input(spec, torch.Generator().manual_seed(seed))
    assert torch.allclose(chain(x), seq(x))  # the two modules are one function

    # The spec, and the features in forward order, equal the nn.Sequential's.
    assert NetworkSpec.from_module(chain) == NetworkSpec.from_module(seq) == spec
    features = WeightSpaceFeatures.from_modules([chain])
    reference = WeightSpaceFeatures.from_modules([seq])
    for a, b in zip(features.tensors, reference.tensors):
        assert torch.equal(a, b)

    # Round trips: load_into a fresh module, and state dicts keyed by the module's own names
    # (in any key order) through the template.
    fresh = Chain(spec, act, seed).double()
    features.load_into(fresh)
    assert torch.allclose(fresh(x), chain(x))
    (sd,) = features.to_state_dicts(template=chain)
    assert set(sd) == set(chain.state_dict())
    shuffled = dict(random.Random(seed).sample(sorted(sd.items()), len(sd)))
    back = WeightSpaceFeatures.from_state_dicts([shuffled], template=chain)
    for a, b in zip(back.tensors, features.tensors):
        assert torch.equal(a, b)

    # A permuted copy computes the same function; its weights moved when a hidden layer has
    # two neurons or more.
    perms = sample(spec, "hnp", generator=torch.Generator().manual_seed(seed))
    permuted = permute_module(chain, perms)
    assert torch.allclose(permuted(x), chain(x), atol=1e-10)
    moved = any(p is not None and not torch.equal(p, torch.arange(len(p))) for p in perms)
    changed = not all(
        torch.equal(a, b)
        for a, b in zip(WeightSpaceFeatures.from_modules([permuted]).tensors, features.tensors)
    )
    assert changed == moved

    # functional.forward with the traced activation computes the module's function.
    trace = trace_module(chain)
    out = forward(features, x, trace.activation())
    assert torch.allclose(out[0], chain(x), atol=1e-10)


def test_the_issues_example_reads_in_forward_order() -> None:
    class MLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc2 = nn.Linear(8, 3)  # registered first: the state dict lists it first
            self.fc1 = nn.Linear(4, 8)

        def forward(self, x: Tensor) -> Tensor:
            return self.fc2(torch.relu(self.fc1(x)))

    model = MLP()
    assert next(iter(model.state_dict())) == "fc2.weight"
    spec = NetworkSpec.from_module(model)
    assert spec == NetworkSpec((4, 8, 3))
    trace = trace_module(model)
    assert [name for name, _ in trace.layers] == ["fc1", "fc2"]
    assert trace.hidden[0].ops == ("relu",)
    assert trace.activation_name() == "relu"
    # Keys by position read fc2 as the first layer, which does not chain: the template reads
    # the module's own names in forward order.
    sd = model.state_dict()
    with pytest.raises(ValueError, match="W2"):
        WeightSpaceFeatures.from_state_dicts([sd])
    features = WeightSpaceFeatures.from_state_dicts([sd], template=model)
    assert torch.equal(features.weights[0][0, 0], model.fc1.weight.detach())


def test_trace_records_what_runs_between_layers() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.head = nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            h = F.dropout(torch.relu(self.conv(x)), 0.2, self.training)
            h = F.adaptive_avg_pool2d(h, 1).view(x.size(0), -1)
            return F.log_softmax(self.head(h), dim=-1)

    trace = trace_module(Net())
    assert trace.hidden[0].ops == ("relu", "dropout", "adaptive_avg_pool2d", "view")
    assert trace.hidden[0].kinds == ("entrywise", "structural", "structural", "structural")
    assert trace.final.kinds == ("neuronwise",)
    t = torch.randn(3, 4, 5, 5)
    assert torch.equal(trace.activation()(t), torch.relu(t))
    with pytest.raises(ValueError, match=r"log_softmax.*not entrywise"):
        trace.final_activation()


def test_activation_refuses_gaps_that_differ() -> None:
    class Mixed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1)

        def forward(self, x: Tensor) -> Tensor:
            return self.c(torch.tanh(self.b(torch.relu(self.a(x)))))

    trace = trace_module(Mixed())
    with pytest.raises(ValueError, match=r"different activations.*relu.*tanh"):
        trace.activation()
    assert trace.activation_name() is None
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"different activations.*ReLU.*Tanh"):
        trace_module(seq).activation()
    final = trace_module(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 3), nn.Tanh()))
    assert final.final.ops == ("Tanh",)
    t = torch.randn(4, 3)
    assert torch.equal(final.activation()(t), torch.tanh(t))
    assert torch.equal(final.final_activation()(t), torch.tanh(t))
    assert final.activation_name() == "tanh"
    assert trace_module(nn.Linear(2, 3)).activation_name() == "identity"
    assert (
        trace_module(nn.Sequential(nn.Linear(2, 3), Sine(), nn.Linear(3, 1))).activation_name()
        is None
    )
    gelu_tanh = nn.Sequential(nn.Linear(2, 3), nn.GELU("tanh"), nn.Linear(3, 1))
    assert trace_module(gelu_tanh).activation_name() is None


# ----------------------------------------------------------------- controls
class ResidualMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.out = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.fc1(x))
        h = h + torch.relu(self.fc2(h))
        return self.out(h)


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.bn, self.fc2 = nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.bn(self.fc1(x))))


class TwoBranches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.left, self.right, self.out = nn.Linear(4, 3), nn.Linear(4, 5), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.cat([torch.relu(self.left(x)), torch.tanh(self.right(x))], dim=1))


class Sliced(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x))[:, :4])


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            x = -x
        return self.fc2(torch.relu(self.fc1(x)))


class Shared(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.relu(self.fc(x)))


class Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.spare = nn.Linear(4, 8), nn.Linear(8, 2), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)
        self.scale = nn.Parameter(torch.ones(8))

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x)) * self.scale)


class TwoOutputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.relu(self.fc1(x))
        return self.fc2(h), h


class Offset(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(torch.relu(self.fc1(x)) + torch.arange(8.0))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.fc = nn.MultiheadAttention(8, 2), nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.attn(x, x, x)[0])


@pytest.mark.parametrize(
    ("module", "match"),
    [
        (
            ResidualMLP(),
            r"node 'add'.*combines the output of 'fc1' and the output of 'fc2'.*residual",
        ),
        (WithBatchNorm(), r"node 'bn'.*'bn' \(BatchNorm1d\) has parameters.*normalisation"),
        (TwoBranches(), r"node 'right'.*reads the input.*second branch|node 'cat'.*concatenates"),
        (Sliced(), r"node 'getitem'.*indexes a tensor.*reordering neurons"),
        (Branchy(), r"torch\.fx cannot trace Branchy.*nn\.Sequential"),
        (Shared(), r"layer 'fc' of Shared is called twice"),
        (Unused(), r"parameter 'spare\.weight' of Unused is not used"),
        (Scaled(), r"node 'scale' of Scaled reads 'scale' directly"),
        (TwoOutputs(), r"returns more than one tensor"),
        (Offset(), r"node '_tensor_constant0' of Offset is a tensor created inside forward"),
        (Attention(), r"'attn' \(MultiheadAttention\) has parameters.*attention"),
        (nn.Sequential(nn.Linear(4, 8), nn.ChannelShuffle(2), nn.Linear(8, 2)), "ChannelShuffle"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_what_breaks_the_chain_is_refused_by_name(module: nn.Module, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        NetworkSpec.from_module(module)


def test_the_residual_control_really_breaks_the_symmetry() -> None:
    # Why the refusal is right: a hidden permutation applied as if the residual MLP were the chain
    # fc1 -> fc2 -> out (its spec would be (4, 8, 8, 2)) changes its function, because the skip
    # connection adds fc1's neurons, permuted by p1, to fc2's, permuted by p2.
    torch.manual_seed(0)
    model = ResidualMLP().double()
    x = torch.randn(6, 4, dtype=torch.float64)
    p1, p2 = torch.randperm(8), torch.randperm(8)
    assert not torch.equal(p1, p2)
    permuted = ResidualMLP().double()
    with torch.no_grad():
        permuted.fc1.weight.copy_(model.fc1.weight[p1])
        permuted.fc1.bias.copy_(model.fc1.bias[p1])
        permuted.fc2.weight.copy_(model.fc2.weight[p2][:, p1])
        permuted.fc2.bias.copy_(model.fc2.bias[p2])
        permuted.out.weight.copy_(model.out.weight[:, p2])
        permuted.out.bias.copy_(model.out.bias)
    assert not torch.allclose(permuted(x), model(x))
    # The same element on a true chain (no skip) keeps the function: the control is fair.
    chain = nn.Sequential(model.fc1, nn.ReLU(), model.fc2, nn.ReLU(), model.out)
    moved = nn.Sequential(permuted.fc1, nn.ReLU(), permuted.fc2, nn.ReLU(), permuted.out)
    assert torch.allclose(moved(x), chain(x))


def test_trace_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match=r"expected an nn\.Module"):
        trace_module(lambda x: x)  # type: ignore[arg-type]
