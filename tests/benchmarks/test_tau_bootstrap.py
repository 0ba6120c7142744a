"""benchmarks/tau_bootstrap.py: τ, its bootstrap error and the paired difference of two runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import kendalltau

from tests.benchmarks import load_script


def write_run(folder: Path, actual, predicted) -> Path:
    folder.mkdir()
    lines = ["actual,predicted"] + [f"{float(a)!r},{float(p)!r}" for a, p in zip(actual, predicted)]
    (folder / "predictions.csv").write_text("\n".join(lines) + "\n")
    return folder


def test_paired_difference(tmp_path):
    rng = np.random.default_rng(0)
    actual = rng.random(200)
    good = write_run(tmp_path / "good", actual, actual + 0.05 * rng.standard_normal(200))
    bad = write_run(tmp_path / "bad", actual, actual + 0.5 * rng.standard_normal(200))
    out = load_script("tau_bootstrap").main([str(good), str(bad), "--samples", "300"])
    taus = [r["tau"] for r in out["runs"]]
    good_pred = np.loadtxt(good / "predictions.csv", delimiter=",", skiprows=1)[:, 1]
    assert taus[0] == pytest.approx(kendalltau(actual, good_pred).statistic)
    diff = out["runs"][1]
    assert diff["diff"] == pytest.approx(taus[1] - taus[0])
    # A much noisier predictor is behind, with an interval that excludes zero.
    assert diff["ci"][1] < 0 < diff["se"] and diff["diff_se"] > 0
    # The same run against itself: a difference of exactly zero in every resample.
    same = load_script("tau_bootstrap").main([str(good), str(good), "--samples", "50"])
    assert same["runs"][1]["diff"] == 0 and same["runs"][1]["diff_se"] == 0


def test_refuses_runs_on_other_test_networks(tmp_path):
    a = write_run(tmp_path / "a", [0.1, 0.2, 0.3], [0.1, 0.3, 0.2])
    b = write_run(tmp_path / "b", [0.1, 0.2, 0.4], [0.1, 0.3, 0.2])
    with pytest.raises(SystemExit, match="other test networks"):
        load_script("tau_bootstrap").main([str(a), str(b)])
    with pytest.raises(SystemExit, match="at least two runs"):
        load_script("tau_bootstrap").main([str(a)])


def test_an_ensemble_is_the_mean_prediction_of_its_members(tmp_path):
    rng = np.random.default_rng(1)
    actual = rng.random(100)
    preds = [actual + 0.3 * rng.standard_normal(100) for _ in range(3)]
    runs = [write_run(tmp_path / f"m{k}", actual, p) for k, p in enumerate(preds)]
    ensemble = "+".join(str(r) for r in runs)
    out = load_script("tau_bootstrap").main([str(runs[0]), ensemble, "--samples", "50"])
    expected = kendalltau(actual, np.mean(preds, axis=0)).statistic
    assert out["runs"][1]["tau"] == pytest.approx(expected)
    # Averaging independent errors helps: the ensemble ranks better than its first member.
    assert out["runs"][1]["diff"] > 0
    other = write_run(tmp_path / "other", actual[::-1], preds[0][::-1])
    with pytest.raises(SystemExit, match=r"ensemble .*other' was scored on other test networks"):
        load_script("tau_bootstrap").main([str(runs[0]), f"{runs[0]}+{other}"])
