"""weightspace.viz: the ticket plots (accuracy bars, per-layer sparsity, input usage)."""

from __future__ import annotations

import pytest
import torch

from weightspace import viz

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["dense", "IMP", "random", "magnitude", "NFN_HNP"]


def is_png(path) -> bool:
    data = path.read_bytes()
    return len(data) > 1000 and data.startswith(PNG)


def test_accuracy_bars_write_a_png(tmp_path):
    out = viz.accuracy_bars(
        NAMES,
        [0.978, 0.962, 0.896, 0.91, 0.95],
        [0.002, 0.003, 0.01, 0.0, 0.004],
        tmp_path / "bars.png",
        title="MNIST",
    )
    assert out == tmp_path / "bars.png" and is_png(out)
    # Percentages and a single bar draw too.
    assert is_png(viz.accuracy_bars(["dense"], [97.8], [0.0], tmp_path / "one.png"))


@pytest.mark.parametrize(
    ("means", "stds", "match"),
    [
        ([0.9, 0.8], [0.1] * 5, "5 names, 2 means and 5 stds"),
        ([0.9] * 5, [0.1] * 4, "5 names, 5 means and 4 stds"),
        ([0.9] * 5, [0.1, 0.1, -0.1, 0.1, 0.1], "stds must be >= 0"),
        ([0.9, float("nan"), 0.9, 0.9, 0.9], [0.1] * 5, "means must be finite"),
    ],
)
def test_accuracy_bars_refuse_bad_input(tmp_path, means, stds, match):
    with pytest.raises(ValueError, match=match):
        viz.accuracy_bars(NAMES, means, stds, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_layer_sparsity_writes_a_png(tmp_path):
    series = {"IMP": [0.03, 0.2, 0.6], "NFN_HNP": [0.035, 0.15, 0.5], "random": [0.05] * 3}
    out = viz.layer_sparsity(["W1", "W2", "W3"], series, tmp_path / "layers.png", title="kept")
    assert is_png(out)
    # A zero cannot sit on a log axis: the plot falls back to a linear one.
    zero = {"IMP": [0.0, 0.2, 0.6]}
    assert is_png(viz.layer_sparsity(["W1", "W2", "W3"], zero, tmp_path / "zero.png"))


@pytest.mark.parametrize(
    ("layers", "series", "match"),
    [
        (["W1", "W2", "W3"], {"IMP": [0.1, 0.2]}, "series 'IMP' has 2 fractions for 3 layers"),
        (["W1"], {"IMP": [1.5]}, r"outside \[0, 1\]"),
        (["W1"], {}, "at least one layer and one series"),
        ([], {"IMP": []}, "at least one layer and one series"),
    ],
)
def test_layer_sparsity_refuses_bad_input(tmp_path, layers, series, match):
    with pytest.raises(ValueError, match=match):
        viz.layer_sparsity(layers, series, tmp_path / "bad.png")


def test_input_usage_writes_a_png(tmp_path):
    maps = {"IMP": torch.rand(8, 8), "NFN_NP": torch.rand(8, 8), "zeros": torch.zeros(8, 8)}
    out = viz.input_usage(maps, tmp_path / "pixels.png", title="kept share per pixel")
    assert out == tmp_path / "pixels.png" and is_png(out)
    assert is_png(viz.input_usage({"all zero": torch.zeros(4, 4)}, tmp_path / "zero.png"))


@pytest.mark.parametrize(
    ("maps", "match"),
    [
        ({}, "at least one map"),
        ({"IMP": torch.rand(64)}, r"map 'IMP' must be a non-empty \(H, W\) tensor, got \(64,\)"),
        ({"IMP": [[0.1]]}, r"got list"),
        ({"IMP": -torch.ones(2, 2)}, "finite values >= 0"),
        ({"IMP": torch.full((2, 2), float("nan"))}, "finite values >= 0"),
    ],
)
def test_input_usage_refuses_bad_input(tmp_path, maps, match):
    with pytest.raises(ValueError, match=match):
        viz.input_usage(maps, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()
