"""Completeness: the maps an NF-Layer realises span exactly the equivariant maps (Burnside)."""

import pytest
import torch

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.nn import HNPLinear, NPLinear

LAYERS = {"np": NPLinear, "hnp": HNPLinear}


def burnside_counts(spec: NetworkSpec, mode: str) -> tuple[int, int]:
    """(dim of equivariant linear maps, dim of invariant vectors), by enumerating the group.

    fix(g) is counted by acting on features whose entries are their own indices: obviously right,
    and independent of the layers' code.
    """
    offsets, tensors = 0, []
    for t in spec.tensors:
        tensors.append(
            torch.arange(offsets, offsets + t.numel, dtype=torch.float64).reshape(1, 1, *t.shape)
        )
        offsets += t.numel
    coded = WeightSpaceFeatures.from_tensors(tensors)
    total = total_sq = count = 0
    for g in symmetry.elements(spec, mode):
        moved = coded.permute(g)
        fixed = sum(int((a == b).sum()) for a, b in zip(coded.tensors, moved.tensors))
        total, total_sq, count = total + fixed, total_sq + fixed * fixed, count + 1
    assert total_sq % count == 0 and total % count == 0
    return total_sq // count, total // count


def realised_dims(
    spec: NetworkSpec, mode: str, *, removed: tuple[str, ...] = ()
) -> tuple[int, int, int]:
    """(rank of the realised linear maps, rank of the realised constant parts, parameter count).

    ``removed`` names parameters held at zero: the layer with those blocks taken out.
    """
    layer = LAYERS[mode](spec, 1, 1).double()
    n = spec.num_params

    def features(v: torch.Tensor) -> WeightSpaceFeatures:
        parts, i = [], 0
        for t in spec.tensors:
            parts.append(v[:, i : i + t.numel].reshape(-1, 1, *t.shape))
            i += t.numel
        return WeightSpaceFeatures.from_tensors(parts)

    basis, zero = (
        features(torch.eye(n, dtype=torch.float64)),
        features(torch.zeros(1, n, dtype=torch.float64)),
    )
    named = dict(layer.named_parameters())
    unknown = set(removed) - set(named)
    assert not unknown, f"no such parameters: {unknown}"
    params = [p for name, p in named.items() if name not in removed]
    frozen = [p for name, p in named.items() if name in removed]
    linear, constant = [], []
    with torch.no_grad():
        # The layer is linear in its parameters: one unit parameter vector at a time gives a basis
        # of everything it can realise.
        for p in params:
            for k in range(p.numel()):
                for q in params + frozen:
                    q.zero_()
                p.view(-1)[k] = 1.0
                c = layer(zero).flatten()
                linear.append((layer(basis).flatten() - c).flatten())
                constant.append(c.flatten())
    rank = torch.linalg.matrix_rank(torch.stack(linear)).item()
    bias_rank = torch.linalg.matrix_rank(torch.stack(constant)).item()
    return rank, bias_rank, sum(p.numel() for p in params)


CASES = [
    NetworkSpec((2, 3)),
    NetworkSpec((3, 2)),
    NetworkSpec((2, 3, 2)),
    NetworkSpec((3, 2, 3)),
    NetworkSpec((2, 3, 3, 2)),
    NetworkSpec((2, 2, 3, 2)),
    NetworkSpec((2, 3, 2), ((2,), ())),
    NetworkSpec((2, 2, 3, 2), ((2, 2), (3,), ())),
    NetworkSpec((3, 2, 2), ((2, 1, 2), ())),
]


@pytest.mark.parametrize("mode", ["np", "hnp"])
@pytest.mark.parametrize("spec", CASES, ids=str)
def test_layer_spans_exactly_the_equivariant_maps(spec, mode):
    maps, invariants = burnside_counts(spec, mode)
    rank, bias_rank, n_params = realised_dims(spec, mode)
    assert rank == maps
    assert bias_rank == invariants
    # No redundant parameters either: each one is an independent direction.
    assert n_params == maps + invariants


@pytest.mark.parametrize(
    ("spec", "mode", "expected"),
    [
        (NetworkSpec((2, 3, 2)), "np", 32),
        (NetworkSpec((2, 3, 3, 2)), "np", 62),
        (NetworkSpec((2, 3, 2)), "hnp", 74),
        (NetworkSpec((2, 3, 3, 2)), "hnp", 114),
    ],
)
def test_counts_match_the_paper(spec, mode, expected):
    assert burnside_counts(spec, mode)[0] == expected
    assert realised_dims(spec, mode)[0] == expected


@pytest.mark.parametrize(
    ("spec", "mode", "block"),
    [
        (NetworkSpec((2, 3, 2)), "hnp", "weights.layer1"),
        (NetworkSpec((2, 3, 2)), "hnp", "weights.global"),
        (NetworkSpec((2, 3, 3, 2)), "np", "bias"),
    ],
)
def test_control_a_layer_with_a_block_removed_misses_the_burnside_count(spec, mode, block):
    """The rank check itself, run on a broken layer, must fail to reach the count."""
    maps, invariants = burnside_counts(spec, mode)
    full = realised_dims(spec, mode)
    broken = realised_dims(spec, mode, removed=(block,))
    assert full[:2] == (maps, invariants)
    assert broken[0] < maps or broken[1] < invariants
    assert broken[2] < full[2]
