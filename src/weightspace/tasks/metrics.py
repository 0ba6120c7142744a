"""Evaluation metrics: rank correlation and regression errors, accuracy and confusion matrices.

Every function takes tensors, NumPy arrays or sequences, compares them as flat float64 vectors
(or integer labels), and returns a Python ``float`` (or a tensor for the confusion matrix).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "kendall_tau",
    "mae",
    "per_class_accuracy",
    "r2",
    "regression_metrics",
]

ArrayLike = Tensor | np.ndarray | Sequence[float]


def _vector(x: ArrayLike, name: str) -> np.ndarray:
    if isinstance(x, Tensor):
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim > 1 and arr.size == arr.shape[0]:
        arr = arr.reshape(-1)  # (N, 1) predictions beside (N,) targets
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a vector of shape (N,) or (N, 1), got {arr.shape}")
    return arr


def _pair(pred: ArrayLike, target: ArrayLike, who: str) -> tuple[np.ndarray, np.ndarray]:
    p, t = _vector(pred, f"{who}: pred"), _vector(target, f"{who}: target")
    if p.shape != t.shape:
        raise ValueError(f"{who}: pred has {p.shape[0]} entries, target has {t.shape[0]}")
    if p.size == 0:
        raise ValueError(f"{who}: pred and target are empty")
    return p, t


def kendall_tau(pred: ArrayLike, target: ArrayLike) -> float:
    """Kendall's τ-b rank correlation (``scipy.stats.kendalltau``), in [-1, 1].

    τ-b corrects for ties. It is NaN when either vector is constant or has one entry: no
    ranking is then defined, and a constant predictor must not look like a good one.

    Parameters
    ----------
    pred, target:
        ``(N,)`` or ``(N, 1)``.
    """
    from scipy.stats import kendalltau

    p, t = _pair(pred, target, "kendall_tau")
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(p, t).statistic)


def r2(pred: ArrayLike, target: ArrayLike) -> float:
    """Coefficient of determination ``1 - Σ(t - p)² / Σ(t - mean t)²``.

    1 is perfect, 0 is as good as predicting the mean, and it is negative when worse. NaN for a
    constant target (the ratio is undefined).

    Parameters
    ----------
    pred, target:
        ``(N,)`` or ``(N, 1)``.
    """
    p, t = _pair(pred, target, "r2")
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    if ss_tot == 0.0:
        return float("nan")
    return 1.0 - float(np.sum((t - p) ** 2)) / ss_tot


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error ``mean |p - t|``.

    Parameters
    ----------
    pred, target:
        ``(N,)`` or ``(N, 1)``.
    """
    p, t = _pair(pred, target, "mae")
    return float(np.mean(np.abs(p - t)))


def regression_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """``{"kendall_tau", "r2", "mae"}`` of predictions against targets."""
    return {
        "kendall_tau": kendall_tau(pred, target),
        "r2": r2(pred, target),
        "mae": mae(pred, target),
    }


def _labels(x: Tensor | np.ndarray | Sequence[int], name: str) -> Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().cpu()
    if t.ndim == 2:  # logits or scores: (N, num_classes)
        t = t.argmax(dim=1)
    if t.ndim != 1:
        raise ValueError(
            f"{name}: expected labels (N,) or scores (N, classes), got {tuple(t.shape)}"
        )
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise ValueError(f"{name}: expected integer class labels, got fractional values")
    return t.long()


def accuracy(
    pred: Tensor | np.ndarray | Sequence[int], target: Tensor | np.ndarray | Sequence[int]
) -> float:
    """Fraction of correct labels; ``pred`` may be labels ``(N,)`` or scores ``(N, classes)``."""
    p, t = _labels(pred, "accuracy: pred"), _labels(target, "accuracy: target")
    if p.shape != t.shape or p.numel() == 0:
        raise ValueError(
            f"accuracy: pred has {p.numel()} labels, target has {t.numel()} (need equal, nonzero)"
        )
    return float((p == t).double().mean())


def confusion_matrix(
    pred: Tensor | np.ndarray | Sequence[int],
    target: Tensor | np.ndarray | Sequence[int],
    num_classes: int | None = None,
) -> Tensor:
    """Counts ``C[i, j]`` of examples with true class i predicted as class j.

    Parameters
    ----------
    pred:
        Labels ``(N,)`` or scores ``(N, classes)`` (argmax is taken).
    target:
        Labels ``(N,)``.
    num_classes:
        Defaults to one more than the largest label seen.

    Returns
    -------
    ``(num_classes, num_classes)`` int64 tensor; rows are true classes, as in scikit-learn.
    """
    p, t = _labels(pred, "confusion_matrix: pred"), _labels(target, "confusion_matrix: target")
    if p.shape != t.shape:
        raise ValueError(f"confusion_matrix: pred has {p.numel()} labels, target has {t.numel()}")
    if num_classes is None:
        num_classes = int(max(p.max().item(), t.max().item())) + 1 if p.numel() else 0
    for name, labels in (("pred", p), ("target", t)):
        if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"confusion_matrix: {name} labels must lie in [0, {num_classes}), got "
                f"[{labels.min().item()}, {labels.max().item()}]"
            )
    flat = t * num_classes + p
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def per_class_accuracy(matrix: Tensor) -> list[float | None]:
    """Recall of each class from a confusion matrix (rows: true classes); ``None`` for a class
    with no examples."""
    support = matrix.sum(dim=1)
    return [float(matrix[i, i] / support[i]) if support[i] else None for i in range(len(matrix))]


def classification_metrics(
    logits: Tensor, labels: Tensor, classes: Sequence[str], *, prefix: str = ""
) -> dict[str, Any]:
    """``{prefix}accuracy``, ``{prefix}loss`` (cross-entropy), ``per_class_accuracy`` (class →
    recall, ``None`` for a class without examples), ``confusion_matrix`` (nested lists, rows:
    true classes), ``classes``, ``n_{prefix}`` and ``majority_accuracy`` (the share of the
    largest class: what a constant guess scores).

    Shapes
    ------
    - logits: ``(N, K)``; labels: ``(N,)`` in ``0..K-1``; classes: K names
    """
    logits, labels = logits.detach().float().cpu(), labels.detach().cpu().long()
    matrix = confusion_matrix(logits, labels, num_classes=len(classes))
    n = len(labels)
    return {
        f"{prefix}accuracy": accuracy(logits, labels),
        f"{prefix}loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        "per_class_accuracy": dict(zip(classes, per_class_accuracy(matrix))),
        "confusion_matrix": matrix.tolist(),
        "classes": list(classes),
        f"n_{prefix.rstrip('_') or 'examples'}": n,
        "majority_accuracy": float(matrix.sum(dim=1).max()) / n,
    }
