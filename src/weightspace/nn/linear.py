"""NF-Layers: the most general permutation-equivariant linear maps between weight-space features.

Derivation (see ``shared/PAPER.md`` §3). Put every tensor in its canonical layout: permuted
neuron axes stay, fixed axes (kernels; inputs and outputs under HNP) fold into channels. Two
entries of the layer's big matrix share a parameter when their (output, input) index pairs lie in
one orbit. For an output tensor O and an input tensor T, the orbits are indexed by

* a subset S of the permuted layers that both O and T carry (their indices are tied: equal),
* and a (channel, fixed position) pair on each side, which is its own orbit.

Replacing "indices differ" by "any index" (a change of basis), the term for S reads: average T
over its permuted axes outside S, apply a ``(c_out * u_O) × (c_in * u_T)`` matrix, broadcast over
O's permuted axes outside S. Summed over S and T this spans every equivariant map, and the counts
match Burnside's lemma (tested). The invariant bias is one value per channel and fixed position.

Speed. Terms are grouped by S: every tensor that carries S contributes its S-indexed average to
one input block, and one matrix per S (``weight_<S>``) maps it to every output that carries S. A
layer is then a handful of large batched matrix products: one for the global averages (with the
bias folded in), one per permuted layer, and one per weight whose both neuron axes are permuted.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from weightspace.nn._terms import IndexSet, NFLinearFunction, TermPlan, constant_terms
from weightspace.nn.activation import get_activation
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.layout import SpaceLayout
from weightspace.space.spec import Mode, NetworkSpec, check_mode


def _key(index_set: IndexSet) -> str:
    """Parameter name of the weight block of an index set."""
    if not index_set:
        return "global"
    if len(index_set) == 1:
        return f"layer{index_set[0]}"
    return f"W{index_set[0]}"  # only W_i carries both layers i and i-1


class _EquivariantLinear(nn.Module):
    mode: Mode

    def __init__(
        self,
        spec: NetworkSpec,
        in_channels: int,
        out_channels: int,
        mode: Mode,
        init_gain: float = math.sqrt(2.0),
        activation: str | Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__()
        check_mode(mode)
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"{type(self).__name__}: channels must be positive, got in={in_channels}, out={out_channels}"
            )
        self.spec, self.mode = spec, mode
        self.in_channels, self.out_channels = in_channels, out_channels
        self.layout = SpaceLayout(spec, mode)
        self.plan = TermPlan.build(self.layout.tensors, in_channels, out_channels)
        self.weights = nn.ParameterDict(
            {_key(s): nn.Parameter(torch.empty(self.plan.weight_shape(s))) for s in self.plan.sets}
        )
        self.bias = nn.Parameter(torch.empty(self.plan.weight_shape(())[0]))
        self.init_gain = init_gain
        # ReLU runs inside the layer's autograd function (in place on the fresh outputs, its
        # backward folded into the layer's); any other activation is applied after.
        self.activation = activation
        self._fused_relu = activation == "relu"
        self._act = None if activation is None or self._fused_relu else get_activation(activation)
        self._splits: dict[
            tuple[int, torch.device],
            tuple[TermPlan, TermPlan, dict[IndexSet, tuple[Tensor, Tensor]]],
        ] = {}
        self.reset_parameters()

    @property
    def num_terms(self) -> int:
        """Number of (input tensor, output tensor, index set) blocks."""
        return sum(len(ts) ** 2 for ts in self.plan.members.values())

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Uniform init by fan-in over all terms that feed each output tensor; zero bias."""
        plan = self.plan
        fan_in = [
            sum(plan.weight_shape(s)[1] for s in plan.sets_of[t]) for t in range(len(plan.tensors))
        ]
        for s in plan.sets:
            rows = self.weights[_key(s)].split(plan.out_sizes(s), dim=0)
            for t, block in zip(plan.members[s], rows):
                bound = self.init_gain * math.sqrt(3.0 / fan_in[t])
                block.uniform_(-bound, bound)
        self.bias.zero_()

    @property
    def folds_channel_scale(self) -> bool:
        """Whether ``forward(x, out_scale=…)`` is available: no activation, or the fused ReLU
        (both commute with non-negative per-channel factors)."""
        return self._act is None

    def forward(
        self,
        x: WeightSpaceFeatures,
        out_scale: Tensor | None = None,
        constant: WeightSpaceFeatures | None = None,
    ) -> WeightSpaceFeatures:
        """The layer (and its activation) on ``x``.

        ``out_scale`` ``(B, C_out)``: non-negative factors per network and output channel,
        applied to the outputs inside the layer's products, the same values as multiplying the
        outputs afterwards. This is how a :class:`~weightspace.nn.ChannelDropout` after the layer
        is folded in (:meth:`ChannelDropout.draw_scale` draws them); it saves a pass over the
        outputs in each direction. Only without an activation or with the fused ReLU.

        ``constant``: input channels that are the same for every network (batch 1, e.g. an IO
        encoding's), after ``x``'s: the layer then sees ``x.channels + constant.channels =
        in_channels`` channels, the same values as concatenating them to every network. Their
        contribution is computed once per call, not once per network, and none is computed for
        a tensor whose constant channels are all zero.
        """
        name = type(self).__name__
        if constant is not None:
            return self._forward_with_constant(x, out_scale, constant)
        check_features(x, self.spec, self.in_channels, name)
        out_scale = self._check_scale(x, out_scale)
        tensors = self.layout.tensors
        xs = [lay.to_canonical(value) for lay, value in zip(tensors, x.tensors)]
        weights = [self.weights[_key(s)] for s in self.plan.sets]
        outputs = NFLinearFunction.apply(
            self.plan, len(xs), self._fused_relu, out_scale, (), *xs, *weights, self.bias
        )
        return self._finish(outputs)

    def _check_scale(self, x: WeightSpaceFeatures, out_scale: Tensor | None) -> Tensor | None:
        name = type(self).__name__
        if out_scale is not None:
            if not self.folds_channel_scale:
                raise ValueError(
                    f"{name}: out_scale needs activation None or 'relu' (they commute with "
                    f"non-negative channel factors), not {self.activation!r}"
                )
            expected = (x.batch_size, self.out_channels)
            if tuple(out_scale.shape) != expected:
                raise ValueError(
                    f"{name}: out_scale must be (batch, out_channels) = {expected}, "
                    f"got {tuple(out_scale.shape)}"
                )
            out_scale = out_scale.to(x.dtype)
        return out_scale

    def _split(
        self, channels: int, device: torch.device
    ) -> tuple[TermPlan, TermPlan, dict[IndexSet, tuple[Tensor, Tensor]]]:
        """For ``channels`` varying channels first and the rest constant: the plans of both
        parts, and per index set the weight columns of each (channel-major blocks, one per
        tensor of the set), as index tensors on ``device`` (kept: no copy per call)."""
        key = (channels, device)
        if key not in self._splits:
            plan = self.plan
            varying = TermPlan.build(plan.tensors, channels, self.out_channels)
            fixed = TermPlan.build(plan.tensors, self.in_channels - channels, self.out_channels)
            columns = {}
            for s in plan.sets:
                x_cols, c_cols, start = [], [], 0
                for t in plan.members[s]:
                    u = plan.tensors[t].fixed
                    x_cols.append(torch.arange(start, start + channels * u))
                    c_cols.append(torch.arange(start + channels * u, start + self.in_channels * u))
                    start += self.in_channels * u
                columns[s] = (torch.cat(x_cols).to(device), torch.cat(c_cols).to(device))
            self._splits[key] = (varying, fixed, columns)
        return self._splits[key]

    def _forward_with_constant(
        self, x: WeightSpaceFeatures, out_scale: Tensor | None, constant: WeightSpaceFeatures
    ) -> WeightSpaceFeatures:
        name = type(self).__name__
        if not isinstance(constant, WeightSpaceFeatures) or constant.batch_size != 1:
            raise ValueError(
                f"{name}: constant must be WeightSpaceFeatures of batch size 1 (the channels "
                f"every network shares), got {type(constant).__name__}"
                + (
                    f" of batch {constant.batch_size}"
                    if isinstance(constant, WeightSpaceFeatures)
                    else ""
                )
            )
        channels = self.in_channels - constant.channels
        if channels < 1:
            raise ValueError(
                f"{name}: constant has {constant.channels} channels, but the layer takes "
                f"{self.in_channels} in all; x needs at least one"
            )
        check_features(
            x, self.spec, channels, f"{name} (x beside {constant.channels} constant channels)"
        )
        check_features(constant, self.spec, constant.channels, f"{name} (constant)")
        out_scale = self._check_scale(x, out_scale)
        varying, fixed, columns = self._split(channels, self.bias.device)
        tensors = self.layout.tensors
        xs = [lay.to_canonical(value) for lay, value in zip(tensors, x.tensors)]
        cs = [lay.to_canonical(value.to(x.dtype)) for lay, value in zip(tensors, constant.tensors)]
        weights = [self.weights[_key(s)] for s in self.plan.sets]
        w_x, w_c = [], []
        for s, w in zip(self.plan.sets, weights):
            x_cols, c_cols = columns[s]
            w_x.append(w.index_select(1, x_cols))
            w_c.append(w.index_select(1, c_cols))
        # Which constants are not all zero (their terms can be skipped): one host sync, not 2L.
        nonzero = torch.stack([c.any() for c in cs]).tolist()
        offsets = constant_terms(fixed, cs, w_c, nonzero)
        outputs = NFLinearFunction.apply(
            varying, len(xs), self._fused_relu, out_scale, tuple(offsets),
            *xs, *w_x, self.bias, *offsets.values(),
        )  # fmt: skip
        return self._finish(outputs)

    def _finish(self, outputs: tuple[Tensor, ...]) -> WeightSpaceFeatures:
        tensors = self.layout.tensors
        if self._act is not None:
            outputs = [self._act(y) for y in outputs]
        return WeightSpaceFeatures.from_tensors(
            [lay.from_canonical(y, self.out_channels) for lay, y in zip(tensors, outputs)]
        )

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{k}: {tuple(p.shape)}" for k, p in self.weights.items())
        return (
            f"widths={self.spec.widths}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, params={sum(p.numel() for p in self.parameters())} "
            f"[{sizes}]"
            + (f", activation={self.activation!r}" if self.activation is not None else "")
        )


class NPLinear(_EquivariantLinear):
    """Equivariant linear NF-Layer for the neuron-permutation (NP) group.

    Every layer's neurons, inputs and outputs included, are treated as exchangeable. Pair it with
    an IO encoding (:mod:`weightspace.nn.encoding`) to tell inputs and outputs apart.

    Parameters
    ----------
    spec:
        The weight space.
    in_channels, out_channels:
        Feature channels C_in and C_out.
    init_gain:
        Weights are uniform with standard deviation ``init_gain / sqrt(fan_in)``, fan-in counted
        over all terms feeding an output tensor.
    activation:
        Optional entrywise nonlinearity applied to the outputs (a name as for
        :class:`~weightspace.nn.Activation`, or a callable); ``"relu"`` is fused into the layer,
        which saves a pass over the features and a temporary in both directions.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with W_i ``(B, C_in, n_i, n_{i-1}, *kernel_i)``,
      b_i ``(B, C_in, n_i)``
    - output: the same with C_out channels
    """

    def __init__(
        self,
        spec: NetworkSpec,
        in_channels: int,
        out_channels: int,
        init_gain: float = math.sqrt(2.0),
        activation: str | Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(spec, in_channels, out_channels, "np", init_gain, activation)


class HNPLinear(_EquivariantLinear):
    """Equivariant linear NF-Layer for the hidden-neuron-permutation (HNP) group.

    Only hidden neurons are permuted; input neurons of W_1 and output neurons of W_L and b_L
    keep their order and act like channels. Larger than :class:`NPLinear`, and exact for the
    true symmetry of the network.

    Parameters
    ----------
    spec:
        The weight space.
    in_channels, out_channels:
        Feature channels C_in and C_out.
    init_gain:
        Weights are uniform with standard deviation ``init_gain / sqrt(fan_in)``.
    activation:
        Optional entrywise nonlinearity applied to the outputs; ``"relu"`` is fused into the
        layer (see :class:`NPLinear`).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with W_i ``(B, C_in, n_i, n_{i-1}, *kernel_i)``,
      b_i ``(B, C_in, n_i)``
    - output: the same with C_out channels
    """

    def __init__(
        self,
        spec: NetworkSpec,
        in_channels: int,
        out_channels: int,
        init_gain: float = math.sqrt(2.0),
        activation: str | Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        super().__init__(spec, in_channels, out_channels, "hnp", init_gain, activation)


class PointwiseLinear(nn.Module):
    """Pointwise (PT) NF-Layer: each entry's channels (kernel positions included) mixed alone.

    Equivariant to any permutation of the rows and columns of each tensor, so it carries no
    information between entries.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` with C_in channels
    - output: the same with C_out channels
    """

    def __init__(
        self,
        spec: NetworkSpec,
        in_channels: int,
        out_channels: int,
        init_gain: float = math.sqrt(2.0),
    ) -> None:
        super().__init__()
        self.spec, self.in_channels, self.out_channels = spec, in_channels, out_channels
        self.layout = SpaceLayout(spec, "np")
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(out_channels * lay.fixed, in_channels * lay.fixed))
            for lay in self.layout.tensors
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(out_channels * lay.fixed)) for lay in self.layout.tensors
        )
        self.init_gain = init_gain
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for w, b in zip(self.weights, self.biases):
            bound = self.init_gain * math.sqrt(3.0 / w.shape[1])
            w.uniform_(-bound, bound)
            b.zero_()

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(x, self.spec, self.in_channels, type(self).__name__)
        outputs = []
        for lay, value, w, b in zip(self.layout.tensors, x.tensors, self.weights, self.biases):
            xc = lay.to_canonical(value)
            flat = xc.reshape(xc.shape[0], xc.shape[1], -1)
            y = torch.baddbmm(
                b[None, :, None].expand(xc.shape[0], -1, flat.shape[2]),
                w.expand(xc.shape[0], -1, -1),
                flat,
            )
            outputs.append(
                lay.from_canonical(
                    y.reshape(xc.shape[0], -1, *lay.permuted_shape), self.out_channels
                )
            )
        return WeightSpaceFeatures.from_tensors(outputs)

    def extra_repr(self) -> str:
        return f"widths={self.spec.widths}, in_channels={self.in_channels}, out_channels={self.out_channels}"
