"""benchmarks/alternatives.py: every alternative computes what the production code computes.

The benchmark times the hand-written SIREN backward and zoo optimisers against autograd,
torch.func and torch.optim; its conclusions hold only if those compute the same thing. These
tests run its own check functions on real images (8x8 digits), and controls that must break.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from tests.benchmarks import load_script
from weightspace.data.images import load_images


@pytest.fixture(scope="module")
def alt() -> ModuleType:
    return load_script("alternatives")


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", limit_train=64)


def _mixed_networks(alt: ModuleType, n_train: int) -> list:
    """Two networks of each optimiser, in the zoo's (unsorted) order."""
    nets, count = [], {"sgd": 0, "adam": 0, "rmsprop": 0}
    for net in alt.zoo_networks(40, n_train):
        if count[net.hp.optimizer] < 2:
            count[net.hp.optimizer] += 1
            nets.append(net)
    assert list(count.values()) == [2, 2, 2]
    assert [n.hp.optimizer for n in nets] != sorted(n.hp.optimizer for n in nets)
    return nets


def _batches(nets: list, steps: int, batch: int = 8) -> torch.Tensor:
    return torch.stack([n.stream.take(steps * batch) for n in nets]).view(len(nets), steps, batch)


# ------------------------------------------------------------------ SIRENs
def test_siren_paths_match_hand_gradients_and_fit_steps(alt: ModuleType, digits) -> None:
    images = digits.train_x[:3]
    errors = alt.check_siren_paths(images)  # float64, raises above 1e-9
    assert set(errors) == set(alt.SIREN_PATHS)
    assert errors["hand"] == {"gradient": 0.0, "fit": 0.0}
    for path in alt.SIREN_PATHS:
        assert errors[path]["gradient"] <= 1e-12 and errors[path]["fit"] <= 1e-9, errors[path]
    # In float32, what the benchmark times, they agree to rounding.
    errors32 = alt.check_siren_paths(images, dtype=torch.float32, tol=1e-5, fit_tol=1e-3)
    assert max(errors32["autograd-forward"].values()) > 0


def test_siren_paths_leave_gradients_in_the_parameters_layout(alt: ModuleType, digits) -> None:
    # What fused Adam needs (it misreads a transposed gradient on CPU); size-1 axes aside.
    params, coords, target = alt.siren_problem(digits.train_x[:2])
    for path in alt.SIREN_PATHS:
        mine = [p.clone() for p in params]
        alt.SirenGradients(path, mine, coords)(target)
        for p in mine:
            assert p.grad.shape == p.shape
            strides = [(s, t) for s, t, n in zip(p.grad.stride(), p.stride(), p.shape) if n > 1]
            assert all(s == t for s, t in strides), (path, p.grad.stride(), p.stride())


def test_siren_check_catches_a_wrong_frequency(alt: ModuleType, digits, monkeypatch) -> None:
    # Control: the alternatives' forward with ω0 = 29 instead of 30 must fail the check.
    monkeypatch.setattr(alt, "siren_activation", lambda t: torch.sin(29.0 * t))
    monkeypatch.setattr(alt, "OMEGA_0", 29.0)
    with pytest.raises(AssertionError, match=r"autograd-forward.*autograd-bmm"):
        alt.check_siren_paths(
            digits.train_x[:3], paths=("hand", "autograd-forward", "autograd-bmm")
        )


# ------------------------------------------------------------------ zoo optimisers
def test_torch_optim_paths_match_hand_updates(alt: ModuleType, digits) -> None:
    nets = _mixed_networks(alt, digits.train_x.shape[0])
    errors = alt.check_optim_paths(nets, digits.train_x, digits.train_y, _batches(nets, 2))
    for path in alt.EQUIVALENT_OPTIM_PATHS:
        assert max(errors[path].values()) <= 1e-12, (path, errors[path])
    # Control: one learning rate per optimiser block is not the per-network recipe.
    assert min(errors["optim-blocks-fused"].values()) > 1e-4


def test_optim_check_raises_on_a_wrong_constant(alt: ModuleType, digits, monkeypatch) -> None:
    # Control: torch.optim's Adam with PyTorch's default eps (1e-8, not the zoo's 1e-7).
    nets = _mixed_networks(alt, digits.train_x.shape[0])
    monkeypatch.setattr(alt, "ADAM_EPS", 1e-8)
    with pytest.raises(AssertionError, match="optim-groups"):
        alt.check_optim_paths(
            nets, digits.train_x, digits.train_y, _batches(nets, 1), paths=("hand", "optim-groups")
        )


def test_torch_optim_is_the_trainers_update(alt: ModuleType, digits) -> None:
    # The variants plug in where the trainer keeps its PerNetworkOptimizer, on the same weights.
    nets = _mixed_networks(alt, digits.train_x.shape[0])
    hand = alt.make_trainer("hand", nets)
    assert type(hand.optimizer) is alt.PerNetworkOptimizer
    idx = _batches(nets, 1)[:, 0]
    for path in alt.OPTIM_PATHS[1:]:
        trainer = alt.make_trainer(path, nets)
        assert type(trainer.optimizer) is alt.TorchOptimizer and trainer.optimizer.path == path
        views = [
            p for opt in trainer.optimizer.optimizers for g in opt.param_groups for p in g["params"]
        ]
        assert all(v._base is trainer.optimizer.params for v in views)
        assert trainer.optimizer.params.data_ptr() == trainer.params[0].data_ptr()
        trainer.step(alt.gather_batches(digits.train_x, idx), digits.train_y[idx])
        assert trainer.steps == 1 == trainer.optimizer.steps
    with pytest.raises(ValueError, match="unknown path 'hand'"):
        alt.TorchOptimizer(hand.optimizer, "hand")


def test_optim_check_raises_without_the_l2_penalty(alt: ModuleType, digits, monkeypatch) -> None:
    # Control: torch.optim's parameter groups without weight decay (the zoo's L2) must fail.
    nets = _mixed_networks(alt, digits.train_x.shape[0])
    make = alt._optimizer

    def no_decay(kind: str, groups: list[dict], options: dict):
        return make(kind, [{**g, "weight_decay": 0.0} for g in groups], options)

    monkeypatch.setattr(alt, "_optimizer", no_decay)
    with pytest.raises(AssertionError, match="optim-groups"):
        alt.check_optim_paths(
            nets, digits.train_x, digits.train_y, _batches(nets, 1), paths=("hand", "optim-groups")
        )


def test_optim_check_raises_when_a_path_is_not_equivalent(
    alt: ModuleType, digits, monkeypatch
) -> None:
    nets = _mixed_networks(alt, digits.train_x.shape[0])
    monkeypatch.setattr(alt, "EQUIVALENT_OPTIM_PATHS", alt.OPTIM_PATHS)
    with pytest.raises(AssertionError, match="optim-blocks-fused"):
        alt.check_optim_paths(
            nets,
            digits.train_x,
            digits.train_y,
            _batches(nets, 1),
            paths=("hand", "optim-blocks-fused"),
        )


# ------------------------------------------------------------------ the script
def test_main_runs_and_reports_every_path(alt: ModuleType, tmp_path: Path, capsys) -> None:
    out = tmp_path / "alternatives.json"
    result = alt.main(
        [
            "--sirens", "4",
            "--siren-iters", "1",
            "--zoo-networks", "3",
            "--zoo-iters", "2",
            "--limit-train", "64",
            "--reps", "1",
            "--json", str(out),
        ]
    )  # fmt: skip
    printed = capsys.readouterr().out
    for path in (*alt.SIREN_PATHS, *alt.OPTIM_PATHS):
        assert f"| {path} |" in printed
    assert json.loads(out.read_text())["command"] == result["command"]
    (siren,) = result["siren"]
    assert siren["sirens"] == 4 and set(siren["gradient_s"]) == set(alt.SIREN_PATHS)
    assert all(t > 0 for times in siren["fit_step_s"].values() for t in times)
    (zoo,) = result["zoo"]
    assert set(zoo["update_s"]) == set(alt.OPTIM_PATHS)
    assert set(zoo["step_s"]) == set(alt.STEP_PATHS)
