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

from dataclasses import dataclass
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

    def broadcast_view(self, t: int, s: IndexSet, batch: int) -> list[int]:
        """Shape of tensor t's S-term, with size 1 on the axes it is constant along."""
        lay = self.tensors[t]
        sizes = [
            n if layer in s else 1 for layer, n in zip(lay.permuted_layers, lay.permuted_shape)
        ]
        return [batch, -1, *sizes]


def _averages(lay: TensorLayout, x: Tensor) -> dict[IndexSet, Tensor]:
    """Tensor x averaged over its permuted axes outside S, for every S, flattened to (B, D, P)."""
    layers = lay.permuted_layers
    if len(layers) == 2:
        rows = _sum_last(x)
        n, m = x.shape[2], x.shape[3]
        return {
            layers: x.flatten(2),
            layers[:1]: rows / m,
            layers[1:]: x.sum(2) / n,
            (): rows.sum(2) / (n * m),
        }
    if len(layers) == 1:
        return {layers: x, (): x.sum(2) / x.shape[2]}
    return {(): x}


def _sum_last(x: Tensor) -> Tensor:
    """``x.sum(-1)`` as a matrix-vector product: much faster when the last axis is short."""
    return torch.matmul(x, x.new_ones(x.shape[-1]))


def _as_rows(q: Tensor) -> Tensor:
    """(B, D, n) → (B * n, D): fold one layer's neurons into the rows of a single GEMM."""
    return q.transpose(1, 2).reshape(-1, q.shape[1])


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


class NFLinearFunction(torch.autograd.Function):
    """``outputs = layer(inputs)`` on canonical tensors; see the module docstring."""

    @staticmethod
    def forward(ctx: Any, plan: TermPlan, n_inputs: int, *args: Tensor) -> tuple[Tensor, ...]:
        xs, weights, bias = args[:n_inputs], args[n_inputs:-1], args[-1]
        B = xs[0].shape[0]
        averages = [_averages(lay, x) for lay, x in zip(plan.tensors, xs)]
        results: dict[tuple[IndexSet, int], Tensor] = {}
        products: dict[int, tuple[Tensor, Tensor]] = {}  # pair terms, computed last
        saved: list[Tensor] = []
        for s, w in zip(plan.sets, weights):
            ts = plan.members[s]
            q = _cat([averages[t][s] for t in ts])
            saved.append(q)
            if not s:
                y = torch.addmm(bias, q, w.t())
            elif len(s) == 1:
                saved[-1] = rows = _as_rows(q)
                y = (rows @ w.t()).view(B, q.shape[2], -1).transpose(1, 2)
            else:
                # Only W_i carries both of its layers: its own product, accumulated into below.
                products[ts[0]] = (w, q)
                continue
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
                outputs.append(out.view(B, -1, *plan.tensors[t].permuted_shape))
            else:
                outputs.append(_accumulate(terms))
        ctx.plan, ctx.n_inputs = plan, n_inputs
        ctx.save_for_backward(*xs, *weights, *saved)
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        plan: TermPlan = ctx.plan
        n = ctx.n_inputs
        stored = ctx.saved_tensors
        xs, weights, saved = (
            stored[:n],
            stored[n : n + len(plan.sets)],
            stored[n + len(plan.sets) :],
        )
        B = xs[0].shape[0]
        need_x = ctx.needs_input_grad[2 : 2 + n]
        # Gradient of every term: the output gradient summed over the axes the term is constant on.
        term_grads: dict[tuple[IndexSet, int], Tensor] = {}
        for t, (lay, g) in enumerate(zip(plan.tensors, grads)):
            if g is None:
                g = torch.zeros(
                    B,
                    plan.out_channels * lay.fixed,
                    *lay.permuted_shape,
                    dtype=xs[0].dtype,
                    device=xs[0].device,
                )
            for s, value in _sums(lay, g).items():
                term_grads[(s, t)] = value
        grad_weights: list[Tensor | None] = []
        grad_bias: Tensor | None = None
        pieces: dict[tuple[IndexSet, int], Tensor] = {}
        products: dict[int, tuple[Tensor, Tensor]] = {}
        for s, w, q in zip(plan.sets, weights, saved):
            ts = plan.members[s]
            G = _cat([term_grads[(s, t)] for t in ts])
            want_x = any(need_x[t] for t in ts)
            if not s:
                grad_weights.append(G.t() @ q)
                grad_bias = G.sum(0)
                gq = G @ w if want_x else None
            elif len(s) == 1:
                rows = _as_rows(G)
                grad_weights.append(rows.t() @ q)
                gq = (rows @ w).view(B, G.shape[2], -1).transpose(1, 2) if want_x else None
            else:
                grad_weights.append(torch.bmm(G, q.transpose(1, 2)).sum(0))
                products[ts[0]] = (w, G)
                continue
            if gq is not None:
                pieces.update(zip(((s, t) for t in ts), gq.split(plan.in_sizes(s), dim=1)))
        grad_xs: list[Tensor | None] = []
        for t, lay in enumerate(plan.tensors):
            if not need_x[t]:
                grad_xs.append(None)
                continue
            terms = [
                _scaled(lay, s, pieces[(s, t)], B) for s in plan.sets_of[t] if (s, t) in pieces
            ]
            if t in products:
                w, G = products[t]
                grad = _broadcast_sum(terms).flatten(2).baddbmm_(w.t().expand(B, -1, -1), G)
                grad_xs.append(grad.view(B, -1, *lay.permuted_shape))
            else:
                grad_xs.append(_accumulate(terms))
        return (None, None, *grad_xs, *grad_weights, grad_bias)


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


def _sums(lay: TensorLayout, g: Tensor) -> dict[IndexSet, Tensor]:
    """Output gradient g summed over the axes each term of tensor ``lay`` broadcasts along."""
    layers = lay.permuted_layers
    if len(layers) == 2:
        rows = _sum_last(g)
        return {layers: g.flatten(2), layers[:1]: rows, layers[1:]: g.sum(2), (): rows.sum(2)}
    if len(layers) == 1:
        return {layers: g, (): g.sum(2)}
    return {(): g}


def _scaled(lay: TensorLayout, s: IndexSet, piece: Tensor, batch: int) -> Tensor:
    """Gradient of an S-average, spread back: divided by the count averaged over, broadcastable."""
    count = 1
    for layer, size in zip(lay.permuted_layers, lay.permuted_shape):
        if layer not in s:
            count *= size
    sizes = [n if layer in s else 1 for layer, n in zip(lay.permuted_layers, lay.permuted_shape)]
    piece = piece.reshape(batch, -1, *sizes)
    return piece / count if count > 1 else piece
