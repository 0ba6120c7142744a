"""Image edits that INR editing learns to make in weight space (the NFN paper's §4).

Each edit runs OpenCV on uint8 images, as the paper's code does, so that targets match:

- ``"dilate"``: ``cv2.dilate`` with a 3×3 kernel of ones, one iteration (the paper's MNIST edit);
- ``"contrast"``: CLAHE with ``clipLimit=1.0`` and ``tileGridSize=(3, 3)``. The paper applies it
  to the L channel of CIFAR-10 images; our images are grayscale, so it is applied to them
  directly;
- ``"erode"``: ``cv2.erode`` with a 2×2 kernel of ones, one iteration;
- ``"sharpen"``: ``cv2.filter2D`` with the 3×3 kernel ``[[0, -1, 0], [-1, 5, -1], [0, -1, 0]]``
  (saturated to uint8).

:func:`edit_images` takes and returns images in [-1, 1], the SIRENs' pixel range; in between,
pixels are ``round((x + 1) / 2 · 255)`` as uint8, exactly the stored bytes for MNIST and
Fashion-MNIST.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["EDITS", "check_edit", "edit_images", "edit_uint8"]

#: The edits :func:`edit_images` knows.
EDITS: tuple[str, ...] = ("dilate", "contrast", "erode", "sharpen")
_SHARPEN = np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=np.float32)


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as err:  # a dependency; only a broken install lacks it
        raise ImportError("image edits need OpenCV: pip install opencv-python-headless") from err
    return cv2


def _operations() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    cv2 = _cv2()
    clahe = cv2.createCLAHE(clipLimit=1.0, tileGridSize=(3, 3))
    return {
        "dilate": lambda im: cv2.dilate(im, np.ones((3, 3), np.uint8), iterations=1),
        "contrast": clahe.apply,
        "erode": lambda im: cv2.erode(im, np.ones((2, 2), np.uint8), iterations=1),
        "sharpen": lambda im: cv2.filter2D(im, -1, _SHARPEN),
    }


def check_edit(edit: object, who: str = "edit") -> str:
    """``edit`` if it is one of :data:`EDITS`, else ``ValueError`` naming them."""
    if edit not in EDITS:
        raise ValueError(f"{who}: unknown edit {edit!r}; expected one of {EDITS}")
    return str(edit)


def edit_uint8(images: np.ndarray, edit: str) -> np.ndarray:
    """Apply ``edit`` to each ``(H, W)`` uint8 image of ``images`` (``(N, H, W)``)."""
    op = _operations()[check_edit(edit, "edit_uint8")]
    if images.dtype != np.uint8 or images.ndim != 3:
        raise ValueError(
            f"edit_uint8: images are {images.dtype} of shape {images.shape}; expected uint8 "
            "(N, H, W)"
        )
    out = np.empty_like(images)
    for j, image in enumerate(images):
        out[j] = op(np.ascontiguousarray(image))
    return out


def edit_images(images: Tensor, edit: str) -> Tensor:
    """The edited images, in [-1, 1] like the input.

    Shapes
    ------
    - images: ``(N, 1, H, W)`` in [-1, 1]
    - returns: ``(N, 1, H, W)`` float32 in [-1, 1]
    """
    check_edit(edit, "edit_images")
    if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"edit_images: images have shape {shape}; expected (N, 1, H, W)")
    x = images.detach().double().cpu()
    if x.numel() and not (x.min() >= -1 and x.max() <= 1):
        raise ValueError(
            f"edit_images: pixels span [{float(x.min())}, {float(x.max())}]; expected [-1, 1]"
        )
    raw = torch.round((x[:, 0] + 1) / 2 * 255).to(torch.uint8).numpy()
    edited = torch.from_numpy(edit_uint8(raw, edit).astype(np.float64))
    return (edited / 255 * 2 - 1).to(torch.float32).unsqueeze(1)
