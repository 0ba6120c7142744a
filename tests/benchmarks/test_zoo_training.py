"""benchmarks/zoo_training.py: the accuracy spread per saved epoch and the share that moved."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.benchmarks import load_script
from weightspace.data.zoo import ZooConfig, generate_zoo, load_zoo


def test_figures_match_the_zoo(tmp_path):
    zoo = generate_zoo(
        ZooConfig(
            dataset="digits", networks=12, out=str(tmp_path / "zoo"), epochs=3,
            save_epochs=(1, 3), limit_train=300, limit_test=200,
        ),
        progress=False,
    )  # fmt: skip
    out = load_script("zoo_training").main(
        ["--zoo", str(zoo), "--after", "1", "--json", str(tmp_path / "f.json")]
    )
    a = np.array([r["test_accuracy"] for r in load_zoo(zoo, epoch=1).metadata])
    b = np.array([r["test_accuracy"] for r in load_zoo(zoo, epoch=3).metadata])
    ok = np.isfinite(a) & np.isfinite(b)
    assert out["moved"]["share_moved"] == pytest.approx(np.mean(np.abs(b - a)[ok] > 0.05))
    assert out["moved"]["networks"] == ok.sum()
    assert out["epochs"][3]["quantiles"][-1] == pytest.approx(np.nanmax(b))
    assert json.loads((tmp_path / "f.json").read_text())["moved"] == out["moved"]
    # The trained CNNs did move: a zoo whose accuracy stayed put would show 0 here.
    assert not np.allclose(a[ok], b[ok])
    with pytest.raises(SystemExit, match="saved epochs"):
        load_script("zoo_training").main(["--zoo", str(zoo), "--after", "2"])
