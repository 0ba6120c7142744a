"""Read the weight layers of a feedforward ``nn.Module`` in the order its forward runs them.

A network fits a weight space when its forward is a *chain*: ``nn.Linear`` / ``nn.Conv1d/2d/3d``
layers, each reading the previous one's output through parameter-free operations that act on
every neuron (channel) alike: activations, dropout, pooling over space, flattening, scalar
arithmetic. Permuting hidden neurons, consistently in adjacent layers, then leaves the function
unchanged, which is what the NF-Layers rely on.

``nn.Sequential`` trees are read directly. Every other module is traced with ``torch.fx``:
functional calls (``torch.relu``, ``F.gelu``, ``x.flatten(1)``, ``F.adaptive_avg_pool2d``) are
fine, and the layers come out in the order forward calls them, whatever order ``__init__``
registered them in. A graph that is not a chain (a residual add, a concatenation, a layer whose
output feeds two others, a parameterised normalisation, attention, a tensor slice) is refused,
naming the node and why.

Parameter-free modules that are not part of ``torch.nn`` (a user's ``Sine()``) are taken as
entrywise functions without being traced, as in an ``nn.Sequential``.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.fx as fx
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Gap", "ModuleTrace", "check_weight_layer", "trace_module"]

WEIGHT_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
CONV_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)

#: How an operation between two weight layers acts: on each entry alone (replayed by
#: :meth:`ModuleTrace.activation`), not at all on the function of a trained network at inference
#: or only over space (dropout, shapes, pooling: :func:`~weightspace.functional.forward` does its
#: own global pooling), or on the neurons as a set (softmax: allowed, but not an activation).
Kind = Literal["entrywise", "structural", "neuronwise"]

_ENTRYWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardshrink,
    nn.Softshrink,
    nn.Tanhshrink,
    nn.Softplus,
    nn.Softsign,
    nn.LogSigmoid,
    nn.Threshold,
)
_STRUCTURAL_MODULES: tuple[type[nn.Module], ...] = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.LPPool1d,
    nn.LPPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
_NEURONWISE_MODULES: tuple[type[nn.Module], ...] = (
    nn.Softmax,
    nn.LogSoftmax,
    nn.Softmin,
    nn.Softmax2d,
)

_ENTRYWISE_FUNCTIONS: frozenset[Any] = frozenset(
    {
        torch.relu,
        F.relu,
        F.relu6,
        F.leaky_relu,
        F.elu,
        F.selu,
        F.celu,
        F.gelu,
        F.silu,
        F.mish,
        F.hardtanh,
        F.hardswish,
        F.hardsigmoid,
        F.softplus,
        F.softsign,
        F.logsigmoid,
        F.tanhshrink,
        F.sigmoid,
        F.tanh,
        torch.sigmoid,
        torch.tanh,
        torch.sin,
        torch.cos,
        torch.sinc,
        torch.exp,
        torch.erf,
        torch.abs,
        torch.square,
        torch.neg,
        torch.clamp,
        torch.clip,
        torch.add,
        torch.sub,
        torch.mul,
        torch.div,
        torch.pow,
        torch.maximum,
        torch.minimum,
        torch.where,
        operator.add,
        operator.sub,
        operator.mul,
        operator.truediv,
        operator.pow,
        operator.neg,
        operator.pos,
        operator.iadd,
        operator.isub,
        operator.imul,
        operator.itruediv,
        builtins.abs,
    }
)
_ENTRYWISE_METHODS: frozenset[str] = frozenset(
    {
        "relu",
        "relu_",
        "sigmoid",
        "sigmoid_",
        "tanh",
        "tanh_",
        "sin",
        "sin_",
        "cos",
        "exp",
        "abs",
        "neg",
        "square",
        "clamp",
        "clamp_",
        "clip",
        "pow",
        "add",
        "add_",
        "sub",
        "sub_",
        "mul",
        "mul_",
        "div",
        "div_",
        "float",
        "double",
        "half",
        "to",
        "type_as",
    }
)
_STRUCTURAL_FUNCTIONS: frozenset[Any] = frozenset(
    {
        torch.flatten,
        torch.reshape,
        torch.squeeze,
        torch.mean,
        torch.amax,
        F.dropout,
        F.dropout1d,
        F.dropout2d,
        F.dropout3d,
        F.alpha_dropout,
        F.adaptive_avg_pool1d,
        F.adaptive_avg_pool2d,
        F.adaptive_avg_pool3d,
        F.adaptive_max_pool1d,
        F.adaptive_max_pool2d,
        F.adaptive_max_pool3d,
        F.avg_pool1d,
        F.avg_pool2d,
        F.avg_pool3d,
        F.max_pool1d,
        F.max_pool2d,
        F.max_pool3d,
    }
)
_STRUCTURAL_METHODS: frozenset[str] = frozenset(
    {
        "flatten",
        "unflatten",
        "view",
        "reshape",
        "squeeze",
        "contiguous",
        "clone",
        "detach",
        "mean",
        "amax",
    }
)
_NEURONWISE_FUNCTIONS: frozenset[Any] = frozenset(
    {F.softmax, F.log_softmax, F.softmin, torch.softmax, torch.log_softmax}
)
_NEURONWISE_METHODS: frozenset[str] = frozenset({"softmax", "log_softmax"})
#: Calls whose result is not a tensor of activations (sizes, shapes): they carry no stage.
_META_METHODS: frozenset[str] = frozenset({"size", "dim", "numel"})
_META_ATTRIBUTES: frozenset[str] = frozenset({"shape", "ndim", "dtype", "device"})
_SIZE_ARITHMETIC: frozenset[Any] = frozenset(
    {
        operator.add,
        operator.sub,
        operator.mul,
        operator.floordiv,
        operator.truediv,
        operator.mod,
        operator.neg,
        builtins.int,
        builtins.len,
    }
)
_JOINS: frozenset[Any] = frozenset({torch.cat, torch.concat, torch.stack, torch.hstack})


@dataclass(frozen=True)
class Gap:
    """The parameter-free operations after one weight layer, up to the next one (or the output).

    Attributes
    ----------
    ops:
        What runs, in order, readably (``"relu"``, ``"dropout"``, ``"flatten"``, ``"Sine"``).
    kinds:
        The :data:`Kind` of each op.
    signature:
        A hashable description of the entrywise ops: gaps with equal signatures apply the same
        activation.
    replay:
        The entrywise ops alone, as a function of a tensor (structural ops dropped); ``None``
        when there are none.
    """

    ops: tuple[str, ...] = ()
    kinds: tuple[Kind, ...] = ()
    signature: tuple[Any, ...] = ()
    replay: Callable[[Tensor], Tensor] | None = field(default=None, compare=False)

    def activation(self) -> Callable[[Tensor], Tensor]:
        """The entrywise function this gap applies (the identity when it applies none)."""
        return self.replay if self.replay is not None else _identity


@dataclass(frozen=True)
class ModuleTrace:
    """The weight layers of a feedforward module in forward order, and what runs between them.

    Attributes
    ----------
    layers:
        ``(qualified_name, layer)`` per ``nn.Linear`` / ``nn.Conv`` layer, in the order forward
        calls them; the name is the layer's state-dict prefix (``""`` for a bare layer).
    gaps:
        One :class:`Gap` per layer: ``gaps[i]`` runs after ``layers[i]`` (the last one before
        the output).
    """

    layers: tuple[tuple[str, nn.Module], ...]
    gaps: tuple[Gap, ...]

    @property
    def hidden(self) -> tuple[Gap, ...]:
        """The gaps between consecutive layers (``L - 1`` of them)."""
        return self.gaps[:-1]

    @property
    def final(self) -> Gap:
        """The operations after the last layer."""
        return self.gaps[-1]

    def activation(self) -> Callable[[Tensor], Tensor]:
        """The one entrywise activation every hidden gap applies, for
        :func:`~weightspace.functional.forward`.

        Raises
        ------
        ValueError
            When the hidden gaps apply different entrywise functions, or one of them applies an
            op on the neurons as a set (softmax), which ``forward`` cannot express; the message
            names the gaps.
        """
        hidden = self.hidden
        for i, gap in enumerate(hidden):
            if "neuronwise" in gap.kinds:
                raise ValueError(
                    f"ModuleTrace.activation: between layers {self.layers[i][0]!r} and "
                    f"{self.layers[i + 1][0]!r} the module applies {list(gap.ops)}, which is not "
                    "an entrywise activation"
                )
        if not hidden:
            return _identity
        for i, gap in enumerate(hidden[1:], start=1):
            if gap.signature != hidden[0].signature:
                raise ValueError(
                    "ModuleTrace.activation: the hidden layers apply different activations: "
                    f"{list(hidden[0].ops)} after {self.layers[0][0]!r}, {list(gap.ops)} after "
                    f"{self.layers[i][0]!r}; pass functional.forward an activation yourself"
                )
        return hidden[0].activation()

    def activation_name(self) -> str | None:
        """The hidden activation's name for :func:`~weightspace.functional.forward` (``"relu"``,
        ``"tanh"``, ``"sigmoid"``, ``"gelu"``, ``"silu"``, ``"sin"``), ``"identity"`` without
        hidden layers, or ``None`` when the hidden gaps apply anything else or differ."""
        hidden = self.hidden
        if not hidden:
            return "identity"
        signature = hidden[0].signature
        if any(gap.signature != signature for gap in hidden) or len(signature) != 1:
            return None
        if any("neuronwise" in gap.kinds for gap in hidden):
            return None
        kind, target, detail = signature[0]
        if kind == "module":
            name = _MODULE_NAMES.get(target)
        else:
            name = _FUNCTION_NAMES.get(target if kind == "call_function" else str(target))
        if name == "gelu" and "tanh" in detail:
            return None  # the tanh approximation is another function
        return name

    def final_activation(self) -> Callable[[Tensor], Tensor] | None:
        """The entrywise ops after the last layer, or ``None`` when there are none.

        Raises ``ValueError`` when they include an op on the neurons as a set (softmax).
        """
        if "neuronwise" in self.final.kinds:
            raise ValueError(
                f"ModuleTrace.final_activation: after the last layer the module applies "
                f"{list(self.final.ops)}, which is not entrywise"
            )
        return self.final.replay


_MODULE_NAMES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.Tanh: "tanh",
    nn.Sigmoid: "sigmoid",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
}
_FUNCTION_NAMES: dict[Any, str] = {
    torch.relu: "relu",
    F.relu: "relu",
    "relu": "relu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    "tanh": "tanh",
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    "sigmoid": "sigmoid",
    F.gelu: "gelu",
    F.silu: "silu",
    torch.sin: "sin",
    "sin": "sin",
}


def _identity(t: Tensor) -> Tensor:
    return t


# ------------------------------------------------------------------ layers
def check_weight_layer(name: str, module: nn.Module) -> None:
    """Refuse a Linear/Conv layer that carries more than weight and bias, or a grouped conv."""
    shown = name or type(module).__name__
    extra = {n for n, _ in module.named_parameters()} - {"weight", "bias"}
    if extra or any(True for _ in module.buffers()):
        raise ValueError(
            f"NetworkSpec.from_module: {shown!r} ({type(module).__name__}) carries parameters "
            f"or buffers beyond weight and bias ({sorted(extra)}); they have no place in the "
            "weight space"
        )
    if isinstance(module, CONV_TYPES) and module.groups != 1:
        raise ValueError(
            f"NetworkSpec.from_module: {shown!r} ({module}) is a grouped convolution "
            f"(groups={module.groups}); only groups=1 fits the neuron-permutation structure"
        )


def _has_state(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def _is_torch_module(module: nn.Module) -> bool:
    return type(module).__module__.startswith(("torch.nn", "torch.ao.nn"))


def _module_kind(name: str, module: nn.Module, who: str) -> Kind:
    """The kind of a parameter-free module; refuse ``torch.nn`` modules of no known kind."""
    if isinstance(module, _ENTRYWISE_MODULES):
        return "entrywise"
    if isinstance(module, _STRUCTURAL_MODULES):
        return "structural"
    if isinstance(module, _NEURONWISE_MODULES):
        return "neuronwise"
    if _is_torch_module(module):
        raise ValueError(
            f"NetworkSpec.from_module: {who} {name!r} ({type(module).__name__}) is not known to "
            "act on each neuron (channel) alike; reordering, splitting or mixing neurons breaks "
            "the neuron-permutation structure"
        )
    return "entrywise"  # a user's parameter-free module: an entrywise function, as in Sequential


def _stateful_error(name: str, module: nn.Module, who: str) -> ValueError:
    what = "parameters" if any(True for _ in module.parameters()) else "buffers"
    return ValueError(
        f"NetworkSpec.from_module: {who} {name!r} ({type(module).__name__}) has {what} but is "
        "not nn.Linear or nn.Conv1d/2d/3d; normalisation layers, embeddings and attention "
        "break the neuron-permutation structure"
    )


def trace_module(module: nn.Module) -> ModuleTrace:
    """The weight layers of ``module`` in forward order, and the operations between them.

    ``nn.Linear`` / ``nn.Conv`` layers and ``nn.Sequential`` trees of them and parameter-free
    modules are read without tracing; any other module is traced with ``torch.fx``.

    Raises
    ------
    ValueError
        Naming the node or module that breaks the chain and why (see the module docstring), a
        module ``torch.fx`` cannot trace (suggesting ``nn.Sequential``), or one without any
        Linear/Conv layer.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"NetworkSpec.from_module: expected an nn.Module, got {type(module).__name__}"
        )
    if isinstance(module, WEIGHT_TYPES):
        check_weight_layer("", module)
        return ModuleTrace((("", module),), (Gap(),))
    if _is_plain_sequential(module):
        return _walk_sequential(module)
    return _trace_fx(module)


def _is_plain_sequential(module: nn.Module) -> bool:
    """An ``nn.Sequential`` whose every descendant is a Sequential, a layer or parameter-free."""
    if not isinstance(module, nn.Sequential):
        return False
    for child in module.children():
        if isinstance(child, nn.Sequential):
            if not _is_plain_sequential(child):
                return False
        elif (
            not isinstance(child, WEIGHT_TYPES)
            and _has_state(child)
            and not _is_torch_module(child)
        ):
            return False  # a user's block with parameters: trace it
    return True


def _leaves(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", child


def _walk_sequential(module: nn.Sequential) -> ModuleTrace:
    layers: list[tuple[str, nn.Module]] = []
    gaps: list[list[tuple[str, nn.Module, Kind]]] = []
    for name, child in _leaves(module):
        if isinstance(child, WEIGHT_TYPES):
            check_weight_layer(name, child)
            layers.append((name, child))
            gaps.append([])
        elif _has_state(child):
            raise _stateful_error(name, child, "module")
        else:
            kind = _module_kind(name, child, "module")
            if gaps:  # ops before the first layer are the input's business (flattening)
                gaps[-1].append((name, child, kind))
    if not layers:
        raise ValueError(
            f"NetworkSpec.from_module: {type(module).__name__} has no nn.Linear or nn.Conv layer"
        )
    return ModuleTrace(tuple(layers), tuple(_module_gap(g) for g in gaps))


def _module_gap(ops: Sequence[tuple[str, nn.Module, Kind]]) -> Gap:
    entrywise = [m for _, m, kind in ops if kind == "entrywise"]
    replay = nn.Sequential(*entrywise) if entrywise else None
    return Gap(
        ops=tuple(type(m).__name__ for _, m, _ in ops),
        kinds=tuple(kind for _, _, kind in ops),
        signature=tuple(_module_signature(m) for m in entrywise),
        replay=replay,
    )


def _module_signature(module: nn.Module) -> tuple[Any, ...]:
    return ("module", type(module), repr(module))


# --------------------------------------------------------------------- fx
class _ChainTracer(fx.Tracer):
    """Layers, ``torch.nn`` modules and parameter-free modules are leaves; the rest is traced."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if isinstance(m, nn.Sequential | nn.ModuleList | nn.ModuleDict):
            return False
        if isinstance(m, WEIGHT_TYPES) or _is_torch_module(m):
            return True
        return not _has_state(m)


_META = -1  # the "stage" of a value that is not a tensor of activations


def _trace_fx(module: nn.Module) -> ModuleTrace:
    name = type(module).__name__
    try:
        graph = _ChainTracer().trace(module)
    except Exception as err:  # fx raises TraceError, TypeError, NotImplementedError, ...
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"NetworkSpec.from_module: torch.fx cannot trace {name} ({type(err).__name__}: "
            f"{first}); a forward with data-dependent control flow cannot be read as a chain of "
            "layers: write the network as an nn.Sequential of its layers and activations"
        ) from None
    layers: list[tuple[str, nn.Module]] = []
    stage: dict[fx.Node, int] = {}
    consumed: dict[int, str] = {}  # stage -> the layer that read it
    gap_nodes: list[list[tuple[fx.Node, Kind | None]]] = []  # per stage >= 1
    layer_nodes: list[fx.Node] = []
    inputs = 0
    output: fx.Node | None = None

    def where(node: fx.Node) -> str:
        return f"node {node.name!r} of {name}"

    for node in graph.nodes:
        if node.op == "placeholder":
            if inputs and node.users:
                raise ValueError(
                    f"NetworkSpec.from_module: {name}.forward takes a second input {node.target!r}; "
                    "a feedforward chain reads one tensor"
                )
            stage[node] = 0 if not inputs else _META
            inputs += 1
            continue
        if node.op == "output":
            output = node
            break
        if node.op == "get_attr" and str(node.target).startswith("_tensor_constant"):
            raise ValueError(
                f"NetworkSpec.from_module: {where(node)} is a tensor created inside forward; "
                "constants combined with activations can tell neurons apart, which breaks the "
                "neuron-permutation structure"
            )
        if node.op == "get_attr":
            raise ValueError(
                f"NetworkSpec.from_module: {where(node)} reads {node.target!r} directly; tensors "
                "used outside nn.Linear/nn.Conv layers (a learned scale, F.linear with a weight) "
                "have no place in the weight space: call the layer module instead"
            )
        inputs_of = node.all_input_nodes
        tensor_stages = sorted({stage[a] for a in inputs_of if stage.get(a, _META) != _META})
        if node.op == "call_module":
            sub = module.get_submodule(str(node.target))
            if isinstance(sub, WEIGHT_TYPES):
                current = len(layers)
                if str(node.target) in dict(layers):
                    raise ValueError(
                        f"NetworkSpec.from_module: layer {node.target!r} of {name} is called twice "
                        "(weight sharing); each layer of a weight space is used once"
                    )
                check_weight_layer(str(node.target), sub)
                if tensor_stages != [current] or len(inputs_of) != 1:
                    raise _chain_error(node, name, tensor_stages, layers, current)
                if current in consumed:
                    raise ValueError(
                        f"NetworkSpec.from_module: {where(node)} ({node.target}) reads the same "
                        f"activations as {consumed[current]!r}: two branches from one layer do not "
                        "form a chain"
                    )
                consumed[current] = str(node.target)
                layers.append((str(node.target), sub))
                layer_nodes.append(node)
                stage[node] = current + 1
                gap_nodes.append([])
                continue
            if _has_state(sub):
                raise _stateful_error(str(node.target), sub, f"{where(node)}, module")
            kind: Kind | None = _module_kind(str(node.target), sub, f"{where(node)}, module")
        else:
            kind = _call_kind(node, tensor_stages, where(node))
        if kind is None:  # a size or shape: no stage
            stage[node] = _META
            if tensor_stages and tensor_stages[-1] >= 1:
                gap_nodes[tensor_stages[-1] - 1].append((node, None))
            continue
        if len(tensor_stages) != 1:
            raise _chain_error(node, name, tensor_stages, layers, len(layers))
        s = tensor_stages[0]
        if s != len(layers):
            raise _chain_error(node, name, [s], layers, len(layers))
        stage[node] = s
        if s >= 1:
            gap_nodes[s - 1].append((node, kind))

    if not layers:
        raise ValueError(f"NetworkSpec.from_module: {name} has no nn.Linear or nn.Conv layer")
    assert output is not None
    returned = output.args[0]
    if not isinstance(returned, fx.Node) or stage.get(returned, _META) != len(layers):
        what = "more than one tensor" if not isinstance(returned, fx.Node) else "not the last layer"
        raise ValueError(
            f"NetworkSpec.from_module: {name}.forward returns {what}; a feedforward chain returns "
            f"the output of its last layer ({layers[-1][0]!r})"
        )
    _check_all_used(module, name, layers)
    gaps = tuple(_fx_gap(module, layer, nodes) for layer, nodes in zip(layer_nodes, gap_nodes))
    return ModuleTrace(tuple(layers), gaps)


def _call_kind(node: fx.Node, tensor_stages: Sequence[int], where: str) -> Kind | None:
    """The kind of a ``call_function`` / ``call_method`` node; ``None`` for a size or shape."""
    target = node.target
    if node.op == "call_method":
        method = str(target)
        if method in _META_METHODS or not tensor_stages:
            return None
        if method in _ENTRYWISE_METHODS:
            return "entrywise"
        if method in _STRUCTURAL_METHODS:
            return "structural"
        if method in _NEURONWISE_METHODS:
            return "neuronwise"
        shown = f"the method .{method}()"
    else:
        if target is builtins.getattr and len(node.args) > 1 and node.args[1] in _META_ATTRIBUTES:
            return None
        if not tensor_stages:
            if target is operator.getitem or target in _SIZE_ARITHMETIC:
                return None  # arithmetic on sizes
            raise ValueError(
                f"NetworkSpec.from_module: {where} creates a tensor inside forward "
                f"({getattr(target, '__name__', target)}); constants combined with activations "
                "can tell neurons apart, which breaks the neuron-permutation structure"
            )
        if target is operator.getitem:
            raise ValueError(
                f"NetworkSpec.from_module: {where} indexes a tensor of activations (x[...]); "
                "selecting or reordering neurons breaks the neuron-permutation structure"
            )
        if target in _JOINS:
            raise ValueError(
                f"NetworkSpec.from_module: {where} concatenates tensors "
                f"({getattr(target, '__name__', target)}); joined branches do not form a chain of "
                "layers"
            )
        if target in _ENTRYWISE_FUNCTIONS:
            return "entrywise"
        if target in _STRUCTURAL_FUNCTIONS:
            return "structural"
        if target in _NEURONWISE_FUNCTIONS:
            return "neuronwise"
        shown = getattr(target, "__qualname__", None) or getattr(target, "__name__", str(target))
    raise ValueError(
        f"NetworkSpec.from_module: {where} calls {shown}, which is not known to act on each "
        "neuron (channel) alike; wrap an entrywise function in a parameter-free nn.Module, or "
        "write the network as an nn.Sequential"
    )


def _chain_error(
    node: fx.Node,
    name: str,
    stages: Sequence[int],
    layers: Sequence[tuple[str, nn.Module]],
    current: int,
) -> ValueError:
    """Explain why ``node`` reads activations that are not those of the last layer."""

    def after(s: int) -> str:
        return "the input" if s == 0 else f"the output of {layers[s - 1][0]!r}"

    target = (
        node.target if node.op != "call_function" else getattr(node.target, "__name__", node.target)
    )
    where = f"node {node.name!r} ({target}) of {name}"
    if len(stages) > 1:
        return ValueError(
            f"NetworkSpec.from_module: {where} combines {' and '.join(after(s) for s in stages)}: "
            "a residual (skip) connection or a merge of branches breaks the chain of layers"
        )
    if not stages:
        return ValueError(f"NetworkSpec.from_module: {where} reads no activations")
    return ValueError(
        f"NetworkSpec.from_module: {where} reads {after(stages[0])}, but the chain is already at "
        f"{after(current)}: a skip connection or a second branch breaks the chain of layers"
    )


def _check_all_used(module: nn.Module, name: str, layers: Sequence[tuple[str, nn.Module]]) -> None:
    """Every parameter of ``module`` must belong to a layer forward calls."""
    used = {id(p) for _, layer in layers for p in layer.parameters()}
    for key, p in module.named_parameters():
        if id(p) not in used:
            raise ValueError(
                f"NetworkSpec.from_module: parameter {key!r} of {name} is not used by any layer "
                "that forward calls; every parameter must belong to the weight space"
            )
    for key, _ in module.named_buffers():
        raise ValueError(
            f"NetworkSpec.from_module: buffer {key!r} of {name} has no place in the weight space"
        )


def _fx_gap(root: nn.Module, layer: fx.Node, nodes: Sequence[tuple[fx.Node, Kind | None]]) -> Gap:
    """A :class:`Gap` from the nodes after ``layer``: its ops, and a replay of the entrywise ones.

    An entrywise op that needs a value from outside the gap (a size taken before the layer)
    cannot be replayed on its own: it counts as ``"neuronwise"``, so that
    :meth:`ModuleTrace.activation` refuses it rather than replay it wrongly.
    """
    graph = fx.Graph()
    x = graph.placeholder("x")
    env: dict[fx.Node, fx.Node] = {layer: x}
    ops: list[str] = []
    kinds: list[Kind] = []
    signature: list[Any] = []
    last = x
    for n, kind in nodes:
        inputs = [a for a in n.all_input_nodes if a in env]
        if kind == "structural" or kind == "neuronwise":
            env[n] = env[inputs[0]] if inputs else x
        elif len(inputs) == len(n.all_input_nodes):
            env[n] = graph.node_copy(n, lambda a: env[a])
            if kind == "entrywise":
                last = env[n]
                signature.append(_node_signature(root, n))
        else:
            kind = "neuronwise" if kind is not None else None
        if kind is not None:
            ops.append(_node_label(n))
            kinds.append(kind)
    if not signature:
        return Gap(tuple(ops), tuple(kinds), (), None)
    graph.output(last)
    return Gap(tuple(ops), tuple(kinds), tuple(signature), fx.GraphModule(root, graph))


def _node_label(node: fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    if node.op == "call_method":
        return str(node.target)
    return str(getattr(node.target, "__name__", node.target))


def _node_signature(root: nn.Module, node: fx.Node) -> tuple[Any, ...]:
    if node.op == "call_module":
        return _module_signature(root.get_submodule(str(node.target)))
    consts = fx.node.map_arg((node.args, node.kwargs), lambda a: "·")
    return (node.op, node.target, repr(consts))
