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
from functools import cached_property
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

    @cached_property
    def pair_of(self) -> dict[int, IndexSet]:
        """Tensors whose own two-layer index set has a weight (W_i), and that set."""
        return {ts[0]: s for s, ts in self.members.items() if len(s) == 2}

    @cached_property
    def terms_of(self) -> tuple[tuple[tuple[IndexSet, tuple[int, ...]], ...], ...]:
        """Per tensor, its broadcast terms (index set, sizes of the permuted axes in the term).

        A pair tensor's row, column and global terms come smallest first (they are summed into
        its own product); any other tensor's come largest first (the first is full-shaped).
        """
        out = []
        for t in range(len(self.tensors)):
            sets = [s for s in self.sets_of[t] if len(s) < 2 or t not in self.pair_of]
            if t in self.pair_of:
                sets.sort(key=lambda s: math.prod(self._view(t, s)))
            out.append(tuple((s, self._view(t, s)) for s in sets))
        return tuple(out)

    @cached_property
    def out_splits(self) -> dict[IndexSet, list[int]]:
        return {s: self.out_sizes(s) for s in self.sets}

    @cached_property
    def in_splits(self) -> dict[IndexSet, list[int]]:
        return {s: self.in_sizes(s) for s in self.sets}

    def _view(self, t: int, s: IndexSet) -> tuple[int, ...]:
        lay = self.tensors[t]
        return tuple(
            n if layer in s else 1 for layer, n in zip(lay.permuted_layers, lay.permuted_shape)
        )

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


#: Last-axis lengths up to which ``_sum_last`` uses a matrix-vector product.
_SHORT_AXIS = 16


def _sum_last(x: Tensor) -> Tensor:
    """``x.sum(-1)``, as a matrix-vector product when the last axis is short (there it is up to
    3x faster: a kernel input axis of 2, a 16-neuron layer); ``sum`` on longer axes, where the
    product is slower (5x on 128 neurons; BENCHMARKS.md)."""
    if x.shape[-1] <= _SHORT_AXIS:
        return torch.matmul(x, x.new_ones(x.shape[-1]))
    return x.sum(-1)


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


def _channel_scales(plan: TermPlan, scale: Tensor | None) -> list[Tensor] | None:
    """Per tensor, ``scale`` ``(B, C)`` spread over its canonical channels ``(B, C * u_t)``
    (channel-major: every channel covers its u_t fixed positions)."""
    if scale is None:
        return None
    return [
        scale if lay.fixed == 1 else scale.repeat_interleave(lay.fixed, 1) for lay in plan.tensors
    ]


def _by_channel(value: Tensor, scale: Tensor) -> Tensor:
    """``value`` ``(B, D, *axes)`` times ``scale`` ``(B, D)``, broadcast over the axes. Inside
    the layer only the small terms of the averages go through it, never a full-size tensor."""
    return value * scale.view(*scale.shape, *([1] * (value.ndim - 2)))


class NFLinearFunction(torch.autograd.Function):
    """``outputs = layer(inputs)`` on canonical tensors, optionally followed by a ReLU; see the
    module docstring.

    ``out_scale`` (``(B, C_out)``, non-negative, or None) multiplies every output channel of every
    network before the ReLU (which commutes with it): a channel dropout after the layer, folded
    into its products. It scales the small averaged terms and, per network, the rows of the
    pair products' weights, so it costs no pass over the full-size outputs in either direction.

    ``offset_keys`` name, as ``(index set, tensor)``, the trailing arguments: terms common to
    every network (batch 1), added to that term of that output before the scale and the ReLU.
    For an averaged term its shape is the term's, ``(1, D_t, *S-axes)``; for a pair set it is
    the whole ``(1, D_t, *permuted)``. They carry the contribution of input channels that are
    the same for every network (an IO encoding), computed once per step instead of per network
    (:func:`constant_terms`).
    """

    @staticmethod
    def forward(
        ctx: Any,
        plan: TermPlan,
        n_inputs: int,
        relu: bool,
        out_scale: Tensor | None,
        offset_keys: tuple[tuple[IndexSet, int], ...],
        *args: Tensor,
    ) -> tuple[Tensor, ...]:
        k = len(plan.sets)
        xs, weights = args[:n_inputs], args[n_inputs : n_inputs + k]
        bias, offset_values = args[n_inputs + k], args[n_inputs + k + 1 :]
        offsets = dict(zip(offset_keys, offset_values, strict=True))
        B = xs[0].shape[0]
        scales = _channel_scales(plan, out_scale)
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
            results.update(zip(((s, t) for t in ts), y.split_with_sizes(plan.out_splits[s], 1)))
        for key, value in offsets.items():
            if key in results:
                results[key] = results[key] + value
        outputs = []
        for t, terms_of in enumerate(plan.terms_of):
            terms = [results[(s, t)].reshape(B, -1, *view) for s, view in terms_of]
            if scales is not None:
                terms = [_by_channel(term, scales[t]) for term in terms]
            if t in products:
                w, q = products[t]
                shape = (B, w.shape[0], *plan.tensors[t].permuted_shape)
                out = _broadcast_sum(terms, shape)
                wb = w.expand(B, -1, -1) if scales is None else w * scales[t][:, :, None]
                out.view(B, w.shape[0], -1).baddbmm_(wb, q)
                pair = offsets.get((plan.pair_of[t], t))
                if pair is not None:
                    out.add_(pair if scales is None else _by_channel(pair, scales[t]))
            else:
                out = _accumulate(terms)
            outputs.append(out.relu_() if relu else out)
        ctx.plan, ctx.n_inputs, ctx.relu, ctx.scales = plan, n_inputs, relu, scales
        ctx.offset_keys = offset_keys
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
        need_x = ctx.needs_input_grad[5 : 5 + n]
        scales: list[Tensor] | None = ctx.scales
        # Gradient of every term: the output gradient summed over the axes the term is constant on.
        term_grads: dict[tuple[IndexSet, int], Tensor] = {}
        for t, (lay, g) in enumerate(zip(plan.tensors, grads)):
            if g is None:
                g = xs[0].new_zeros(B, plan.out_channels * lay.fixed, *lay.permuted_shape)
            elif ctx.relu:
                g = torch.ops.aten.threshold_backward(g, stored[n + 2 * k + t], 0)
            elif not g.is_contiguous():
                # E.g. the broadcast gradient of a sum: one copy here, not one inside every
                # reduction and matrix product that reads it (bmm copies per batch).
                g = g.contiguous()
            for s, value in _sums(lay, g).items():
                if scales is not None and plan.pair_of.get(t) != s:
                    value = _by_channel(value, scales[t])  # the pair term scales its weight
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
                per_network = torch.bmm(G, q.transpose(1, 2))
                if scales is not None:
                    per_network.mul_(scales[ts[0]][:, :, None])
                grad_weights.append(per_network.sum(0))
                products[ts[0]] = (w, G)
                continue
            scale = plan.scale(s, w)
            grad_weights.append(gw if scale is None else gw.mul_(scale))
            if gq is not None:
                pieces.update(zip(((s, t) for t in ts), gq.split_with_sizes(plan.in_splits[s], 1)))
        grad_xs: list[Tensor | None] = []
        for t, lay in enumerate(plan.tensors):
            if not need_x[t]:
                grad_xs.append(None)
                continue
            terms = [pieces[(s, t)].reshape(B, -1, *view) for s, view in plan.terms_of[t]]
            if t in products:
                w, G = products[t]
                grad = _broadcast_sum(terms, (B, w.shape[1], *lay.permuted_shape))
                if scales is None:
                    wt = w.t().expand(B, -1, -1)
                else:
                    wt = (w * scales[t][:, :, None]).transpose(1, 2)
                grad.view(B, w.shape[1], -1).baddbmm_(wt, G)
                grad_xs.append(grad)
            else:
                grad_xs.append(_accumulate(terms))
        grad_offsets = []
        for s, t in ctx.offset_keys:
            g = term_grads[(s, t)]
            if plan.pair_of.get(t) == s:  # the full output gradient, not yet scaled
                if scales is not None:
                    g = g * scales[t][:, :, None]
                g = g.sum(0, keepdim=True).view(1, -1, *plan.tensors[t].permuted_shape)
            else:
                g = g.sum(0, keepdim=True)
            grad_offsets.append(g)
        return (None, None, None, None, None, *grad_xs, *grad_weights, grad_bias, *grad_offsets)


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


def _broadcast_sum(terms: list[Tensor], shape: tuple[int, ...]) -> Tensor:
    """Materialise the sum of a weight's global, row and column terms (smallest first) as one
    fresh, contiguous tensor of ``shape``.

    The pair term's matrix product is then accumulated into it (``baddbmm_``): one full-size
    write for the broadcasts and one product, instead of a product and two broadcast passes.
    """
    small = terms[0]
    for term in terms[1:-1]:
        small = small + term  # still small: the global term folds into a row or column term
    # A contiguous result, whatever the terms' strides: baddbmm_ takes its fast batched path
    # only on plain layouts.
    return torch.add(small, terms[-1], out=small.new_empty(shape))


def constant_terms(
    plan: TermPlan, cs: list[Tensor], weights: list[Tensor], nonzero: list[bool]
) -> dict[tuple[IndexSet, int], Tensor]:
    """The terms that input channels common to every network add to each output, as the
    ``offsets`` of :class:`NFLinearFunction` (ordinary differentiable operations; batch 1).

    ``cs`` are those channels of each tensor in canonical layout, ``(1, D_t, *permuted)``;
    ``weights`` are their columns of each index set's weight, in ``plan``'s order (``plan`` is
    built for their channel count). A tensor marked zero in ``nonzero`` adds no pair term, and
    an index set whose tensors are all zero adds nothing.
    """
    sums = [_sums(lay, c) for lay, c in zip(plan.tensors, cs)]
    out: dict[tuple[IndexSet, int], Tensor] = {}
    for s, w in zip(plan.sets, weights):
        ts = plan.members[s]
        if not any(nonzero[t] for t in ts):
            continue
        scale = plan.scale(s, w)
        if scale is not None:
            w = w * scale
        if len(s) == 2:
            t = ts[0]
            out[(s, t)] = (w @ sums[t][s]).view(1, -1, *plan.tensors[t].permuted_shape)
            continue
        if not s:
            y = _cat([sums[t][s] for t in ts]) @ w.t()
        else:
            y = _unrows(_rows([sums[t][s] for t in ts]) @ w.t(), 1)
        out.update(zip(((s, t) for t in ts), y.split_with_sizes(plan.out_splits[s], 1)))
    return out
