"""weightspace.data.edits: the image edits INR editing learns, checked against independent code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from weightspace.data.edits import EDITS, edit_images, edit_uint8
from weightspace.data.images import load_images


@pytest.fixture(scope="module")
def mnist_uint8() -> np.ndarray:
    """64 real MNIST images as their stored uint8 bytes."""
    x = load_images("mnist", limit_train=64, limit_test=1).train_x
    return torch.round((x[:, 0].double() + 1) / 2 * 255).to(torch.uint8).numpy()


def test_dilate_is_the_3x3_maximum(mnist_uint8) -> None:
    expected = np.stack([ndimage.grey_dilation(im, size=(3, 3)) for im in mnist_uint8])
    out = edit_uint8(mnist_uint8, "dilate")
    assert np.array_equal(out, expected)
    assert (out >= mnist_uint8).all() and (out != mnist_uint8).any()


def _window(images: np.ndarray, rows: range, cols: range, reduce) -> np.ndarray:
    """Brute force: reduce over the in-bounds pixels at offsets ``rows`` × ``cols``."""
    n, h, w = images.shape
    out = np.empty_like(images)
    for i in range(h):
        for j in range(w):
            r = [i + d for d in rows if 0 <= i + d < h]
            c = [j + d for d in cols if 0 <= j + d < w]
            out[:, i, j] = reduce(images[:, r][:, :, c].reshape(n, -1), axis=1)
    return out


def test_erode_is_the_2x2_minimum_anchored_at_its_centre(mnist_uint8) -> None:
    # OpenCV anchors an even kernel at (1, 1): pixel (i, j) sees rows i-1..i, columns j-1..j.
    expected = _window(mnist_uint8, range(-1, 1), range(-1, 1), np.min)
    out = edit_uint8(mnist_uint8, "erode")
    assert np.array_equal(out, expected)
    assert (out <= mnist_uint8).all()


def test_sharpen_is_the_laplacian_kernel_with_mirrored_borders(mnist_uint8) -> None:
    kernel = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float64)
    raw = np.stack(
        [ndimage.correlate(im.astype(np.float64), kernel, mode="mirror") for im in mnist_uint8]
    )
    assert np.array_equal(edit_uint8(mnist_uint8, "sharpen"), np.clip(raw, 0, 255).astype(np.uint8))


def test_contrast_stretches_a_dull_image_and_keeps_a_flat_one(mnist_uint8) -> None:
    dull = (100 + mnist_uint8.astype(np.int64) * 50 // 255).astype(np.uint8)  # pixels in 100..150
    out = edit_uint8(dull, "contrast")
    assert out.dtype == np.uint8 and out.shape == dull.shape
    spread = out.reshape(len(out), -1).std(axis=1) / dull.reshape(len(dull), -1).std(axis=1)
    assert (spread > 1.2).all()
    # Local, not global: the same dull image pasted beside a bright one changes its result.
    wide = np.concatenate([dull, np.full_like(dull, 250)], axis=2)
    assert not np.array_equal(edit_uint8(wide, "contrast")[:, :, :28], out)
    flat = np.full((2, 28, 28), 77, np.uint8)
    assert np.ptp(edit_uint8(flat, "contrast")) == 0


def test_edit_images_works_in_the_sirens_pixel_range(mnist_uint8) -> None:
    images = torch.from_numpy(mnist_uint8.astype(np.float64) / 255 * 2 - 1).unsqueeze(1).float()
    for edit in EDITS:
        out = edit_images(images, edit)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert out.min() >= -1 and out.max() <= 1
        expected = edit_uint8(mnist_uint8, edit).astype(np.float64) / 255 * 2 - 1
        assert torch.allclose(out[:, 0].double(), torch.from_numpy(expected), atol=1e-6)
    # The uint8 round trip is exact on stored MNIST bytes: an edit that moves nothing (dilating
    # a black image) returns the input.
    black = -torch.ones(3, 1, 28, 28)
    assert torch.equal(edit_images(black, "dilate"), black)


def test_bad_input_is_named() -> None:
    images = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"unknown edit 'blur'.*dilate"):
        edit_images(images, "blur")
    with pytest.raises(ValueError, match=r"shape \(2, 8, 8\); expected \(N, 1, H, W\)"):
        edit_images(images[:, 0], "dilate")
    with pytest.raises(ValueError, match=r"span \[0.0, 2.0\]; expected \[-1, 1\]"):
        edit_images(images + torch.tensor([0.0, 2.0]).repeat(32)[:64].reshape(1, 1, 8, 8), "dilate")
    with pytest.raises(ValueError, match="expected uint8"):
        edit_uint8(np.zeros((2, 8, 8), np.float32), "dilate")
