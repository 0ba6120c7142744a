"""Offline image datasets and the IDX parser."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from weightspace.data import images
from weightspace.data.images import (
    DATASETS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEFAULT_ROOT,
    ImageData,
    load_images,
    read_idx,
)

IDX_CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """The IDX encoding of ``array``, written from the format's definition."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(IDX_CODES[code]).tobytes()


def write(path: Path, data: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# ------------------------------------------------------------------- read_idx
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("code", sorted(IDX_CODES))
def test_read_idx_round_trips_every_type(tmp_path, code, compress):
    rng = np.random.default_rng(code)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(IDX_CODES[code])
    if code == 0x08:
        array = rng.integers(0, 256, size=(3, 4, 5)).astype(">u1")
    path = write(tmp_path / "x.idx", idx_bytes(array, code), compress)
    out = read_idx(path)
    assert out.shape == (3, 4, 5)
    assert out.dtype == np.dtype(IDX_CODES[code]).newbyteorder("=")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_reads_known_bytes(tmp_path):
    # Written byte by byte: a (2, 3) int16 array, big-endian.
    data = b"\x00\x00\x0b\x02" + b"\x00\x00\x00\x02\x00\x00\x00\x03"
    data += b"\x00\x01\xff\xff\x01\x00\x00\x00\x7f\xff\x80\x00"
    out = read_idx(write(tmp_path / "k.idx", data, False))
    np.testing.assert_array_equal(out, [[1, -1, 256], [0, 32767, -32768]])


def test_read_idx_one_dimensional_labels(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    out = read_idx(write(tmp_path / "l.idx.gz", idx_bytes(labels, 0x08), True))
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_bad_magic(tmp_path, compress):
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8), 0x08))
    data[0] = 1
    with pytest.raises(ValueError, match=r"bad\.idx.*magic number 0x01000802.*two zero bytes"):
        read_idx(write(tmp_path / "bad.idx", bytes(data), compress))


def test_read_idx_unknown_type_code(tmp_path):
    data = bytearray(idx_bytes(np.zeros((2, 2), np.uint8), 0x08))
    data[2] = 0x07
    with pytest.raises(ValueError, match=r"code\.idx.*type code 0x07, expected one of"):
        read_idx(write(tmp_path / "code.idx", bytes(data), False))


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_truncated_data(tmp_path, compress):
    data = idx_bytes(np.zeros((4, 5), np.int32), 0x0C)[:-3]
    with pytest.raises(ValueError, match=r"short\.idx.*truncated: 77 data bytes, expected 80"):
        read_idx(write(tmp_path / "short.idx", data, compress))


def test_read_idx_truncated_header(tmp_path):
    data = idx_bytes(np.zeros((4, 5, 6), np.uint8), 0x08)[:10]
    with pytest.raises(ValueError, match=r"head\.idx.*truncated in its header.*expected 16"):
        read_idx(write(tmp_path / "head.idx", data, False))
    with pytest.raises(ValueError, match=r"tiny\.idx.*2 bytes"):
        read_idx(write(tmp_path / "tiny.idx", b"\x00\x00", False))


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_trailing_bytes(tmp_path, compress):
    data = idx_bytes(np.zeros((4, 5), np.float32), 0x0D) + b"\x00\x01"
    with pytest.raises(ValueError, match=r"long\.idx.*2 trailing bytes.*exactly 80"):
        read_idx(write(tmp_path / "long.idx", data, compress))


def test_read_idx_broken_gzip_and_missing_file(tmp_path):
    full = gzip.compress(idx_bytes(np.zeros((30, 30), np.uint8), 0x08))
    with pytest.raises(ValueError, match=r"cut\.idx\.gz.*gzip"):
        read_idx(write(tmp_path / "cut.idx.gz", full[: len(full) // 2], False))
    with pytest.raises(ValueError, match=r"nothere\.idx.*does not exist"):
        read_idx(tmp_path / "nothere.idx")


def test_read_idx_zero_dimensions(tmp_path):
    with pytest.raises(ValueError, match=r"zero\.idx.*0 dimensions"):
        read_idx(write(tmp_path / "zero.idx", b"\x00\x00\x08\x00", False))


# --------------------------------------------------------------------- loaders
@pytest.fixture(scope="module")
def mnist() -> ImageData:
    return load_images("mnist")


@pytest.fixture(scope="module")
def digits() -> ImageData:
    return load_images("digits")


def check_dataset(data: ImageData, n_train: int, n_test: int, side: int) -> None:
    assert data.train_x.shape == (n_train, 1, side, side)
    assert data.test_x.shape == (n_test, 1, side, side)
    assert data.train_y.shape == (n_train,) and data.test_y.shape == (n_test,)
    assert data.train_x.dtype == data.test_x.dtype == torch.float32
    assert data.train_y.dtype == data.test_y.dtype == torch.int64
    for x in (data.train_x, data.test_x):
        assert x.min() == -1.0 and x.max() == 1.0  # background and full ink both occur
    for y in (data.train_y, data.test_y):
        assert sorted(y.unique().tolist()) == list(range(10))
    assert len(data.classes) == 10
    # Disjoint splits: no test image equals any train image.
    train_rows = {row.numpy().tobytes() for row in data.train_x.flatten(1)}
    assert not any(row.numpy().tobytes() in train_rows for row in data.test_x.flatten(1))


def test_mnist(mnist):
    check_dataset(mnist, 4000, 1000, 28)
    assert mnist.name == "mnist" and mnist.classes == tuple("0123456789")
    counts = torch.bincount(torch.cat([mnist.train_y, mnist.test_y]))
    assert counts.tolist() == [500] * 10  # every image of the sample is used once


def test_mnist_is_deterministic_and_limits_take_a_prefix(mnist):
    again = load_images("mnist", limit_train=7, limit_test=5)
    assert torch.equal(again.train_x, mnist.train_x[:7])
    assert torch.equal(again.train_y, mnist.train_y[:7])
    assert torch.equal(again.test_x, mnist.test_x[:5])
    assert torch.equal(again.test_y, mnist.test_y[:5])


def test_image_shapes_are_those_of_the_datasets(mnist, digits):
    assert images.IMAGE_SHAPES["mnist"] == mnist.image_shape == (1, 28, 28)
    assert images.IMAGE_SHAPES["digits"] == digits.image_shape == (1, 8, 8)
    assert images.IMAGE_SHAPES["fashion-mnist"] == (1, 28, 28)
    assert set(images.IMAGE_SHAPES) == set(images.DATASETS)


def test_digits(digits):
    check_dataset(digits, 1500, 297, 8)


def test_digits_follow_the_fixed_shuffle(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    order = torch.randperm(1797, generator=torch.Generator().manual_seed(0))
    x = torch.as_tensor(raw.images, dtype=torch.float64)[order] / 16 * 2 - 1
    y = torch.as_tensor(raw.target)[order]
    torch.testing.assert_close(digits.train_x[:, 0].double(), x[:1500], rtol=0, atol=1e-7)
    torch.testing.assert_close(digits.test_x[:, 0].double(), x[1500:], rtol=0, atol=1e-7)
    assert torch.equal(digits.train_y, y[:1500]) and torch.equal(digits.test_y, y[1500:])
    assert torch.equal(load_images("digits").train_x, digits.train_x)


def test_limit_larger_than_split_keeps_all(digits):
    data = load_images("digits", limit_train=10_000, limit_test=3)
    assert len(data.train_y) == 1500 and torch.equal(data.test_y, digits.test_y[:3])


def test_fashion_mnist():
    if not (FASHION_MNIST_DEFAULT_ROOT / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip("the Debian package dataset-fashion-mnist is not installed")
    data = load_images("fashion-mnist", limit_train=100, root=FASHION_MNIST_DEFAULT_ROOT)
    assert data.train_x.shape == (100, 1, 28, 28) and data.train_y.shape == (100,)
    assert data.test_x.shape == (10000, 1, 28, 28)
    assert data.classes == FASHION_MNIST_CLASSES and data.classes[9] == "Ankle boot"
    assert data.test_x.min() == -1.0 and data.test_x.max() == 1.0
    assert sorted(data.test_y.unique().tolist()) == list(range(10))
    assert torch.bincount(data.test_y).tolist() == [1000] * 10  # the balanced official test set
    # The pixels are the file's bytes, rescaled.
    raw = read_idx(FASHION_MNIST_DEFAULT_ROOT / "train-images-idx3-ubyte.gz")[:100]
    expected = torch.as_tensor(raw, dtype=torch.float32) / 255 * 2 - 1
    torch.testing.assert_close(data.train_x[:, 0], expected, rtol=0, atol=1e-6)


def test_fashion_mnist_missing_files_name_the_file_and_the_package(tmp_path, monkeypatch):
    with pytest.raises(
        ValueError, match=r"train-images-idx3-ubyte\.gz.*apt-get install dataset-fashion-mnist"
    ):
        load_images("fashion-mnist", root=tmp_path)
    empty = tmp_path / "env-root"
    empty.mkdir()
    monkeypatch.setenv(images.FASHION_MNIST_ENV, str(empty))
    with pytest.raises(ValueError, match=r"env-root.*install the Debian package"):
        load_images("fashion-mnist")


def test_fashion_mnist_wrong_sizes_are_refused(tmp_path):
    for split in ("train", "t10k"):
        (tmp_path / f"{split}-images-idx3-ubyte").write_bytes(
            idx_bytes(np.zeros((3, 28, 28), np.uint8), 0x08)
        )
        (tmp_path / f"{split}-labels-idx1-ubyte").write_bytes(
            idx_bytes(np.zeros(3, np.uint8), 0x08)
        )
    with pytest.raises(
        ValueError, match=r"train images.*\(3, 28, 28\), expected uint8 \(60000, 28, 28\)"
    ):
        load_images("fashion-mnist", root=tmp_path)


def test_bad_arguments():
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'cifar'.*" + str(DATASETS).replace("(", r"\(").replace(")", r"\)"),
    ):
        load_images("cifar")
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ValueError, match="limit_train must be a positive int"):
            load_images("digits", limit_train=bad)
    with pytest.raises(ValueError, match="root= applies only to 'fashion-mnist'"):
        load_images("digits", root="/tmp")


def test_image_data_validates_its_tensors():
    x = torch.zeros(4, 1, 5, 5)
    y = torch.zeros(4, dtype=torch.long)
    classes = ("a", "b")
    ImageData("ok", x, y, x, y, classes)
    with pytest.raises(ValueError, match=r"train_x is torch.float64 .* expected float32"):
        ImageData("bad", x.double(), y, x, y, classes)
    with pytest.raises(ValueError, match=r"test_y is torch.int64 of shape \(3,\)"):
        ImageData("bad", x, y, x, y[:3], classes)
    with pytest.raises(ValueError, match=r"train_x spans .* expected values in \[-1, 1\]"):
        ImageData("bad", x + 2, y, x, y, classes)
    with pytest.raises(ValueError, match=r"test_y holds labels in \[0, 2\], expected 0 .. 1"):
        ImageData("bad", x, y, x, y + torch.tensor([0, 0, 0, 2]), classes)
    with pytest.raises(ValueError, match=r"test_x has images of \(4, 4\)"):
        ImageData("bad", x, y, torch.zeros(4, 1, 4, 4), y, classes)
