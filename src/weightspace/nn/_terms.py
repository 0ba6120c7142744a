"""The arithmetic of an equivariant NF-Layer, with a hand-written backward.

Everything here works on canonical tensors (see :mod:`weightspace.space.layout`): tensor t is
``(B, D_t, *permuted)`` with ``D_t = C * u_t``. A :class:`TermPlan` lists, for every index set S
(a set of permuted layers), the tensors carrying S; one weight matrix per S maps the S-indexed
averages of all of them to all of them.

Why a custom backward: the layer is a sum of broadcast terms. Through autograd, each broadcast
and each average costs a full-size temporary in the backward pass (a materialised gradient of the
average, an out-of-place accumulation). Here every input gradient is one matrix product written
into a fresh tensor plus two in-place broadcast additions, and every output is one matrix product
plus in-place additions: the fewest full-size passes the arithmetic allows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from weightspace.space.layout import TensorLayout

IndexSet = tuple[int, ...]


def subsets(layers: tuple[int, ...]) -> list[IndexSet]:
    """All subsets of ``layers`` (kept in axis order), largest first."""
    return [c for r in range(len(layers), -1, -1) for c in combinations(layers, r)]


@dataclass(frozen=True)
class TermPlan:
    """Which tensors share which index sets, and the channel widths of every block."""

    tensors: tuple[TensorLayout, ...]
    sets: tuple[IndexSet, ...]  # one weight matrix per entry, in this order; () first
    members: dict[IndexSet, tuple[int, ...]]
    sets_of: tuple[tuple[IndexSet, ...], ...]  # per tensor, largest index set first
    in_channels: int
    out_channels: int
    _scales: dict[Any, Tensor | None] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls, tensors: tuple[TensorLayout, ...], in_channels: int, out_channels: int
    ) -> TermPlan:
        members: dict[IndexSet, list[int]] = {(): []}
        for t, lay in enumerate(tensors):
            for s in subsets(lay.permuted_layers):
                members.setdefault(s, []).append(t)
        sets_of = tuple(
            tuple(s for s in members if t in members[s] and set(s) <= set(lay.permuted_layers))
            for t, lay in enumerate(tensors)
        )
        sets_of = tuple(tuple(sorted(ss, key=len, reverse=True)) for ss in sets_of)
        return cls(
            tensors,
            tuple(members),
            {s: tuple(ts) for s, ts in members.items()},
            sets_of,
            in_channels,
            out_channels,
        )

    def in_sizes(self, s: IndexSet) -> list[int]:
        return [self.in_channels * self.tensors[t].fixed for t in self.members[s]]

    def out_sizes(self, s: IndexSet) -> list[int]:
        return [self.out_channels * self.tensors[t].fixed for t in self.members[s]]

    def weight_shape(self, s: IndexSet) -> tuple[int, int]:
        return sum(self.out_sizes(s)), sum(self.in_sizes(s))

    def count(self, t: int, s: IndexSet) -> int:
        """How many entries of tensor t its S-average runs over."""
        lay = self.tensors[t]
        return math.prod(
            n for layer, n in zip(lay.permuted_layers, lay.permuted_shape) if layer not in s
        )

    def broadcast_view(self, t: int, s: IndexSet, batch: int) -> list[int]:
        """Shape of tensor t's S-term, with size 1 on the axes it is constant along."""
        lay = self.tensors[t]
        sizes = [
            n if layer in s else 1 for layer, n in zip(lay.permuted_layers, lay.permuted_shape)
        ]
        return [batch, -1, *sizes]

    def scale(self, s: IndexSet, like: Tensor) -> Tensor | None:
        """Per input column of ``weight_S``: 1 / the count its average runs over (None: all 1).

        The layer works on plain sums; folding the averages' divisions into the (small) weight
        saves a pass over every average in the forward and every spread-back gradient.
        """
        key = (s, like.dtype, like.device)
        if key not in self._scales:
            counts = [self.count(t, s) for t in self.members[s]]
            if all(c == 1 for c in counts):
                value = None
            else:
                value = torch.cat(
                    [
                        torch.full((size,), 1.0 / c, dtype=like.dtype, device=like.device)
                        for size, c in zip(self.in_sizes(s), counts)
                    ]
                )
            self._scales[key] = value
        return self._scales[key]


def _sums(lay: TensorLayout, x: Tensor) -> dict[IndexSet, Tensor]:
    """Tensor x summed over its permuted axes outside S, for every S: ``(B, D, *S-axes)``.

    Used for the inputs' averages (divided by the counts through the weights) and for the
    gradients of the broadcast output terms.
    """
    layers = lay.permuted_layers
    if len(layers) == 2:
        rows = _sum_last(x)
        return {layers: x.flatten(2), layers[:1]: rows, layers[1:]: x.sum(2), (): rows.sum(2)}
    if len(layers) == 1:
        return {layers: x, (): x.sum(2)}
    return {(): x}


def _sum_last(x: Tensor) -> Tensor:
    """``x.sum(-1)`` as a matrix-vector product: much faster when the last axis is short."""
    return torch.matmul(x, x.new_ones(x.shape[-1]))


def _rows(parts: list[Tensor]) -> Tensor:
    """[(B, D_k, n)] → (B * n, Σ D_k): one layer's neurons folded into the rows of a single GEMM,
    the blocks side by side (one copy)."""
    if len(parts) == 1:
        q = parts[0]
        return q.transpose(1, 2).reshape(-1, q.shape[1])
    out = torch.cat([p.transpose(1, 2) for p in parts], dim=2)
    return out.view(-1, out.shape[2])


def _unrows(y: Tensor, batch: int) -> Tensor:
    """(B * n, D) → (B, D, n), contiguous: the broadcasts that read it then run vectorised."""
    return y.view(batch, -1, y.shape[1]).transpose(1, 2).contiguous()


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class NFLinearFunction(torch.autograd.Function):
    """``outputs = layer(inputs)`` on canonical tensors, optionally followed by a ReLU; see the
    module docstring."""

    @staticmethod
    def forward(
        ctx: Any, plan: TermPlan, n_inputs: int, relu: bool, *args: Tensor
    ) -> tuple[Tensor, ...]:
        xs, weights, bias = args[:n_inputs], args[n_inputs:-1], args[-1]
        B = xs[0].shape[0]
        sums = [_sums(lay, x) for lay, x in zip(plan.tensors, xs)]
        results: dict[tuple[IndexSet, int], Tensor] = {}
        products: dict[int, tuple[Tensor, Tensor]] = {}  # pair terms, computed last
        saved: list[Tensor] = []
        scaled: list[Tensor] = []
        for s, w in zip(plan.sets, weights):
            ts = plan.members[s]
            scale = plan.scale(s, w)
            if scale is not None:
                w = w * scale
            scaled.append(w)
            if not s:
                q = _cat([sums[t][s] for t in ts])
                y = torch.addmm(bias, q, w.t())
            elif len(s) == 1:
                q = _rows([sums[t][s] for t in ts])
                y = _unrows(q @ w.t(), B)
            else:
                # Only W_i carries both of its layers: its own product, accumulated into below.
                q = sums[ts[0]][s]
                products[ts[0]] = (w, q)
                saved.append(q)
                continue
            saved.append(q)
            results.update(zip(((s, t) for t in ts), y.split(plan.out_sizes(s), dim=1)))
        outputs = []
        for t, sets in enumerate(plan.sets_of):
            terms = [
                results[(s, t)].reshape(plan.broadcast_view(t, s, B))
                for s in sets
                if (s, t) in results
            ]
            if t in products:
                w, q = products[t]
                out = _broadcast_sum(terms).flatten(2).baddbmm_(w.expand(B, -1, -1), q)
                out = out.view(B, -1, *plan.tensors[t].permuted_shape)
            else:
                out = _accumulate(terms)
            outputs.append(out.relu_() if relu else out)
        ctx.plan, ctx.n_inputs, ctx.relu = plan, n_inputs, relu
        ctx.save_for_backward(*xs, *scaled, *saved, *(outputs if relu else ()))
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        plan: TermPlan = ctx.plan
        n, k = ctx.n_inputs, len(plan.sets)
        stored = ctx.saved_tensors
        xs, weights, saved = stored[:n], stored[n : n + k], stored[n + k : n + 2 * k]
        B = xs[0].shape[0]
        need_x = ctx.needs_input_grad[3 : 3 + n]
        # Gradient of every term: the output gradient summed over the axes the term is constant on.
        term_grads: dict[tuple[IndexSet, int], Tensor] = {}
        for t, (lay, g) in enumerate(zip(plan.tensors, grads)):
            if g is None:
                g = xs[0].new_zeros(B, plan.out_channels * lay.fixed, *lay.permuted_shape)
            elif ctx.relu:
                g = torch.ops.aten.threshold_backward(g, stored[n + 2 * k + t], 0)
            for s, value in _sums(lay, g).items():
                term_grads[(s, t)] = value
        grad_weights: list[Tensor | None] = []
        grad_bias: Tensor | None = None
        pieces: dict[tuple[IndexSet, int], Tensor] = {}
        products: dict[int, tuple[Tensor, Tensor]] = {}
        for s, w, q in zip(plan.sets, weights, saved):
            ts = plan.members[s]
            want_x = any(need_x[t] for t in ts)
            if not s:
                G = _cat([term_grads[(s, t)] for t in ts])
                gw = G.t() @ q
                grad_bias = G.sum(0)
                gq = G @ w if want_x else None
            elif len(s) == 1:
                G = _rows([term_grads[(s, t)] for t in ts])
                gw = G.t() @ q
                gq = _unrows(G @ w, B) if want_x else None
            else:
                G = term_grads[(s, ts[0])]
                grad_weights.append(torch.bmm(G, q.transpose(1, 2)).sum(0))
                products[ts[0]] = (w, G)
                continue
            scale = plan.scale(s, w)
            grad_weights.append(gw if scale is None else gw.mul_(scale))
            if gq is not None:
                pieces.update(zip(((s, t) for t in ts), gq.split(plan.in_sizes(s), dim=1)))
        grad_xs: list[Tensor | None] = []
        for t, lay in enumerate(plan.tensors):
            if not need_x[t]:
                grad_xs.append(None)
                continue
            terms = [
                pieces[(s, t)].reshape(plan.broadcast_view(t, s, B))
                for s in plan.sets_of[t]
                if (s, t) in pieces
            ]
            if t in products:
                w, G = products[t]
                grad = _broadcast_sum(terms).flatten(2).baddbmm_(w.t().expand(B, -1, -1), G)
                grad_xs.append(grad.view(B, -1, *lay.permuted_shape))
            else:
                grad_xs.append(_accumulate(terms))
        return (None, None, None, *grad_xs, *grad_weights, grad_bias)


def _accumulate(terms: list[Tensor]) -> Tensor:
    """Sum terms whose first is full-shaped (a slice shared with other outputs: never written
    into) and the rest broadcast, into a fresh tensor."""
    full, rest = terms[0], terms[1:]
    if not rest:
        return full.clone()
    out = full + rest[0]
    for term in rest[1:]:
        out.add_(term)
    return out


def _broadcast_sum(terms: list[Tensor]) -> Tensor:
    """Materialise the sum of a weight's row, column and global terms as one fresh tensor.

    The pair term's matrix product is then accumulated into it (``baddbmm_``): one full-size
    write for the broadcasts and one product, instead of a product and two broadcast passes.
    """
    by_rank = sorted(terms, key=lambda t: t.shape[2:].numel())
    small = by_rank[0]
    for term in by_rank[1:-1]:
        small = small + term  # still small: the global term folds into a row or column term
    big = by_rank[-1]
    shape = torch.broadcast_shapes(small.shape, big.shape)
    # A contiguous result, whatever the terms' strides: baddbmm_ takes its fast batched path
    # only on plain layouts.
    return torch.add(small, big, out=small.new_empty(shape))
