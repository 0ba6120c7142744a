"""Group elements of the NP and HNP symmetry groups, and their action on features and modules.

A group element is a list of L + 1 entries, one per layer 0..L: ``None`` (identity) or a
LongTensor permutation of that layer's neurons, shape ``(n_i,)`` or ``(B, n_i)`` (one per network).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from weightspace.space.features import WeightSpaceFeatures, check_perms
from weightspace.space.spec import Mode, NetworkSpec, weight_layers
from weightspace.symmetry.neurons import generator_device

Perms = list[Tensor | None]


def identity(spec: NetworkSpec) -> Perms:
    """The identity element."""
    return [None] * (spec.num_layers + 1)


def sample(
    spec: NetworkSpec,
    mode: Mode = "hnp",
    *,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Perms:
    """Draw a uniformly random group element.

    Parameters
    ----------
    mode:
        ``"hnp"`` permutes hidden layers only; ``"np"`` every layer, inputs and outputs included.
    batch_size:
        If given, draw one element per network: entries of shape ``(batch_size, n_i)``.
    generator, device:
        Drawn on ``generator``'s device (the CPU for the global generator), then moved to
        ``device`` (if given): a CPU generator gives the same element on every device.
    """
    out = identity(spec)
    source = generator_device(generator)
    for i in spec.permuted_layers(mode):
        n = spec.widths[i]
        if batch_size is None:
            out[i] = torch.randperm(n, generator=generator, device=source)
        else:
            out[i] = torch.rand(batch_size, n, generator=generator, device=source).argsort(dim=1)
        if device is not None:
            out[i] = out[i].to(device)
    return out


def elements(spec: NetworkSpec, mode: Mode = "hnp") -> Iterator[Perms]:
    """Every group element, in a fixed order. Only sensible for small widths (|G| grows fast)."""
    layers = spec.permuted_layers(mode)
    choices = [list(itertools.permutations(range(spec.widths[i]))) for i in layers]
    for combo in itertools.product(*choices):
        out = identity(spec)
        for i, p in zip(layers, combo):
            out[i] = torch.tensor(p, dtype=torch.long)
        yield out


def inverse(perms: Sequence[Tensor | None]) -> Perms:
    """The inverse element: ``x.permute(g).permute(inverse(g)) == x``."""
    return [None if p is None else p.argsort(dim=-1) for p in perms]


def compose(first: Sequence[Tensor | None], second: Sequence[Tensor | None]) -> Perms:
    """The element that acts as ``first`` then ``second``: ``x.permute(first).permute(second)``."""
    out: Perms = []
    for p, q in zip(first, second):
        if p is None or q is None:
            out.append(q if p is None else p)
        elif p.ndim == 1 and q.ndim == 1:
            out.append(p[q])
        else:
            p2, q2 = torch.broadcast_tensors(*(t if t.ndim == 2 else t[None] for t in (p, q)))
            out.append(p2.gather(1, q2))
    return out


def permute_features(
    features: WeightSpaceFeatures, perms: Sequence[Tensor | None]
) -> WeightSpaceFeatures:
    """Apply a group element to features (same as ``features.permute(perms)``)."""
    return features.permute(perms)


@torch.no_grad()
def permute_module(module: nn.Module, perms: Sequence[Tensor | None]) -> nn.Module:
    """A deep copy of ``module`` whose neurons are permuted by ``perms`` (one element, 1-D entries).

    The copy computes the same function whenever ``perms`` leaves inputs and outputs in place
    (any HNP element).
    """
    out = copy.deepcopy(module)
    layers = list(weight_layers(out))
    perms = check_perms(NetworkSpec.from_layers(layers), perms)
    if any(p is not None and p.ndim != 1 for p in perms):
        raise ValueError("permute_module takes one group element: entries of shape (n_i,)")
    for i, (_, layer) in enumerate(layers, start=1):
        w = layer.weight
        if perms[i] is not None:
            w = w.index_select(0, perms[i].to(w.device))
            if layer.bias is not None:
                layer.bias.copy_(layer.bias.index_select(0, perms[i].to(w.device)))
        if perms[i - 1] is not None:
            w = w.index_select(1, perms[i - 1].to(w.device))
        layer.weight.copy_(w)
    return out
