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
from itertools import combinations

import torch
from torch import Tensor, nn

from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.layout import SpaceLayout
from weightspace.space.spec import Mode, NetworkSpec, check_mode

IndexSet = tuple[int, ...]


def _subsets(layers: tuple[int, ...]) -> list[IndexSet]:
    """All subsets of ``layers`` (kept in axis order), largest first."""
    return [c for r in range(len(layers), -1, -1) for c in combinations(layers, r)]


def _key(index_set: IndexSet, spec: NetworkSpec) -> str:
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
        tensors = self.layout.tensors

        # For each index set S: the tensors carrying it, in spec order. They are both the inputs
        # and the outputs of that term group.
        members: dict[IndexSet, list[int]] = {}
        for t, lay in enumerate(tensors):
            for s in _subsets(lay.permuted_layers):
                members.setdefault(tuple(sorted(s, reverse=True)), []).append(t)
        self._members = members
        # Per tensor: the index sets it carries, and where in their blocks its rows sit.
        self._sets_of: list[list[IndexSet]] = [[] for _ in tensors]
        self._offsets: dict[tuple[IndexSet, int], tuple[int, int, int, int]] = {}
        self.weights = nn.ParameterDict()
        for s, ts in members.items():
            in_off = out_off = 0
            for t in ts:
                u = tensors[t].fixed
                self._offsets[(s, t)] = (
                    in_off,
                    in_off + in_channels * u,
                    out_off,
                    out_off + out_channels * u,
                )
                in_off += in_channels * u
                out_off += out_channels * u
                self._sets_of[t].append(s)
            self.weights[_key(s, spec)] = nn.Parameter(torch.empty(out_off, in_off))
        for sets in self._sets_of:
            sets.sort(key=len, reverse=True)
        self.bias = nn.Parameter(torch.empty(self.weights["global"].shape[0]))
        self.init_gain = init_gain
        self.reset_parameters()

    @property
    def num_terms(self) -> int:
        """Number of (input tensor, output tensor, index set) blocks."""
        return sum(len(ts) ** 2 for ts in self._members.values())

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Uniform init by fan-in over all terms that feed each output tensor; zero bias."""
        fan_in = [
            sum(self.weights[_key(s, self.spec)].shape[1] for s in self._sets_of[t])
            for t in range(len(self.layout.tensors))
        ]
        for s, ts in self._members.items():
            w = self.weights[_key(s, self.spec)]
            for t in ts:
                _, _, o0, o1 = self._offsets[(s, t)]
                bound = self.init_gain * math.sqrt(3.0 / fan_in[t])
                w[o0:o1].uniform_(-bound, bound)
        self.bias.zero_()

    def forward(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        check_features(x, self.spec, self.in_channels, type(self).__name__)
        tensors = self.layout.tensors
        B = x.batch_size
        # Canonical inputs and their averages over every subset of permuted axes.
        pooled: dict[tuple[IndexSet, int], Tensor] = {}
        for t, (lay, value) in enumerate(zip(tensors, x.tensors)):
            xc = lay.to_canonical(value)
            layers = lay.permuted_layers
            # Sums, then a rescale of the small result: the backward of a sum is a broadcast
            # view, where the backward of a mean would write a full-size tensor.
            if len(layers) == 2:
                rows = xc.sum(3)
                pooled[(layers, t)] = xc
                pooled[((layers[0],), t)] = rows / xc.shape[3]
                pooled[((layers[1],), t)] = xc.sum(2) / xc.shape[2]
                pooled[((), t)] = rows.sum(2) / (xc.shape[2] * xc.shape[3])
            elif len(layers) == 1:
                pooled[(layers, t)] = xc
                pooled[((), t)] = xc.sum(2) / xc.shape[2]
            else:
                pooled[((), t)] = xc
        # One matrix product per index set.
        # Outputs are split (not sliced) per tensor: the backward of a split is one concatenation,
        # where each slice's backward would write a zero-filled copy of the whole block.
        results: dict[tuple[IndexSet, int], Tensor] = {}
        for s, ts in self._members.items():
            w = self.weights[_key(s, self.spec)]
            parts = [pooled[(s, t)].flatten(2 if s else 1) for t in ts]
            q = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
            if not s:
                y = torch.addmm(self.bias, q, w.t())
            elif len(s) == 1:
                y = _mix_rows(w, q)
            else:
                y = torch.bmm(w.expand(B, -1, -1), q)
            sizes = [self._offsets[(s, t)][3] - self._offsets[(s, t)][2] for t in ts]
            chunks = (y,) if len(ts) == 1 else y.split(sizes, dim=1)
            results.update(((s, t), chunk) for t, chunk in zip(ts, chunks))
        # Sum the terms of each output, broadcasting over the axes a term is constant along.
        outputs = []
        for t, lay in enumerate(tensors):
            terms = []
            for s in self._sets_of[t]:  # largest index set first: the full-shaped term
                view = [B, -1] + [
                    size if layer in s else 1
                    for layer, size in zip(lay.permuted_layers, lay.permuted_shape)
                ]
                terms.append(results[(s, t)].reshape(view))
            outputs.append(lay.from_canonical(_sum_broadcast(terms), self.out_channels))
        return WeightSpaceFeatures.from_tensors(outputs)

    def extra_repr(self) -> str:
        sizes = ", ".join(f"{k}: {tuple(p.shape)}" for k, p in self.weights.items())
        return (
            f"widths={self.spec.widths}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, params={sum(p.numel() for p in self.parameters())} "
            f"[{sizes}]"
        )


def _mix_rows(w: Tensor, q: Tensor) -> Tensor:
    """``w @ q[b]`` for every b, as one matrix product with the batch folded into the rows.

    For blocks indexed by one layer's neurons (``q`` is ``(B, D_in, n)``, n small) a batched
    product would have an inner size of only n in its weight gradient, and would write a
    ``(B, D_out, D_in)`` gradient before summing it. Folding ``(B, n)`` into rows costs one copy
    of the small input and makes both the product and its weight gradient single large GEMMs.
    """
    B, d_in, n = q.shape
    rows = q.transpose(1, 2).reshape(B * n, d_in)
    return (rows @ w.t()).view(B, n, -1).transpose(1, 2)


def _sum_broadcast(terms: list[Tensor]) -> Tensor:
    """Sum terms whose first is full-shaped and the rest broadcast, in few full-size passes.

    The global term (all trailing axes 1) is folded into a small term first, so a weight under NP
    costs two full-size passes instead of three. (Adding in place into the matrix product's own
    output would be a view of it, which autograd handles with slow copies.)
    """
    full, rest = terms[0], terms[1:]
    if not rest:
        return full
    if len(rest) > 1 and all(s == 1 for s in rest[-1].shape[2:]):
        rest = [rest[0] + rest[-1], *rest[1:-1]]
    out = full + rest[0]  # a fresh tensor, not a view: safe to accumulate into in place
    for term in rest[1:]:
        out.add_(term)
    return out


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
    ) -> None:
        super().__init__(spec, in_channels, out_channels, "np", init_gain)


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
    ) -> None:
        super().__init__(spec, in_channels, out_channels, "hnp", init_gain)


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
