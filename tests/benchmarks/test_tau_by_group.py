"""benchmarks/tau_by_group.py: τ and MAE per hyperparameter group of a zoo's test networks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import kendalltau

from tests.benchmarks import load_script
from tests.benchmarks.test_tau_bootstrap import write_run
from tests.tasks._zoos import digits_zoo
from weightspace.data.zoo import load_zoo


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return digits_zoo(
        tmp_path_factory.mktemp("zoo") / "zoo", 40, 40, limit_train=200, limit_test=100
    )


def test_groups_score_each_run_inside_each_group(zoo, tmp_path):
    test = load_zoo(zoo).part("test")
    actual = test.test_accuracy.double().numpy()
    activation = np.array([row["activation"] for row in test.metadata])
    rng = np.random.default_rng(0)
    # Right on relu networks, noisy on tanh ones: the groups must tell them apart.
    noisy = actual + np.where(activation == "tanh", 0.3, 0.0) * rng.standard_normal(actual.size)
    exact = write_run(tmp_path / "exact", actual, actual)
    mixed = write_run(tmp_path / "mixed", actual, noisy)
    out = load_script("tau_by_group").main(
        ["--zoo", str(zoo), str(exact), str(mixed), "--by", "activation",
         "--json", str(tmp_path / "g.json")]
    )  # fmt: skip
    rows = {(g["field"], g["value"]): g for g in out["groups"]}
    assert rows["all", "all"]["n"] == len(test) == out["n_test"]
    assert sum(rows["activation", v]["n"] for v in set(activation)) == len(test)
    for value in set(activation):
        m = activation == value
        got = rows["activation", value]["runs"][str(mixed)]
        assert got["mae"] == pytest.approx(np.abs(actual[m] - noisy[m]).mean())
        if m.sum() > 1:
            assert got["tau"] == pytest.approx(kendalltau(actual[m], noisy[m]).statistic)
        assert rows["activation", value]["runs"][str(exact)]["mae"] == 0
    assert rows["activation", "relu"]["runs"][str(mixed)]["mae"] == 0
    assert rows["activation", "tanh"]["runs"][str(mixed)]["mae"] > 0
    assert json.loads((tmp_path / "g.json").read_text()) == out


def test_refuses_other_networks_and_unknown_fields(zoo, tmp_path):
    actual = load_zoo(zoo).part("test").test_accuracy.double().numpy()
    reversed_run = write_run(tmp_path / "rev", actual[::-1], actual[::-1])
    with pytest.raises(SystemExit, match="does not list the test networks"):
        load_script("tau_by_group").main(["--zoo", str(zoo), str(reversed_run)])
    run = write_run(tmp_path / "ok", actual, actual)
    with pytest.raises(SystemExit, match="records no \\['colour'\\] per network"):
        load_script("tau_by_group").main(["--zoo", str(zoo), str(run), "--by", "colour"])
