"""Fitting many SIRENs at once: closed-form gradients in fixed buffers, one Adam over all.

:func:`fit_sirens` fits B SIRENs (:mod:`weightspace.data.inr`) at once: the weights are stacked
``(B, …)`` tensors, every step sees the whole image, and one ``torch.optim.Adam`` runs over the
stacked tensors. Adam acts entrywise and the summed loss gives each network exactly its own
gradient, so this *is* B independent fits. Gradients are computed in closed form into
preallocated buffers (:class:`_BatchedSiren`: a SIREN is small, and autograd and allocation would
dominate; BENCHMARKS.md compares the two). The tests check the gradients against autograd through
:func:`weightspace.functional.forward`, and the whole fit against a per-SIREN ``nn.Module`` loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from weightspace.data.inr import (
    DEFAULT_LR,
    DEFAULT_STEPS,
    OMEGA_0,
    SIREN_SPEC,
    init_sirens,
    pixel_grid,
    psnr,
    render,
)
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.train.batched import progress_bar
from weightspace.train.fused import FusedKernel

__all__ = ["ADAM_BETAS", "ADAM_EPS", "fit_sirens"]

#: ``torch.optim.Adam``'s defaults, written out because the per-SIREN reference must match them.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class _BatchedSiren:
    """Closed-form loss gradients of B SIRENs on a shared coordinate grid, in fixed buffers.

    ``u_i = ω0 (h_{i-1} W_iᵀ + b_i)``, ``h_i = sin(u_i)`` for hidden layers, ``out = h_{L-1}
    W_Lᵀ + b_L``; loss per network ``mean((out - y)²)``. Backward: ``δ_L = 2 (out - y) / (N C)``,
    ``∂W_i = δ_iᵀ h_{i-1}``, ``∂b_i = Σ_n δ_i``, ``δ_{i-1} = (δ_i W_i) ⊙ ω0 cos(u_{i-1})``.
    The cosines overwrite the pre-activations, and each δ overwrites the activation it follows.

    With ``grid=(H, W)`` the coordinates are :func:`~weightspace.data.inr.pixel_grid`'s, and
    the first layer's sines and cosines come from those of its two axes by the angle-addition
    formulas: ``u = A_r + C_c`` with ``A_r = ω0 (r w_0 + b)`` and ``C_c = ω0 c w_1``, so
    ``sin u = sin A cos C + cos A sin C`` and ``cos u = cos A cos C − sin A sin C``. That
    evaluates ``H + W`` sines and cosines per neuron instead of ``H W``: the transcendental
    functions dominate the step otherwise (BENCHMARKS.md). Exact in real arithmetic; in floating
    point as close to the true values as the direct way.
    """

    def __init__(
        self, params: Sequence[Tensor], coords: Tensor, grid: tuple[int, int] | None = None
    ) -> None:
        L = len(params) // 2
        self.weights, self.biases = list(params[:L]), list(params[L:])
        B = self.weights[0].shape[0]
        N = coords.shape[0]
        self.axes = None if grid is None else _grid_axes(coords, grid)
        self.x = coords.expand(B, N, coords.shape[1])
        # ∂W_1 as xᵀ δ_1 then transposed: faster than δ_1ᵀ x for 2 inputs.
        self.xT = coords.T.contiguous().expand(B, coords.shape[1], N)
        self.g1 = self.weights[0].new_empty(B, coords.shape[1], self.weights[0].shape[1])
        empty = self.weights[0].new_empty
        widths = [w.shape[1] for w in self.weights]
        self.u = [empty(B, N, n) for n in widths[:-1]]  # pre-activations, then ω0-free cosines
        self.h = [empty(B, N, n) for n in widths[:-1]]  # activations, then δ of the layer
        self.out = empty(B, N, widths[-1])
        for p in params:
            p.grad = torch.empty_like(p)

    @torch.no_grad()
    def step_gradients(self, target: Tensor) -> Tensor:
        """Write the gradients into ``.grad``; return the ``(B,)`` losses before the step.

        ``target`` is ``(B, N, C)``.
        """
        L = len(self.weights)
        h_prev = self.x
        for i in range(L - 1):
            w, b = self.weights[i], self.biases[i]
            if i == 0 and self.axes is not None:
                self._first_layer_on_grid(w, b)
                h_prev = self.h[0]
                continue
            u = torch.baddbmm(
                b.unsqueeze(1),
                h_prev,
                w.transpose(1, 2).contiguous(),
                beta=OMEGA_0,
                alpha=OMEGA_0,
                out=self.u[i],
            )
            _SIN_COS(u, self.h[i])
            h_prev = self.h[i]
        w, b = self.weights[-1], self.biases[-1]
        delta = torch.baddbmm(b.unsqueeze(1), h_prev, w.transpose(1, 2).contiguous(), out=self.out)
        delta.sub_(target)
        loss = delta.square().mean(dim=(1, 2))
        delta.mul_(2.0 / (delta.shape[1] * delta.shape[2]))
        for i in range(L - 1, -1, -1):
            torch.sum(delta, dim=1, out=self.biases[i].grad)
            if i == 0:
                torch.bmm(self.xT, delta, out=self.g1)
                self.weights[0].grad.copy_(self.g1.transpose(1, 2))
                break
            torch.bmm(delta.transpose(1, 2), self.h[i - 1], out=self.weights[i].grad)
            scaled = self.weights[i] * OMEGA_0  # (B, n_i, n_{i-1})
            if scaled.shape[1] == 1:  # an outer product: cheaper as a broadcast multiply
                nxt = torch.mul(delta, scaled, out=self.h[i - 1])
            else:
                nxt = torch.bmm(delta, scaled, out=self.h[i - 1])
            delta = nxt.mul_(self.u[i - 1])
        return loss

    def _first_layer_on_grid(self, w: Tensor, b: Tensor) -> None:
        """``h_1 = sin u_1`` and ``u_1 ← cos u_1`` by angle addition over the grid's axes."""
        assert self.axes is not None
        rows, cols = self.axes
        B, n = b.shape
        H, W = rows.shape[0], cols.shape[0]
        sin_a, cos_a, sin_c, cos_c = _AXES_SIN_COS(b, rows, cols, w)
        h, u = self.h[0].view(B, H, W, n), self.u[0].view(B, H, W, n)
        _ANGLE_SUM(sin_a[:, :, None], cos_a[:, :, None], sin_c[:, None], cos_c[:, None], h, u)


def _sin_cos(u: Tensor, h: Tensor) -> None:
    """``h ← sin u`` and ``u ← cos u`` in one pass (the fused kernel)."""
    h.copy_(torch.sin(u))
    u.copy_(torch.cos(u))


def _sin_cos_eager(u: Tensor, h: Tensor) -> None:
    torch.sin(u, out=h)
    u.cos_()


def _axes_sin_cos(
    b: Tensor, rows: Tensor, cols: Tensor, w: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sines and cosines of ``A = ω0 (r w[..., 0] + b)`` ``(B, H, n)`` and ``C = ω0 c w[..., 1]``
    ``(B, W, n)``, the first layer's pre-activations along the grid's two axes.

    ``w`` is passed whole (``(B, n, 2)``): its columns as arguments would be strided views, and
    compiling would guard on their strides."""
    a = (b[:, None, :] + rows[None, :, None] * w[:, None, :, 0]) * OMEGA_0
    c = (cols[None, :, None] * w[:, None, :, 1]) * OMEGA_0
    return a.sin(), a.cos(), c.sin(), c.cos()


def _axes_sin_cos_eager(
    b: Tensor, rows: Tensor, cols: Tensor, w: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    a = torch.addcmul(b[:, None, :], rows[None, :, None], w[:, None, :, 0]).mul_(OMEGA_0)
    c = torch.mul(cols[None, :, None], w[:, None, :, 1]).mul_(OMEGA_0)
    return a.sin(), a.cos(), c.sin(), c.cos()


def _angle_sum(
    sin_a: Tensor, cos_a: Tensor, sin_c: Tensor, cos_c: Tensor, h: Tensor, u: Tensor
) -> None:
    """``h ← sin(A + C)`` and ``u ← cos(A + C)`` from the broadcast sines and cosines of A and C,
    in one pass (the fused kernel)."""
    h.copy_(sin_a * cos_c + cos_a * sin_c)
    u.copy_(cos_a * cos_c - sin_a * sin_c)


def _angle_sum_eager(
    sin_a: Tensor, cos_a: Tensor, sin_c: Tensor, cos_c: Tensor, h: Tensor, u: Tensor
) -> None:
    torch.mul(sin_a, cos_c, out=h).addcmul_(cos_a, sin_c)
    torch.mul(cos_a, cos_c, out=u).addcmul_(sin_a, sin_c, value=-1)


# Compiled, inductor's vectorised sin and cos run faster than eager's on this fitter's
# pre-activations, and each kernel writes its two outputs in one pass (BENCHMARKS.md).
_SIN_COS = FusedKernel(_sin_cos, "siren sin/cos", eager=_sin_cos_eager)
_AXES_SIN_COS = FusedKernel(_axes_sin_cos, "siren first-layer axes", eager=_axes_sin_cos_eager)
_ANGLE_SUM = FusedKernel(_angle_sum, "siren first layer", eager=_angle_sum_eager)


def _grid_axes(coords: Tensor, grid: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The row and column axes of ``coords``, which must be the ``(H * W, 2)`` row-major grid
    of those axes (as :func:`~weightspace.data.inr.pixel_grid` makes it)."""
    H, W = grid
    if coords.shape != (H * W, 2):
        raise ValueError(
            f"_BatchedSiren: coords of shape {tuple(coords.shape)} are not a {H}x{W} grid of 2D "
            f"points (expected ({H * W}, 2))"
        )
    points = coords.view(H, W, 2)
    rows, cols = points[:, 0, 0].contiguous(), points[0, :, 1].contiguous()
    if not (
        torch.equal(points[..., 0], rows[:, None].expand(H, W))
        and torch.equal(points[..., 1], cols[None, :].expand(H, W))
    ):
        raise ValueError("_BatchedSiren: coords are not a row-major grid (row, column) of axes")
    return rows, cols


def fit_sirens(
    images: Tensor,
    seeds: Sequence[int],
    *,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    batch_networks: int = 32,
    spec: NetworkSpec = SIREN_SPEC,
    device: torch.device | str | None = None,
    progress: bool = False,
    progress_position: int = 0,
) -> tuple[WeightSpaceFeatures, Tensor]:
    """Fit one SIREN per image, ``batch_networks`` at a time, with Adam on stacked weights.

    Network b starts from :func:`init_sirens` drawn from ``torch.Generator().manual_seed(
    seeds[b])`` and takes ``steps`` Adam steps (``torch.optim.Adam``, lr ``lr``, betas (0.9,
    0.999), eps 1e-8) on the mean squared error over all pixels of its image. Networks are
    independent: the result equals a per-SIREN ``nn.Module`` loop (to rounding), whatever
    ``batch_networks`` is. The initialisations are drawn on the CPU and copied to the device,
    so they are the same on every device.

    Parameters
    ----------
    images:
        ``(B, C, H, W)`` pixel values in [-1, 1]; their dtype is the fit's dtype.
    seeds:
        B non-negative ints, one initialisation seed per image.
    steps, lr:
        Adam steps (each on the full image) and learning rate.
    batch_networks:
        Networks fitted at once (a speed/memory trade-off only).
    spec:
        Dense weight space with 2 inputs and C outputs.
    device:
        Where to fit (``None``: the device of ``images``); ``images`` are copied there.
    progress:
        Show a tqdm bar over steps.

    Returns
    -------
    (features, psnr):
        The fitted networks, ``(B, 1, …)`` on ``spec``, and their :func:`psnr` ``(B,)`` in dB
        against ``images``, from :func:`render` of the final weights; both on ``device``.

    Raises
    ------
    ValueError
        For images that are not ``(B, C, H, W)`` floats, seeds that do not match B, or a
        ``spec`` that does not map 2 coordinates to C values.
    """
    if not isinstance(images, Tensor) or images.ndim != 4 or not images.is_floating_point():
        what = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"fit_sirens: images must be a float (B, C, H, W) tensor, got {what}")
    B, C, H, W = images.shape
    if B == 0:
        raise ValueError("fit_sirens: images hold no image (B = 0)")
    seeds = [int(s) for s in seeds]
    if any(s < 0 for s in seeds):
        raise ValueError(f"fit_sirens: seeds must be non-negative ints, got {min(seeds)}")
    if len(seeds) != B:
        raise ValueError(f"fit_sirens: got {len(seeds)} seeds for {B} images; expected one each")
    if spec.is_cnn or spec.widths[0] != 2 or spec.widths[-1] != C:
        raise ValueError(
            f"fit_sirens: {spec} must be dense with 2 inputs and {C} outputs (image channels)"
        )
    for name, value, low in (("steps", steps, 0), ("batch_networks", batch_networks, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"fit_sirens: {name} must be an int >= {low}, got {value!r}")
    if not (isinstance(lr, int | float) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"fit_sirens: lr must be a positive finite number, got {lr!r}")
    if device is not None:
        images = images.to(device)
    coords = pixel_grid(H, W, dtype=images.dtype, device=images.device)
    targets = images.permute(0, 2, 3, 1).reshape(B, H * W, C)
    parts: list[list[Tensor]] = []
    bar = progress_bar(
        total=steps * math.ceil(B / batch_networks),
        desc="fit SIRENs",
        unit="step",
        leave=False,
        disable=not progress,
        position=progress_position,
    )
    with bar:
        for start in range(0, B, batch_networks):
            stop = min(start + batch_networks, B)
            init = [
                init_sirens(1, generator=torch.Generator().manual_seed(s), spec=spec)
                for s in seeds[start:stop]
            ]
            params = [
                torch.cat(col).to(device=images.device, dtype=images.dtype) for col in zip(*init)
            ]
            batch = _BatchedSiren(params, coords, grid=(H, W))
            # Adam is entrywise: one optimizer over the stacked tensors is independent fits.
            opt = torch.optim.Adam(params, lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, fused=True)
            target = targets[start:stop]
            for _ in range(steps):
                batch.step_gradients(target)
                opt.step()
                bar.update(1)
            parts.append([p.detach() for p in params])
    tensors = [torch.cat(col).unsqueeze(1) for col in zip(*parts)]
    features = WeightSpaceFeatures.from_tensors(tensors, spec)
    with torch.no_grad():
        scores = psnr(render(features, H, W), images)
    return features, scores
