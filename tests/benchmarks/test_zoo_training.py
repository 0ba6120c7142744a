"""benchmarks/zoo_training.py: the accuracy spread per saved epoch and the share that moved."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from weightspace.data.zoo import ZooConfig, generate_zoo, load_zoo

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "zoo_training.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_zoo_training", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_figures_match_the_zoo(tmp_path):
    zoo = generate_zoo(
        ZooConfig(
            dataset="digits", networks=12, out=str(tmp_path / "zoo"), epochs=3,
            save_epochs=(1, 3), limit_train=300, limit_test=200,
        ),
        progress=False,
    )  # fmt: skip
    out = load_script().main(
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
        load_script().main(["--zoo", str(zoo), "--after", "2"])
