"""benchmarks/inr_classify_ref.py: the reference is the paper's NFN_NP, ours is the task's
default classifier or the paper's stack, and the script runs.

The side-by-side means something only if the reference model (built from ``nfn``'s layers) and
ours are the same kind of model: HNP-invariant, told inputs and outputs apart by an IO encoding,
with the same logits. These tests check that on all three with the test kit, with controls that
must break, that ``--ours default`` is what ``train inr-classify --model np`` builds and
``--ours paper`` the paper's stack, and run the script's ``main`` for one epoch on real (8x8
digits) SIRENs.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.benchmarks import load_script
from weightspace.data.inr import SIREN_SPEC, InrConfig, fit_inrs, load_inrs, render
from weightspace.models import InvariantNFN, MLPHead
from weightspace.nn import (
    Activation,
    ChannelDropout,
    GaussianFourierFeatures,
    NPLinear,
    NPPool,
    SinusoidalIOEncoding,
)
from weightspace.tasks.inr_classification import InrClassification, InrClassifyConfig
from weightspace.testing import (
    assert_invariant,
    inconsistent_permutation,
    invariance_error,
    random_features,
)

pytest.importorskip("nfn")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("inr_classify_ref")


@pytest.fixture(scope="module")
def digits_inrs(tmp_path_factory) -> Path:
    """20 train (2 of them validation) and 20 test digits, one rough SIREN each."""
    out = tmp_path_factory.mktemp("inrs") / "digits"
    config = InrConfig(dataset="digits", out=str(out), limit=20, steps=20, chunk_size=16)
    return fit_inrs(config, progress=False)


@pytest.mark.parametrize(
    ("name", "recipe"), [("weightspace", "default"), ("weightspace", "paper"), ("nfn", "paper")]
)
def test_every_model_is_an_hnp_invariant_np_classifier(
    bench: ModuleType, name: str, recipe: str
) -> None:
    model = bench.build(name, SIREN_SPEC, channels=4, num_classes=10, seed=0, recipe=recipe)
    x = random_features(SIREN_SPEC, 3, dtype=torch.float32)
    if hasattr(model, "set_statistics"):
        model.set_statistics(random_features(SIREN_SPEC, 16, dtype=torch.float32))
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (3, 10)
    assert_invariant(model, SIREN_SPEC, "hnp", rtol=1e-9)
    # Controls that must break: a permutation that changes the SIREN's function ...
    broken = invariance_error(
        model, SIREN_SPEC, perturb=lambda f, g: inconsistent_permutation(f, 1, g)
    )
    assert broken > 1e-4
    # ... and swapping the two input coordinates, which the IO encoding tells apart.
    swap = [torch.tensor([1, 0]), None, None, None]
    model64 = model.double()
    x64 = random_features(SIREN_SPEC, 3)
    with torch.no_grad():
        assert not torch.allclose(model64(x64.permute(swap)), model64(x64), atol=1e-6)


def test_both_models_have_the_papers_dropouts(bench: ModuleType) -> None:
    # Channel dropout 0.1 after each of the 3 NP layers, dropout 0.1 after each of the 2 hidden
    # layers of the head; nothing else drops.
    import nfn

    kinds = {"weightspace": ChannelDropout, "nfn": nfn.layers.ChannelDropout}
    for name in bench.MODELS:
        model = bench.build(name, SIREN_SPEC, channels=4, num_classes=10, seed=0, recipe="paper")
        channel = [m for m in model.modules() if isinstance(m, kinds[name])]
        plain = [m for m in model.modules() if type(m) is torch.nn.Dropout]
        if name == "nfn":  # the reference drops biases with an nn.Dropout inside each
            plain = [m for m in plain if not any(m is c.bias_dropout for c in channel)]
        assert [getattr(m, "p", getattr(m, "dropout", None)) for m in channel] == [0.1] * 3, name
        assert [m.p for m in plain] == [0.1] * 2, name
        x = random_features(SIREN_SPEC, 4, dtype=torch.float32)
        model.eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


def test_ours_is_the_papers_stack_layer_for_layer(bench: ModuleType) -> None:
    # ``ours`` is InvariantNFN; check it is the paper's MNIST stack built by hand from
    # weightspace.nn (Fourier 128 at scale 3, sinusoidal IO encoding, 3 NP layers each followed
    # by ReLU and channel dropout 0.1, NP pool, 1000-1000 head with dropout 0.1): the same
    # parameter shapes in the same order, and with the same values the same logits.
    ours = bench.build("weightspace", SIREN_SPEC, 8, num_classes=10, seed=0, recipe="paper")
    assert isinstance(ours, InvariantNFN)
    fourier = GaussianFourierFeatures(1, mapping_size=128, scale=3.0)
    io = SinusoidalIOEncoding(SIREN_SPEC, fourier.out_channels)
    mods: list[torch.nn.Module] = [fourier, io]
    width = io.out_channels
    for _ in range(3):
        mods += [NPLinear(SIREN_SPEC, width, 8), Activation("relu"), ChannelDropout(0.1)]
        width = 8
    pool = NPPool(SIREN_SPEC)
    by_hand = torch.nn.Sequential(
        *mods, pool, MLPHead(pool.output_size(8), (1000, 1000), 10, dropout=0.1)
    )
    shapes = [p.shape for p in ours.parameters()]
    assert shapes == [p.shape for p in by_hand.parameters()]
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in by_hand.parameters())
    with torch.no_grad():
        for mine, theirs in zip(ours.parameters(), by_hand.parameters()):
            theirs.copy_(torch.randn_like(mine))
            mine.copy_(theirs)
    drops = [m.p for m in ours.modules() if isinstance(m, ChannelDropout | torch.nn.Dropout)]
    assert drops == [0.1] * 5
    ours_fourier = ours.encoder[0]
    assert ours_fourier.mapping_size == 128 and ours_fourier.scale == 3.0
    assert torch.equal(ours_fourier.B, fourier.B)
    ours.eval(), by_hand.eval()
    x = random_features(SIREN_SPEC, 3, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), by_hand(x), rtol=1e-5, atol=1e-5)


def test_ours_default_is_what_the_task_builds(bench: ModuleType) -> None:
    # ``--ours default`` must be the classifier ``weightspace train inr-classify --model np``
    # builds with its default settings at the benchmark's width: the same parameter shapes in
    # the same order, and with the same values and statistics the same logits.
    ours = bench.build("weightspace", SIREN_SPEC, 4, 10, seed=0)  # recipe="default"
    config = InrClassifyConfig(inrs="-", model="np", out="-", hidden_channels=(4, 4, 4))
    task = InrClassification({**config.settings(), "num_classes": 10, "spec": SIREN_SPEC.to_dict()})
    theirs = task.build(SIREN_SPEC)
    assert type(ours) is type(theirs)
    assert [p.shape for p in ours.parameters()] == [p.shape for p in theirs.parameters()]
    fourier = [m for m in ours.modules() if isinstance(m, GaussianFourierFeatures)]
    assert [(m.mapping_size, m.scale) for m in fourier] == [(64, 10.0)]
    assert not any(isinstance(m, ChannelDropout) for m in ours.modules())
    # Not the paper's stack: fewer parameters (64 Fourier features, a 256-unit head).
    paper = bench.build("weightspace", SIREN_SPEC, 4, 10, seed=0, recipe="paper")
    assert sum(p.numel() for p in ours.parameters()) < sum(p.numel() for p in paper.parameters())
    train = random_features(SIREN_SPEC, 16, dtype=torch.float32)
    with torch.no_grad():
        for mine, other in zip(ours.parameters(), theirs.parameters()):
            other.copy_(torch.randn_like(mine))
            mine.copy_(other)
    for model in (ours, theirs):
        model.set_statistics(train)
        model.eval()
    x = random_features(SIREN_SPEC, 3, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
        # A control: other statistics change the logits.
        theirs.set_statistics(2 * train + 1)
        assert not torch.allclose(ours(x), theirs(x), atol=1e-4)
    with pytest.raises(ValueError, match="unknown recipe 'fast'"):
        bench.ours(SIREN_SPEC, 4, 10, recipe="fast")


def test_augmentation_follows_each_recipe(bench: ModuleType) -> None:
    # The task's default augmentation for an NP classifier is random sign flips, nothing else.
    (flips,) = bench.task_augmentation(SIREN_SPEC)
    assert flips.signs and not (flips.half_periods or flips.permute or flips.scales)
    recipe = bench.augmentations(SIREN_SPEC, "default", "recipe")
    assert recipe["weightspace"] == [flips] and recipe["nfn"] == []
    assert bench.augmentations(SIREN_SPEC, "paper", "recipe") == {"weightspace": [], "nfn": []}
    assert bench.augmentations(SIREN_SPEC, "default", "none") == {"weightspace": [], "nfn": []}
    both = bench.augmentations(SIREN_SPEC, "paper", "both")
    assert both == {"weightspace": [flips], "nfn": [flips]}
    # Sign flips leave a SIREN's function alone and change its weights (a control).
    x = random_features(SIREN_SPEC, 4)
    torch.manual_seed(0)
    flipped = flips(x, None)
    assert not torch.equal(flipped.weights[1], x.weights[1])
    torch.testing.assert_close(render(flipped, 5, 5), render(x, 5, 5))
    with pytest.raises(ValueError, match="unknown augment 'all'"):
        bench.augmentations(SIREN_SPEC, "default", "all")


def test_both_models_see_the_same_shuffles(bench: ModuleType) -> None:
    first = bench.epoch_order(50, seed=0, epoch=0)
    assert torch.equal(first, bench.epoch_order(50, seed=0, epoch=0))
    assert torch.equal(first.sort().values, torch.arange(50))
    assert not torch.equal(first, bench.epoch_order(50, seed=0, epoch=1))
    assert not torch.equal(first, bench.epoch_order(50, seed=1, epoch=0))


def test_main_trains_both_and_reports(
    bench: ModuleType, digits_inrs: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "ref.json"
    argv = ["--inrs", str(digits_inrs), "--epochs", "1", "--channels", "4", "--json", str(out)]
    result = bench.main(argv)
    printed = capsys.readouterr().out
    assert "| weightspace (default) |" in printed and "| nfn 0.1.2 (paper) |" in printed
    assert "speed ratio" in printed
    assert result["ours"] == "default" and result["args"]["ours"] == "default"
    assert result["augmented"] == {"weightspace": ["SymmetryAugmentation"], "nfn": []}
    assert "| SymmetryAugmentation |" in printed and "| none |" in printed
    assert json.loads(out.read_text())["command"] == result["command"]
    assert result["command"].endswith(" ".join(argv))
    assert result["data"] == {
        "inrs": str(digits_inrs),
        "dataset": "digits",
        "train": 18,
        "val": 2,
        "test": 20,
    }
    assert result["machine"]["threads"] == 1
    for name in bench.MODELS:
        r = result["models"][name]
        (epoch,) = r["epochs"]
        assert 0.0 <= r["final_test_accuracy"] == r["best_test_accuracy"] <= 1.0
        assert r["selected_epoch"] == 1
        assert r["selected_test_accuracy"] == r["final_test_accuracy"]
        assert 0.0 <= epoch["val_accuracy"] <= 1.0
        assert math.isfinite(epoch["train_loss"]) and epoch["train_s"] > 0
        assert r["median_epoch_s"] == epoch["train_s"]
    assert math.isfinite(result["speed_ratio"]) and result["speed_ratio"] > 0


def test_compare_without_validation_selects_nothing(bench: ModuleType, digits_inrs: Path) -> None:
    # Without a validation split there is no selected epoch, and the table says so.
    data = load_inrs(digits_inrs)
    result = bench.compare(
        data.part("train"), data.part("test"), epochs=1, channels=2, progress=False
    )
    for name in bench.MODELS:
        r = result["models"][name]
        assert r["selected_epoch"] is None and math.isnan(r["selected_test_accuracy"])
        assert math.isnan(r["epochs"][0]["val_accuracy"])
    assert sum("| – |" in row for row in bench.table(result)) == 2
