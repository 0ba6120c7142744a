"""Plots a person would rather look at than read: scatter, confusion matrix, image grids, bars.

Every function draws with matplotlib's object API on an Agg canvas (no display, no change of
the global backend) and writes its PNG through :func:`weightspace.io.atomic_path`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from weightspace.io import atomic_path

__all__ = [
    "accuracy_bars",
    "confusion",
    "curves",
    "image_blocks",
    "image_pairs",
    "input_usage",
    "layer_sparsity",
    "probe_points",
    "scatter",
]


def _figure(width: float, height: float, dpi: int = 110) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str], dpi: int | None = None) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **({"dpi": dpi} if dpi else {}))
    return path


def scatter(
    predicted: Tensor,
    actual: Tensor,
    path: str | os.PathLike[str],
    *,
    title: str = "",
    xlabel: str = "actual",
    ylabel: str = "predicted",
) -> Path:
    """Predicted against actual values, with the diagonal, to a PNG.

    Shapes
    ------
    - predicted, actual: ``(N,)``
    """
    fig = _figure(4.5, 4.5)
    ax = fig.add_subplot()
    a = torch.as_tensor(actual).double().reshape(-1).numpy()
    p = torch.as_tensor(predicted).double().reshape(-1).numpy()
    if a.shape != p.shape:
        raise ValueError(f"scatter: {len(p)} predictions for {len(a)} actual values")
    ax.scatter(a, p, s=10, alpha=0.6, edgecolors="none")
    lo = float(min(a.min(), p.min(), 0.0)) if len(a) else 0.0
    hi = float(max(a.max(), p.max(), 1.0)) if len(a) else 1.0
    ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1, linestyle="--")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def confusion(
    matrix: Tensor, classes: Sequence[str], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """A confusion matrix (rows: true class, columns: predicted) to a PNG.

    Cells are coloured by the fraction of their row and labelled with counts (up to 20 classes).

    Shapes
    ------
    - matrix: ``(K, K)`` counts; classes: K names
    """
    counts = torch.as_tensor(matrix).double()
    k = len(classes)
    if counts.shape != (k, k):
        raise ValueError(
            f"confusion: matrix has shape {tuple(counts.shape)}, expected ({k}, {k}) for "
            f"{k} classes"
        )
    rows = counts / counts.sum(dim=1, keepdim=True).clamp(min=1)
    size = 2.5 + 0.45 * k
    fig = _figure(size, size)
    ax = fig.add_subplot()
    image = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(k), [str(c) for c in classes], rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), [str(c) for c in classes], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                n = int(counts[i, j])
                if n:
                    colour = "white" if rows[i, j] > 0.5 else "black"
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def image_pairs(
    upper: Tensor,
    lower: Tensor,
    path: str | os.PathLike[str],
    *,
    upper_titles: Sequence[str] = (),
    lower_titles: Sequence[str] = (),
    title: str = "",
    columns: int = 8,
) -> Path:
    """Pairs of images, each ``upper[j]`` above ``lower[j]``, in rows of ``columns`` pairs.

    Pixels are in ``[-1, 1]`` (clamped); one channel is drawn in grey, three as RGB.

    Shapes
    ------
    - upper, lower: ``(N, C, H, W)`` with C 1 or 3
    """
    if upper.ndim != 4 or upper.shape != lower.shape:
        raise ValueError(
            f"image_pairs: expected two (N, C, H, W) tensors of one shape, got "
            f"{tuple(upper.shape)} and {tuple(lower.shape)}"
        )
    n = upper.shape[0]
    if n < 1:
        raise ValueError("image_pairs: no images to draw")
    cols = min(n, columns)
    pairs = math.ceil(n / cols)
    fig = _figure(1.3 * cols, 2.8 * pairs, dpi=100)
    for j in range(n):
        r, c = divmod(j, cols)
        for k, (img, names) in enumerate(((upper[j], upper_titles), (lower[j], lower_titles))):
            ax = fig.add_subplot(2 * pairs, cols, (2 * r + k) * cols + c + 1)
            shown = img.detach().float().cpu().clamp(-1, 1)
            if shown.shape[0] == 1:
                ax.imshow(shown[0].numpy(), cmap="gray", vmin=-1, vmax=1)
            else:
                ax.imshow((shown.permute(1, 2, 0) * 0.5 + 0.5).numpy())
            if j < len(names):
                ax.set_title(names[j], fontsize=7)
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi=100)


def image_blocks(
    blocks: Sequence[tuple[str, Sequence[Tensor]]],
    row_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    per_row: int = 2,
) -> Path:
    """Blocks of image columns, each titled, ``per_row`` blocks side by side; row ``r`` of every
    block shows its ``r``-th tensor, one image per column (e.g. original / target / edited, one
    block per model).

    Pixels are in ``[-1, 1]`` (clamped), one channel drawn in grey.

    Shapes
    ------
    - blocks: ``(name, [(N_b, 1, H, W)] * len(row_names))``
    """
    if not blocks:
        raise ValueError("image_blocks: no blocks to draw")
    for name, rows in blocks:
        if len(rows) != len(row_names) or any(t.ndim != 4 for t in rows):
            raise ValueError(
                f"image_blocks: block {name!r} needs {len(row_names)} tensors (N, 1, H, W), got "
                f"{[tuple(t.shape) for t in rows]}"
            )
        if len({t.shape[0] for t in rows}) != 1:
            raise ValueError(f"image_blocks: block {name!r} has rows of different lengths")
    width = max(rows[0].shape[0] for _, rows in blocks)
    across = min(per_row, len(blocks))
    down = math.ceil(len(blocks) / across)
    columns = across * width + across - 1  # one empty column between blocks
    lines = down * len(row_names)
    fig = _figure(0.9 * columns + 1.2, 1.0 * lines + 0.8, dpi=100)
    grid = fig.add_gridspec(lines, columns)
    for b, (name, rows) in enumerate(blocks):
        top, left = (b // across) * len(row_names), (b % across) * (width + 1)
        for r, images in enumerate(rows):
            for j in range(images.shape[0]):
                ax = fig.add_subplot(grid[top + r, left + j])
                shown = images[j].detach().float().cpu().clamp(-1, 1)
                ax.imshow(shown[0].numpy(), cmap="gray", vmin=-1, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0 and left == 0:
                    ax.set_ylabel(row_names[r], fontsize=7)
                if r == 0 and j == 0:
                    ax.set_title(name, fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return _save(fig, path, dpi=100)


def curves(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    log_x: bool = True,
) -> Path:
    """One line with markers per named series ``name → (x, y)``, to a PNG (log x by default)."""
    if not series:
        raise ValueError("curves: no series to plot")
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    for name, (x, y) in series.items():
        if len(x) != len(y):
            raise ValueError(f"curves: series {name!r} has {len(x)} x values and {len(y)} y values")
        ax.plot(list(x), list(y), marker="o", label=name)
    if log_x:
        ax.set_xscale("log")
        ticks = sorted({float(v) for x, _ in series.values() for v in x})
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.minorticks_off()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def probe_points(
    points: Tensor,
    background: Tensor,
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """Where a probe model looks: 2-D probe coordinates over an image, to a PNG.

    ``points`` are ``(row, column)`` coordinates in ``[-1, 1]`` (:func:`weightspace.data.inr.pixel_grid`'s
    convention); points outside the image are drawn at its border, hollow.

    Shapes
    ------
    - points: ``(N, 2)``; background: ``(H, W)``
    """
    p = torch.as_tensor(points).detach().double().cpu()
    image = torch.as_tensor(background).detach().double().cpu()
    if p.ndim != 2 or p.shape[1] != 2 or image.ndim != 2:
        raise ValueError(
            f"probe_points: expected (N, 2) points and an (H, W) image, got {tuple(p.shape)} and "
            f"{tuple(image.shape)}"
        )
    h, w = image.shape
    rows, cols = (p[:, 0] + 1) / 2 * (h - 1), (p[:, 1] + 1) / 2 * (w - 1)
    inside = (p.abs() <= 1).all(dim=1)
    fig = _figure(4.0, 4.2)
    ax = fig.add_subplot()
    ax.imshow(image.numpy(), cmap="gray")
    ax.scatter(cols[inside].numpy(), rows[inside].numpy(), s=14, c="tab:red", label="probe")
    if (~inside).any():
        ax.scatter(
            cols[~inside].clamp(0, w - 1).numpy(),
            rows[~inside].clamp(0, h - 1).numpy(),
            s=14,
            facecolors="none",
            edgecolors="tab:orange",
            label="outside the image",
        )
    ax.legend(fontsize=7, loc="lower right")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _finite_floats(values: Sequence[float], what: str, who: str) -> list[float]:
    out = [float(v) for v in values]
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise ValueError(f"{who}: {what} must be finite numbers, got {bad[0]!r}")
    return out


def accuracy_bars(
    names: Sequence[str],
    means: Sequence[float],
    stds: Sequence[float],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    ylabel: str = "test accuracy",
) -> Path:
    """One bar per method (e.g. dense / IMP / random / magnitude / predicted mask) with ``±std``
    error bars and its value written on it, to a PNG.

    The y-axis is zoomed to the data (bars do not start at 0), so that differences of a point or
    two show; the axis' lower limit is marked on it. Values are shown with three decimals when all
    are within ``[0, 1]`` (fractions) and one otherwise (percentages).

    Shapes
    ------
    - names, means, stds: ``K`` entries each
    """
    who = "accuracy_bars"
    k = len(names)
    if k == 0:
        raise ValueError(f"{who}: no bars to draw")
    if len(means) != k or len(stds) != k:
        raise ValueError(
            f"{who}: {k} names, {len(means)} means and {len(stds)} stds; expected one of each per bar"
        )
    m = _finite_floats(means, "means", who)
    e = _finite_floats(stds, "stds", who)
    if any(v < 0 for v in e):
        raise ValueError(f"{who}: stds must be >= 0, got {min(e)!r}")
    lo = min(a - b for a, b in zip(m, e))
    hi = max(a + b for a, b in zip(m, e))
    span = max(hi - lo, 0.02 * max(abs(hi), 1e-12), 1e-6)
    bottom, top = lo - 0.3 * span, hi + 0.25 * span
    if lo >= 0 and bottom < 0:
        bottom = 0.0
    digits = 3 if all(0.0 <= v <= 1.0 for v in m) else 1
    fig = _figure(max(3.5, 1.0 + 0.9 * k), 4.0)
    ax = fig.add_subplot()
    colours = [f"C{j % 10}" for j in range(k)]
    bars = ax.bar(range(k), m, yerr=e, capsize=4, color=colours, edgecolor="black", linewidth=0.5)
    labels = [f"{a:.{digits}f}\n±{b:.{digits}f}" for a, b in zip(m, e)]
    ax.bar_label(bars, labels=labels, label_type="center", fontsize=7, color="white")
    ax.set_xticks(range(k), [str(n) for n in names], rotation=20 if k > 4 else 0, fontsize=8)
    ax.set_ylim(bottom, top)
    ax.set_ylabel(f"{ylabel} (axis from {bottom:.{digits}f})" if bottom > 0 else ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def layer_sparsity(
    layers: Sequence[str],
    series: dict[str, Sequence[float]],
    path: str | os.PathLike[str],
    *,
    title: str = "",
    log_y: bool = True,
) -> Path:
    """Grouped bars of the fraction of weights kept in each layer, one bar per named mask, to a
    PNG (e.g. IMP against the predicted masks).

    The y-axis is logarithmic by default: at 95 % sparsity the kept fractions of a first layer
    and a last layer differ by an order of magnitude or more. A series with a zero falls back to
    a linear axis, where zero can be drawn.

    Shapes
    ------
    - layers: ``L`` names (e.g. ``"W1"``, ``"W2"``, ``"W3"``); each series: ``L`` fractions in
      ``[0, 1]``
    """
    who = "layer_sparsity"
    n = len(layers)
    if n == 0 or not series:
        raise ValueError(f"{who}: need at least one layer and one series")
    values: dict[str, list[float]] = {}
    for name, fractions in series.items():
        if len(fractions) != n:
            raise ValueError(
                f"{who}: series {name!r} has {len(fractions)} fractions for {n} layers"
            )
        v = _finite_floats(fractions, f"series {name!r}", who)
        if any(not 0.0 <= f <= 1.0 for f in v):
            raise ValueError(f"{who}: series {name!r} holds fractions outside [0, 1]: {v}")
        values[name] = v
    log = log_y and all(f > 0 for v in values.values() for f in v)
    s = len(values)
    width = 0.8 / s
    fig = _figure(max(4.0, 1.5 + 0.5 * n * s), 4.0)
    ax = fig.add_subplot()
    for j, (name, v) in enumerate(values.items()):
        x = [i - 0.4 + width * (j + 0.5) for i in range(n)]
        bars = ax.bar(x, v, width=width, label=name, color=f"C{j % 10}")
        ax.bar_label(bars, labels=[f"{f:.3g}" for f in v], fontsize=6, padding=1)
    ax.set_xticks(range(n), [str(name) for name in layers])
    if log:
        ax.set_yscale("log")
        low = min(f for v in values.values() for f in v)
        ax.set_ylim(low / 2, min(1.0, max(f for v in values.values() for f in v)) * 2)
    else:
        ax.set_ylim(0, max(max(v) for v in values.values()) * 1.15 or 1.0)
    ax.set_xlabel("layer")
    ax.set_ylabel("fraction of weights kept")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def input_usage(
    maps: dict[str, Tensor],
    path: str | os.PathLike[str],
    *,
    title: str = "",
) -> Path:
    """One heat map per named mask of how often each input pixel keeps a first-layer weight, to
    a PNG (e.g. IMP against the predicted masks: where in the image the kept weights lie).

    All maps share one colour scale, from 0 to the largest value of any map.

    Shapes
    ------
    - maps: each ``(H, W)``, finite values >= 0 (e.g. the kept share of W_1's column for each
      pixel, averaged over networks)
    """
    who = "input_usage"
    if not maps:
        raise ValueError(f"{who}: need at least one map")
    shown: dict[str, Tensor] = {}
    for name, m in maps.items():
        if not isinstance(m, Tensor) or m.ndim != 2 or m.numel() == 0:
            got = tuple(m.shape) if isinstance(m, Tensor) else type(m).__name__
            raise ValueError(f"{who}: map {name!r} must be a non-empty (H, W) tensor, got {got}")
        m = m.detach().double().cpu()
        if not bool(torch.isfinite(m).all()) or bool((m < 0).any()):
            raise ValueError(f"{who}: map {name!r} must hold finite values >= 0")
        shown[name] = m
    top = max(float(m.max()) for m in shown.values()) or 1.0
    n = len(shown)
    fig = _figure(1.9 * n + 1.0, 2.4)
    axes = [fig.add_subplot(1, n, j + 1) for j in range(n)]
    image = None
    for ax, (name, m) in zip(axes, shown.items()):
        image = ax.imshow(m.numpy(), cmap="viridis", vmin=0.0, vmax=top)
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    fig.colorbar(image, ax=axes, fraction=0.03, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=8)
    return _save(fig, path)
