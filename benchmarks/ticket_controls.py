"""An experiment behind RESULTS.md (issue 12), not part of the package: masks from a logistic
regression of the IMP masks on the init, the controls every winning-ticket NFN must beat.

Each weight tensor W_l gets its own model of P(kept) from ``|W_l| / std(|W_l|)``: a slope and
an offset (``--rule magnitude``), plus, with ``--rule position``, one offset per input pixel
(per column of W_1) and one per output class (per row of W_L). The offsets are what a learned
IO encoding can represent, and nothing else: the rule sees no row or column of the init beyond
its own entry. Everything is fit by maximum likelihood (L-BFGS, float64) on the ticket set's
training pairs, then the held-out inits are decoded exactly as ``train tickets`` decodes a
model's logits: each tensor's budget (``allocated_top_k``) filled with its top logits
(``--decoding top``) or a seeded Gumbel-top-k draw (``--decoding sample --seed S``), and trained
with the set's recipe and each network's own data order (:func:`train_masked`).

    python benchmarks/ticket_controls.py --tickets runs/tickets/fmnist --rule position \\
        --decoding sample --seed 0 [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from weightspace import WeightSpaceFeatures
from weightspace.data.tickets import TicketSet, load_tickets, train_masked
from weightspace.io import write_json
from weightspace.models.ticket_vae import allocated_top_k, mask_iou, sampled_top_k
from weightspace.tasks.tickets import first_layer_use

RULES = ("magnitude", "position")
DECODINGS = ("top", "sample")


class TensorLogistic:
    """``logit = a · |w| / s + b (+ offset along one axis)`` for one weight tensor.

    ``axis`` is the axis of ``(B, rows, cols)`` that carries an offset per index (2: columns,
    i.e. inputs of W_1; 1: rows, i.e. outputs of W_L), or ``None`` for none.
    """

    def __init__(self, scale: float, axis: int | None, size: int) -> None:
        self.scale, self.axis = scale, axis
        self.ab = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        self.offset = torch.zeros(size if axis is not None else 0, dtype=torch.float64)
        self.offset.requires_grad_(axis is not None)

    def logits(self, w: Tensor) -> Tensor:
        """Logits of the entries of ``w`` ``(B, rows, cols)``."""
        x = w.abs().double() / self.scale
        out = self.ab[0] * x + self.ab[1]
        if self.axis is not None:
            shape = [1, 1, 1]
            shape[self.axis] = -1
            out = out + self.offset.view(shape)
        return out

    def fit(self, w: Tensor, kept: Tensor) -> TensorLogistic:
        """Maximum likelihood on ``(w, kept)``, both ``(B, rows, cols)``."""
        params = [self.ab] + ([self.offset] if self.axis is not None else [])
        opt = torch.optim.LBFGS(params, max_iter=500, line_search_fn="strong_wolfe")
        y = kept.double()

        def closure() -> Tensor:
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(self.logits(w), y)
            loss.backward()
            return loss

        opt.step(closure)
        return self


def fit_rule(train: TicketSet, rule: str) -> list[TensorLogistic]:
    """One :class:`TensorLogistic` per weight tensor, fit on ``train``'s (init, IMP mask) pairs."""
    if rule not in RULES:
        raise ValueError(f"fit_rule: unknown rule {rule!r}; expected one of {RULES}")
    if train.spec.is_cnn:
        raise ValueError(f"fit_rule: ticket sets of MLPs only, got {train.spec}")
    models = []
    last = train.spec.num_layers - 1
    for k, (w, m) in enumerate(zip(train.inits.weights, train.masks.weights)):
        w, m = w[:, 0], m[:, 0]
        axis = None
        if rule == "position":
            axis = 2 if k == 0 else 1 if k == last else None
        size = w.shape[axis] if axis is not None else 0
        scale = float(w.abs().double().std())
        models.append(TensorLogistic(scale, axis, size).fit(w, m))
    return models


def rule_logits(
    models: Sequence[TensorLogistic], inits: WeightSpaceFeatures
) -> WeightSpaceFeatures:
    """The rule's logits for ``inits`` (1 channel), biases 0 (they are always kept)."""
    with torch.no_grad():
        weights = [m.logits(w[:, 0]).float().unsqueeze(1) for m, w in zip(models, inits.weights)]
    return WeightSpaceFeatures(weights, [torch.zeros_like(b) for b in inits.biases], inits.spec)


def run(tickets: str, rule: str, decoding: str, seed: int = 0) -> dict[str, Any]:
    """Fit the rule on the training split, decode the test split, train it; the results."""
    if decoding not in DECODINGS:
        raise ValueError(f"run: unknown decoding {decoding!r}; expected one of {DECODINGS}")
    data = load_tickets(tickets)
    train, test = data.part("train"), data.part("test")
    models = fit_rule(train, rule)
    logits = rule_logits(models, test.inits)
    if decoding == "top":
        masks = allocated_top_k(logits, test.sparsity)
    else:
        masks = sampled_top_k(logits, test.sparsity, seed=seed)
    init = [w[:, 0] for w in test.inits.weights] + [b[:, 0] for b in test.inits.biases]
    _, acc = train_masked(
        test.spec, init, test.seeds.tolist(), test.images(), test.recipe,
        masks=[w[:, 0] for w in masks.weights],
    )  # fmt: skip
    imp, rnd = float(test.accuracy["imp"].mean()), float(test.accuracy["random"].mean())
    mean = float(acc.mean())
    return {
        "tickets": tickets,
        "rule": rule,
        "decoding": decoding,
        "seed": seed,
        "n_test": len(test),
        "mask_test_accuracy": mean,
        "mask_test_accuracy_std": float(acc.std()),
        "imp_test_accuracy": imp,
        "random_test_accuracy": rnd,
        "gap_closed": (mean - rnd) / (imp - rnd),
        "iou_with_imp": float(mask_iou(masks, test.masks).mean()),
        "first_layer": first_layer_use(masks),
        "slopes": [float(m.ab.detach()[0]) for m in models],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", required=True, help="set from `weightspace tickets generate`")
    parser.add_argument("--rule", choices=RULES, default="position")
    parser.add_argument("--decoding", choices=DECODINGS, default="sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (--decoding sample)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args.tickets, args.rule, args.decoding, args.seed)
    result["command"] = "python benchmarks/ticket_controls.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    print(json.dumps(result, indent=2))
    if args.json:
        write_json(result, args.json)
    return result


if __name__ == "__main__":
    main()
