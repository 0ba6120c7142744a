"""Evaluation metrics: rank correlation and regression errors, accuracy and confusion matrices.

The arithmetic is scikit-learn's (``r2_score``, ``mean_absolute_error``, ``accuracy_score``,
``confusion_matrix``, ``recall_score``) and SciPy's (``kendalltau``). What this module adds is
the same handling for every task: tensors, NumPy arrays or sequences are compared as flat
float64 vectors (or integer labels, argmax of scores), shapes are checked with errors that name
the function, and a metric that is undefined (a constant target, a class without examples) is
NaN or ``None``, never a number that looks good.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.stats import kendalltau
from sklearn.metrics import accuracy_score, mean_absolute_error, r2_score, recall_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
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
Labels = Tensor | np.ndarray | Sequence[int]


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
    p, t = _pair(pred, target, "kendall_tau")
    if p.size < 2 or np.ptp(p) == 0 or np.ptp(t) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(kendalltau(p, t).statistic)


def r2(pred: ArrayLike, target: ArrayLike) -> float:
    """Coefficient of determination ``1 - Σ(t - p)² / Σ(t - mean t)²`` (scikit-learn's).

    1 is perfect, 0 is as good as predicting the mean, and it is negative when worse. NaN for a
    constant target (the ratio is undefined; scikit-learn would report 0 or 1).

    Parameters
    ----------
    pred, target:
        ``(N,)`` or ``(N, 1)``.
    """
    p, t = _pair(pred, target, "r2")
    if np.ptp(t) == 0:
        return float("nan")
    return float(r2_score(t, p))


def mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error ``mean |p - t|`` (scikit-learn's).

    Parameters
    ----------
    pred, target:
        ``(N,)`` or ``(N, 1)``.
    """
    p, t = _pair(pred, target, "mae")
    return float(mean_absolute_error(t, p))


def regression_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """``{"kendall_tau", "r2", "mae"}`` of predictions against targets."""
    return {
        "kendall_tau": kendall_tau(pred, target),
        "r2": r2(pred, target),
        "mae": mae(pred, target),
    }


def _labels(x: Labels, name: str) -> Tensor:
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


def _label_pair(
    pred: Labels, target: Labels, who: str, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    p, t = _labels(pred, f"{who}: pred"), _labels(target, f"{who}: target")
    if p.shape != t.shape or p.numel() == 0:
        raise ValueError(
            f"{who}: pred has {p.numel()} labels, target has {t.numel()} (need equal, nonzero)"
        )
    if num_classes is None:
        num_classes = int(max(p.max().item(), t.max().item())) + 1
    for name, labels in (("pred", p), ("target", t)):
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(
                f"{who}: {name} labels must lie in [0, {num_classes}), got "
                f"[{labels.min().item()}, {labels.max().item()}]"
            )
    return p.numpy(), t.numpy(), num_classes


def accuracy(pred: Labels, target: Labels) -> float:
    """Fraction of correct labels; ``pred`` may be labels ``(N,)`` or scores ``(N, classes)``."""
    p, t = _labels(pred, "accuracy: pred"), _labels(target, "accuracy: target")
    if p.shape != t.shape or p.numel() == 0:
        raise ValueError(
            f"accuracy: pred has {p.numel()} labels, target has {t.numel()} (need equal, nonzero)"
        )
    return float(accuracy_score(t.numpy(), p.numpy()))


def confusion_matrix(pred: Labels, target: Labels, num_classes: int | None = None) -> Tensor:
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
    p, t, k = _label_pair(pred, target, "confusion_matrix", num_classes)
    return torch.from_numpy(sk_confusion_matrix(t, p, labels=np.arange(k)).astype(np.int64))


def per_class_accuracy(pred: Labels, target: Labels, num_classes: int) -> list[float | None]:
    """Recall of each class (the share of its examples predicted as it); ``None`` for a class
    with no examples."""
    p, t, k = _label_pair(pred, target, "per_class_accuracy", num_classes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recall = recall_score(t, p, labels=np.arange(k), average=None, zero_division=np.nan)
    return [None if math.isnan(r) else float(r) for r in recall]


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
    k, n = len(classes), len(labels)
    matrix = confusion_matrix(logits, labels, num_classes=k)
    return {
        f"{prefix}accuracy": accuracy(logits, labels),
        f"{prefix}loss": float(torch.nn.functional.cross_entropy(logits, labels)),
        "per_class_accuracy": dict(zip(classes, per_class_accuracy(logits, labels, k))),
        "confusion_matrix": matrix.tolist(),
        "classes": list(classes),
        f"n_{prefix.rstrip('_') or 'examples'}": n,
        "majority_accuracy": float(matrix.sum(dim=1).max()) / n,
    }
