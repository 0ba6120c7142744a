"""weightspace.train.optim: per-row optimizers equal one torch.optim optimizer per row."""

from __future__ import annotations

import pytest
import torch

from weightspace.train.optim import PerNetworkOptimizer

# Rows: their rule, learning rate and weight decay (applied to the first DECAYED columns).
ROWS = [
    ("sgd", 0.05, 0.01),
    ("sgd", 0.02, 0.0),
    ("adam", 0.01, 0.02),
    ("adam", 0.003, 0.0),
    ("rmsprop", 0.002, 0.005),
    ("adam", 0.004, 0.001),  # not contiguous with the other Adam rows: still correct
]
P, DECAYED = 7, 4


def torch_optimizer(rule: str, lr: float, wd: float, params: list[torch.Tensor], **constants):
    groups = [
        {"params": [params[0]], "weight_decay": wd},
        {"params": [params[1]], "weight_decay": 0.0},
    ]
    if rule == "sgd":
        return torch.optim.SGD(groups, lr=lr)
    if rule == "adam":
        return torch.optim.Adam(
            groups,
            lr=lr,
            betas=constants.get("adam_betas", (0.9, 0.999)),
            eps=constants.get("adam_eps", 1e-8),
        )
    return torch.optim.RMSprop(
        groups,
        lr=lr,
        alpha=constants.get("rmsprop_alpha", 0.99),
        eps=constants.get("rmsprop_eps", 1e-8),
    )


@pytest.mark.parametrize(
    "constants",
    [{}, {"adam_betas": (0.8, 0.99), "adam_eps": 1e-7, "rmsprop_alpha": 0.9, "rmsprop_eps": 1e-7}],
    ids=["torch-defaults", "keras-like"],
)
def test_rows_step_like_separate_torch_optimizers(constants) -> None:
    g = torch.Generator().manual_seed(0)
    B = len(ROWS)
    start = torch.randn(B, P, generator=g, dtype=torch.float64)
    params = start.clone()
    opt = PerNetworkOptimizer(
        params,
        [r for r, _, _ in ROWS],
        torch.tensor([lr for _, lr, _ in ROWS], dtype=torch.float64),
        weight_decay=torch.tensor([wd for _, _, wd in ROWS], dtype=torch.float64),
        decayed=DECAYED,
        **constants,
    )
    refs = []
    for b, (rule, lr, wd) in enumerate(ROWS):
        leaves = [
            start[b, :DECAYED].clone().requires_grad_(),
            start[b, DECAYED:].clone().requires_grad_(),
        ]
        refs.append((leaves, torch_optimizer(rule, lr, wd, leaves, **constants)))
    for _ in range(5):
        grad = torch.randn(B, P, generator=g, dtype=torch.float64)
        for b, (leaves, ref) in enumerate(refs):
            leaves[0].grad, leaves[1].grad = grad[b, :DECAYED].clone(), grad[b, DECAYED:].clone()
            ref.step()
        opt.step(grad)
    assert opt.steps == 5
    for b, (leaves, _) in enumerate(refs):
        expected = torch.cat([leaves[0].detach(), leaves[1].detach()])
        torch.testing.assert_close(params[b], expected, atol=1e-12, rtol=0, msg=f"row {b}")
    # A control that must break: the rows did move, each its own way.
    assert (params - start).abs().min(dim=1).values.gt(0).all()


def test_errors() -> None:
    p = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"params has shape \(3,\), expected \(B, P\)"):
        PerNetworkOptimizer(torch.zeros(3), ["sgd"], torch.ones(1))
    with pytest.raises(ValueError, match="1 optimizer names for 2 rows"):
        PerNetworkOptimizer(p, ["sgd"], torch.ones(2))
    with pytest.raises(ValueError, match=r"optimizers\[1\] is 'lamb'"):
        PerNetworkOptimizer(p, ["sgd", "lamb"], torch.ones(2))
    with pytest.raises(ValueError, match=r"lr has shape \(3,\), expected \(2,\)"):
        PerNetworkOptimizer(p, ["sgd", "adam"], torch.ones(3))
