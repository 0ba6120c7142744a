"""Per-network SGD, Adam and RMSprop over the rows of one ``(B, P)`` parameter tensor.

Training B small networks at once (a zoo chunk) keeps every network's parameters in one row of a
``(B, P)`` tensor. Each network has its own optimizer, learning rate and weight decay, and the
update must equal B separate ``torch.optim`` optimizers. Rows that share a rule are contiguous
(the caller sorts networks by optimizer), so each rule updates its block of rows with a few
whole-tensor operations instead of B small optimizer steps.

The rules are PyTorch's (``torch.optim.SGD`` without momentum, ``Adam``, ``RMSprop`` without
momentum or centering); weight decay is added to the gradient of the decayed columns before the
rule, as ``torch.optim``'s ``weight_decay`` does for a parameter group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["OPTIMIZERS", "PerNetworkOptimizer"]

#: The rules :class:`PerNetworkOptimizer` knows.
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "rmsprop")


class PerNetworkOptimizer:
    """One optimizer per row of a ``(B, P)`` parameter tensor, updated in place.

    Parameters
    ----------
    params:
        ``(B, P)``: row b holds network b's parameters (updated in place by :meth:`step`).
    optimizers:
        B rule names from :data:`OPTIMIZERS`. Rows sharing a rule should be contiguous (each run
        of equal names is one block update; any order is correct).
    lr:
        ``(B,)`` learning rates.
    weight_decay:
        ``(B,)`` decay coefficients, applied to the first ``decayed`` columns (``g += wd * p``);
        ``None`` for none.
    decayed:
        How many leading columns carry weight decay (e.g. the weights, not the biases); ``None``
        for all.
    adam_betas, adam_eps, rmsprop_alpha, rmsprop_eps:
        The rules' constants (PyTorch's defaults unless given).

    Shapes
    ------
    - :meth:`step`: ``grad`` ``(B, P)``, consumed (weight decay is added into it).
    """

    def __init__(
        self,
        params: Tensor,
        optimizers: Sequence[str],
        lr: Tensor,
        *,
        weight_decay: Tensor | None = None,
        decayed: int | None = None,
        adam_betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        rmsprop_alpha: float = 0.99,
        rmsprop_eps: float = 1e-8,
    ) -> None:
        if params.ndim != 2:
            raise ValueError(
                f"PerNetworkOptimizer: params has shape {tuple(params.shape)}, expected (B, P)"
            )
        B = params.shape[0]
        for name, value in (("lr", lr), ("weight_decay", weight_decay)):
            if value is not None and tuple(value.shape) != (B,):
                raise ValueError(
                    f"PerNetworkOptimizer: {name} has shape {tuple(value.shape)}, expected ({B},)"
                )
        if len(optimizers) != B:
            raise ValueError(
                f"PerNetworkOptimizer: {len(optimizers)} optimizer names for {B} rows; expected one "
                "per row"
            )
        for b, kind in enumerate(optimizers):
            if kind not in OPTIMIZERS:
                raise ValueError(
                    f"PerNetworkOptimizer: optimizers[{b}] is {kind!r}, expected one of {OPTIMIZERS}"
                )
        self.params = params
        self.lr = lr
        self.weight_decay = weight_decay
        self.decayed = slice(0, params.shape[1] if decayed is None else decayed)
        self.adam_betas = adam_betas
        self.adam_eps = adam_eps
        self.rmsprop_alpha = rmsprop_alpha
        self.rmsprop_eps = rmsprop_eps
        # Runs of consecutive rows sharing a rule: (rule, rows).
        self.runs: list[tuple[str, slice]] = []
        for b, kind in enumerate(optimizers):
            if self.runs and self.runs[-1][0] == kind:
                self.runs[-1] = (kind, slice(self.runs[-1][1].start, b + 1))
            else:
                self.runs.append((kind, slice(b, b + 1)))
        kinds = set(optimizers)
        self._m = torch.zeros_like(params) if "adam" in kinds else None
        self._v = torch.zeros_like(params) if "adam" in kinds else None
        self._s = torch.zeros_like(params) if "rmsprop" in kinds else None
        self.steps = 0

    @torch.no_grad()
    def step(self, grad: Tensor) -> None:
        """One step of every row's optimizer; ``grad`` is the ``(B, P)`` gradient (consumed)."""
        self.steps += 1
        t = self.steps
        b1, b2 = self.adam_betas
        p = self.params
        if self.weight_decay is not None:
            w = self.decayed
            grad[:, w].addcmul_(self.weight_decay[:, None], p[:, w])
        for kind, rows in self.runs:
            gk, lr = grad[rows], self.lr[rows, None]
            if kind == "sgd":
                direction = gk
            elif kind == "adam":
                assert self._m is not None and self._v is not None
                m, v = self._m[rows], self._v[rows]
                m.mul_(b1).add_(gk, alpha=1 - b1)
                v.mul_(b2).addcmul_(gk, gk, value=1 - b2)
                # torch.optim.Adam: (m / (1 - b1^t)) / (sqrt(v) / sqrt(1 - b2^t) + eps)
                direction = (m / (1 - b1**t)) / (v.sqrt() / math.sqrt(1 - b2**t) + self.adam_eps)
            else:
                assert self._s is not None
                alpha = self.rmsprop_alpha
                s = self._s[rows]
                s.mul_(alpha).addcmul_(gk, gk, value=1 - alpha)
                direction = gk / (s.sqrt() + self.rmsprop_eps)
            p[rows].sub_(lr * direction)
