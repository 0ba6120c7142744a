"""weightspace.data.siren_format: the NFN paper's released SIREN folders, read safely."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.container import SPLITS
from weightspace.data.inr import SIREN_SPEC, InrDataset, pixel_grid, render, siren_module
from weightspace.data.siren_format import PAPER_PREFIX, PAPER_SPLIT_POINTS, load_siren_folder

N = 10
LABELS = [i % 3 for i in range(N)]
# The key names of the reference code's Siren (net.{i}.linear for sine layers, net.2 linear).
NFN_KEYS = [
    "net.0.linear.weight",
    "net.0.linear.bias",
    "net.1.linear.weight",
    "net.1.linear.bias",
    "net.2.weight",
    "net.2.bias",
]


def _module(seed: int) -> torch.nn.Sequential:
    return siren_module(generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """A small dataset in the release's layout: originals and one augmentation copy.

    ``randinit_smaller_{label}s/net{i}.pth`` with ``siren_module`` state dicts, and
    ``randinit_smaller_aug0_{label}s/net{i}.pth`` with the reference code's key names.
    """
    root = tmp_path / "siren_mnist_wts"
    for i, label in enumerate(LABELS):
        folder = root / f"{PAPER_PREFIX}_{label}s"
        folder.mkdir(parents=True, exist_ok=True)
        torch.save(_module(i).state_dict(), folder / f"net{i}.pth")
        aug = root / f"{PAPER_PREFIX}_aug0_{label}s"
        aug.mkdir(parents=True, exist_ok=True)
        features = WeightSpaceFeatures.from_modules([_module(100 + i)])
        (sd,) = features.to_state_dicts(NFN_KEYS)
        torch.save(OrderedDict(sd), aug / f"net{i}.pth")
    return root


def test_loads_the_release_layout(release: Path) -> None:
    data = load_siren_folder(release, prefix=PAPER_PREFIX, split_points=(6, 8), progress=False)
    assert isinstance(data, InrDataset) and len(data) == N
    assert data.spec == SIREN_SPEC
    assert data.labels.tolist() == LABELS
    assert [r["index"] for r in data.metadata] == list(range(N))
    assert data.metadata[4]["path"] == f"{PAPER_PREFIX}_1s/net4.pth"
    assert data.split.tolist() == [SPLITS["train"]] * 6 + [SPLITS["val"]] * 2 + [SPLITS["test"]] * 2
    expected = WeightSpaceFeatures.from_modules([_module(i) for i in range(N)])
    for a, b in zip(data.features.tensors, expected.tensors):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # Same ω0 convention as weightspace.data.inr: render equals the module's forward.
    image = render(data.features[3], 6, 5)
    torch.testing.assert_close(
        image.reshape(-1), _module(3)(pixel_grid(6, 5)).reshape(-1), atol=1e-6, rtol=0
    )
    assert data.info["prefix"] == PAPER_PREFIX and data.info["split_points"] == [6, 8]
    assert len(data.part("val")) == 2
    # limit keeps the smallest indices; no split_points puts everything in train.
    first = load_siren_folder(release, prefix=PAPER_PREFIX, limit=4, progress=False)
    assert [r["index"] for r in first.metadata] == [0, 1, 2, 3]
    assert (first.split == SPLITS["train"]).all()
    assert PAPER_SPLIT_POINTS == (45000, 50000)


def test_augmentation_prefix_with_reference_key_names(release: Path) -> None:
    aug = load_siren_folder(release, prefix=f"{PAPER_PREFIX}_aug0", progress=False)
    assert aug.labels.tolist() == LABELS
    expected = WeightSpaceFeatures.from_modules([_module(100 + i) for i in range(N)])
    for a, b in zip(aug.features.tensors, expected.tensors):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
    # Two prefixes side by side: the caller must choose.
    with pytest.raises(
        ValueError, match=r"several prefixes \['randinit_smaller', 'randinit_smaller_aug0'\]"
    ):
        load_siren_folder(release, progress=False)
    with pytest.raises(ValueError, match=r"no folder 'randinit_test_\{label\}s'"):
        load_siren_folder(release, prefix="randinit_test", progress=False)


def test_one_prefix_is_found_without_asking(tmp_path: Path) -> None:
    folder = tmp_path / "only" / "randinit_test_7s"
    folder.mkdir(parents=True)
    torch.save(_module(0).state_dict(), folder / "net0.pth")
    data = load_siren_folder(tmp_path / "only", progress=False)
    assert data.labels.tolist() == [7] and data.info["prefix"] == "randinit_test"


def test_layout_errors(release: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a folder"):
        load_siren_folder(tmp_path / "missing", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no folders named"):
        load_siren_folder(empty, progress=False)
    # Non-integer and missing labels in the folder name.
    bad = tmp_path / "bad"
    (bad / "randinit_smaller_threes").mkdir(parents=True)
    torch.save(_module(0).state_dict(), bad / "randinit_smaller_threes" / "net0.pth")
    with pytest.raises(ValueError, match=r"randinit_smaller_threes' holds .pth files but its name"):
        load_siren_folder(bad, progress=False)
    (bad / "randinit_smaller_threes").rename(bad / "randinit_smaller_3")
    with pytest.raises(ValueError, match="integer label"):
        load_siren_folder(bad, progress=False)
    (bad / "randinit_smaller_3").rename(bad / "randinit_smaller_3s")
    load_siren_folder(bad, progress=False)  # now well-formed
    torch.save(_module(1).state_dict(), bad / "net1.pth")
    with pytest.raises(ValueError, match="lies directly in the root, without a label folder"):
        load_siren_folder(bad, progress=False)
    (bad / "net1.pth").unlink()
    torch.save(_module(1).state_dict(), bad / "randinit_smaller_3s" / "siren1.pth")
    with pytest.raises(ValueError, match=r"siren1.pth' is not named net\{index\}.pth"):
        load_siren_folder(bad, progress=False)
    (bad / "randinit_smaller_3s" / "siren1.pth").unlink()
    (bad / "randinit_smaller_4s").mkdir()
    torch.save(_module(1).state_dict(), bad / "randinit_smaller_4s" / "net0.pth")
    with pytest.raises(ValueError, match="INR 0 appears twice"):
        load_siren_folder(bad, progress=False)
    (bad / "randinit_smaller_4s" / "net0.pth").unlink()
    nofiles = tmp_path / "nofiles" / "randinit_smaller_1s"
    nofiles.mkdir(parents=True)
    with pytest.raises(ValueError, match=r"hold no net\{index\}.pth file"):
        load_siren_folder(nofiles.parent, progress=False)
    with pytest.raises(ValueError, match="val_start <= test_start"):
        load_siren_folder(release, prefix=PAPER_PREFIX, split_points=(8, 6), progress=False)
    with pytest.raises(ValueError, match="limit must be a positive int"):
        load_siren_folder(release, prefix=PAPER_PREFIX, limit=0, progress=False)


def _one_file(tmp_path: Path, obj, name: str = "net0.pth") -> Path:
    folder = tmp_path / "one" / "randinit_smaller_2s"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.iterdir():
        old.unlink()
    torch.save(obj, folder / name)
    return folder.parent


def test_wrong_architecture_and_bad_contents(tmp_path: Path) -> None:
    small = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Linear(16, 1))
    root = _one_file(tmp_path, small.state_dict())
    with pytest.raises(
        ValueError,
        match=r"net0.pth' holds a network on NetworkSpec\(widths=\(2, 16, 1\).*expected NetworkSpec\(widths=\(2, 32, 32, 1\)",
    ):
        load_siren_folder(root, progress=False)
    # spec=None accepts any dense architecture, as long as every file shares it.
    assert load_siren_folder(root, spec=None, progress=False).spec == NetworkSpec((2, 16, 1))
    root = _one_file(tmp_path, [torch.zeros(3)])
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        load_siren_folder(root, progress=False)
    root = _one_file(tmp_path, {"0.weight": torch.zeros(32, 2), "epoch": 3})
    with pytest.raises(
        ValueError, match="entry 'epoch' is a int; expected a state dict of tensors"
    ):
        load_siren_folder(root, progress=False)
    sd = _module(0).state_dict()
    root = _one_file(
        tmp_path, OrderedDict([("0.bias", sd["0.bias"]), ("0.weight", sd["0.weight"])])
    )
    with pytest.raises(ValueError, match="is not a feedforward state dict"):
        load_siren_folder(root, progress=False)
    nan = {k: v.clone() for k, v in sd.items()}
    nan["2.weight"][0, 0] = float("nan")
    root = _one_file(tmp_path, nan)
    with pytest.raises(ValueError, match=r"net0.pth': tensors \['W2'\] hold NaN or Inf"):
        load_siren_folder(root, progress=False)
    folder = root / "randinit_smaller_2s"
    (folder / "net0.pth").write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="is not a readable PyTorch file"):
        load_siren_folder(root, progress=False)


class NotATensor:
    """A class that a weights-only load must refuse to rebuild."""

    def __init__(self) -> None:
        self.payload = 1


class Exploit:
    """Unpickling this with a full unpickler would create a folder (a visible side effect)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_pickled_objects_are_refused_by_weights_only_loading(tmp_path: Path) -> None:
    root = _one_file(tmp_path, {"0.weight": NotATensor()})
    with pytest.raises(ValueError, match="refusing to unpickle it"):
        load_siren_folder(root, progress=False)
    marker = tmp_path / "was-executed"
    root = _one_file(tmp_path, {"0.weight": Exploit(str(marker))})
    with pytest.raises(ValueError, match=r"net0.pth' holds pickled objects other than tensors"):
        load_siren_folder(root, progress=False)
    assert not marker.exists()  # the payload never ran
    # A control that must break: a full (unsafe) unpickle would run it.
    torch.load(root / "randinit_smaller_2s" / "net0.pth", weights_only=False)
    assert marker.exists()
