"""weightspace.train.siren: closed-form SIREN gradients and batched fits equal per-SIREN loops."""

from __future__ import annotations

import pytest
import torch

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.images import load_images
from weightspace.data.inr import SIREN_SPEC, init_sirens, pixel_grid, psnr, render, siren_module
from weightspace.train.fused import COMPILE_ENV
from weightspace.train.siren import _BatchedSiren, fit_sirens


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", limit_train=12, limit_test=12)


@pytest.mark.parametrize("grid", [False, True], ids=["direct", "angle-addition"])
@pytest.mark.parametrize("spec", [SIREN_SPEC, NetworkSpec((2, 5, 4, 3, 2))])
def test_closed_form_gradients_match_autograd(spec: NetworkSpec, grid: bool) -> None:
    g = torch.Generator().manual_seed(0)
    B, H, W = 3, 4, 6
    tensors = [t.double() for t in init_sirens(B, generator=g, spec=spec)]
    y = torch.rand(B, spec.widths[-1], H, W, generator=g, dtype=torch.float64) * 2 - 1
    params = [t.clone() for t in tensors]
    coords = pixel_grid(H, W, dtype=torch.float64)
    batch = _BatchedSiren(params, coords, grid=(H, W) if grid else None)
    assert (batch.axes is not None) == grid
    loss = batch.step_gradients(y.permute(0, 2, 3, 1).reshape(B, H * W, -1))
    leaves = [t.clone().unsqueeze(1).requires_grad_() for t in tensors]
    ref = (render(WeightSpaceFeatures.from_tensors(leaves), H, W) - y).square()
    ref = ref.mean(dim=(1, 2, 3))
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach(), atol=1e-12, rtol=0)
    for p, leaf in zip(params, leaves):
        torch.testing.assert_close(p.grad, leaf.grad[:, 0], atol=1e-12, rtol=0)


def test_grid_must_match_the_coordinates() -> None:
    params = [t.double() for t in init_sirens(2, generator=torch.Generator().manual_seed(0))]
    coords = pixel_grid(4, 6, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"not a 6x4 grid of 2D points \(expected \(24, 2\)\)"):
        _BatchedSiren(params, coords[:20], grid=(6, 4))
    with pytest.raises(ValueError, match="not a row-major grid"):
        _BatchedSiren(params, coords, grid=(6, 4))  # the same 24 points, read as 6 rows of 4
    with pytest.raises(ValueError, match="not a row-major grid"):
        _BatchedSiren(params, coords.view(4, 6, 2).transpose(0, 1).reshape(24, 2), grid=(4, 6))
    assert _BatchedSiren(params, coords.flip(0), grid=(4, 6)).axes is not None  # reversed axes


def _loop_fit(images: torch.Tensor, seeds: list[int], steps: int, lr: float):
    """The obviously correct version: one nn.Module and one torch.optim.Adam per image."""
    modules = []
    H, W = images.shape[2:]
    grid = pixel_grid(H, W, dtype=images.dtype)
    for seed, image in zip(seeds, images):
        module = siren_module(generator=torch.Generator().manual_seed(seed)).to(images.dtype)
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        for _ in range(steps):
            loss = (module(grid) - image.reshape(-1, 1)).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        modules.append(module)
    return WeightSpaceFeatures.from_modules(modules)


@pytest.mark.parametrize("compiled", ["1", "0"], ids=["compiled", "eager"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_batched_fit_equals_a_per_siren_loop(
    digits, dtype: torch.dtype, compiled: str, monkeypatch
) -> None:
    monkeypatch.setenv(COMPILE_ENV, compiled)  # the fused kernels, compiled or eager
    images = digits.train_x[:5].to(dtype)
    seeds = [11, 12, 13, 14, 15]
    features, scores = fit_sirens(images, seeds, steps=12, lr=1e-3, batch_networks=3)
    expected = _loop_fit(images, seeds, steps=12, lr=1e-3)
    for a, b in zip(features.tensors, expected.tensors):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # A control that must break: other seeds give other networks.
    other, _ = fit_sirens(images, [s + 100 for s in seeds], steps=12, lr=1e-3)
    assert (other.flatten() - features.flatten()).abs().max() > 1e-2
    # The recorded PSNR is that of the rendered final weights.
    torch.testing.assert_close(scores, psnr(render(features, 8, 8), images))


def test_fitting_reaches_a_high_psnr(digits) -> None:
    images = digits.train_x[:8]
    _, early = fit_sirens(images, list(range(8)), steps=5)
    _, late = fit_sirens(images, list(range(8)), steps=200)
    assert (late > early + 10).all()
    assert late.mean() > 35


def test_fit_sirens_errors(digits) -> None:
    images = digits.train_x[:2]
    with pytest.raises(ValueError, match=r"float \(B, C, H, W\) tensor"):
        fit_sirens(images[:, 0], [0, 1])
    with pytest.raises(ValueError, match="got 1 seeds for 2 images"):
        fit_sirens(images, [0])
    with pytest.raises(ValueError, match="2 inputs and 1 outputs"):
        fit_sirens(images, [0, 1], spec=NetworkSpec((2, 8, 3)))
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        fit_sirens(images, [0, 1], lr=0.0)
    with pytest.raises(ValueError, match="batch_networks must be an int >= 1"):
        fit_sirens(images, [0, 1], batch_networks=0)
    with pytest.raises(ValueError, match="seeds must be non-negative ints, got -1"):
        fit_sirens(images, [0, -1])
    with pytest.raises(ValueError, match=r"images hold no image \(B = 0\)"):
        fit_sirens(images[:0], [])
