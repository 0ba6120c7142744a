"""benchmarks/hnp_with_statistics.py: the model is HNP-invariant, reads the statistics, and runs."""

from __future__ import annotations

import torch

from tests.benchmarks import load_script
from weightspace import symmetry
from weightspace.data.zoo import ZOO_SPEC
from weightspace.space.features import WeightSpaceFeatures
from weightspace.tasks import generalization
from weightspace.testing import assert_invariant


def test_invariant_and_reads_the_statistics():
    bench = load_script("hnp_with_statistics")
    torch.manual_seed(0)
    model = bench.HNPWithStatistics(ZOO_SPEC, (4, 3), (16,)).double()
    x = WeightSpaceFeatures.from_tensors(
        [torch.randn(3, 1, *t.shape, dtype=torch.float64) for t in ZOO_SPEC.tensors], ZOO_SPEC
    )
    assert_invariant(model, ZOO_SPEC, "hnp")
    # Scaling one tensor moves its statistics, so the output moves.
    y = WeightSpaceFeatures.from_tensors(
        [t * (3.0 if i == 0 else 1.0) for i, t in enumerate(x.tensors)], ZOO_SPEC
    )
    assert not torch.allclose(model(x), model(y))
    # A control that must break: mirroring the first layer's kernels is no symmetry.
    flipped = WeightSpaceFeatures.from_tensors([x.tensors[0].flip(-1), *x.tensors[1:]], ZOO_SPEC)
    g = symmetry.sample(ZOO_SPEC, "hnp")
    assert torch.allclose(model(x.permute(g)), model(x))
    assert not torch.allclose(model(flipped), model(x))


def test_main_restores_the_task_builder(tmp_path):
    from tests.tasks._zoos import digits_zoo

    zoo = digits_zoo(tmp_path / "zoo", 24, 24, limit_train=200, limit_test=100)
    original = generalization.build_predictor
    metrics = load_script("hnp_with_statistics").main(
        ["--zoo", str(zoo), "--out", str(tmp_path / "run"), "--epochs", "1"]
    )
    assert generalization.build_predictor is original
    assert metrics["epochs_run"] == 1 and -1 <= metrics["kendall_tau"] <= 1


def test_scale_read_out_splits_shape_from_scale():
    bench = load_script("hnp_with_statistics")
    torch.manual_seed(0)
    for means in (False, True):
        model = bench.HNPWithScale(ZOO_SPEC, (4, 3), (16,), means=means).double()
        assert_invariant(model, ZOO_SPEC, "hnp")
    x = WeightSpaceFeatures.from_tensors(
        [torch.randn(3, 1, *t.shape, dtype=torch.float64) for t in ZOO_SPEC.tensors], ZOO_SPEC
    )
    seen = []
    model.pool.register_forward_hook(lambda _, args, out: seen.append(out))
    # Scaling a tensor by a positive factor leaves the NF-Layers' pooled features unchanged and
    # moves its log RMS: the output moves only through the head's scalars.
    y = WeightSpaceFeatures.from_tensors(
        [t * (3.0 if i == 0 else 1.0) for i, t in enumerate(x.tensors)], ZOO_SPEC
    )
    out_x, out_y = model(x), model(y)
    torch.testing.assert_close(seen[0], seen[1])
    assert not torch.allclose(out_x, out_y)
    # A sign flip is no rescaling: the pooled features move.
    model(WeightSpaceFeatures.from_tensors([-x.tensors[0], *x.tensors[1:]], ZOO_SPEC))
    assert not torch.allclose(seen[0], seen[2])
    # A control that must break: mirroring the first layer's kernels is no symmetry.
    flipped = WeightSpaceFeatures.from_tensors([x.tensors[0].flip(-1), *x.tensors[1:]], ZOO_SPEC)
    assert not torch.allclose(model(flipped), out_x)


def test_main_runs_the_scale_read_out(tmp_path):
    from tests.tasks._zoos import digits_zoo

    zoo = digits_zoo(tmp_path / "zoo", 24, 24, limit_train=200, limit_test=100)
    metrics = load_script("hnp_with_statistics").main(
        ["--zoo", str(zoo), "--out", str(tmp_path / "run"), "--epochs", "1", "--read-out", "scale"]
    )
    assert metrics["epochs_run"] == 1 and -1 <= metrics["kendall_tau"] <= 1
