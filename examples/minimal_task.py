"""A whole new task in one file: predict each CNN's weight scale from its weights.

The target, the root-mean-square of a network's weights, is a property every neuron
permutation keeps, so an invariant NFN can learn it; it needs no labels beyond the weights.
What the task defines is only what is its own: its config, how it reads its data, its target,
its model, its objective and its scores. The runner does the rest (training, checkpoints,
resume, selection on the validation metric, scoring, ``RUN/eval/`` for other zoos, rank-0
writes) and, once registered, the command line has ``weightspace train weight-scale`` and
``weightspace evaluate`` for it.

Run (seconds on a CPU; it first trains a small zoo of CNNs on scikit-learn's 8×8 digits)::

    python examples/minimal_task.py OUT
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from weightspace import viz
from weightspace.data.container import Zoo
from weightspace.space.spec import NetworkSpec
from weightspace.tasks import register
from weightspace.tasks.base import Items, Task, TaskConfig, invariant_model, option
from weightspace.tasks.metrics import regression_metrics
from weightspace.tasks.sources import load_any_zoo
from weightspace.train import Supervised, predict


@dataclass
class WeightScaleConfig(TaskConfig):
    """``zoo``, ``model`` and ``out`` first; the training fields are :class:`TaskConfig`'s."""

    models = ("hnp", "statnet")
    nfn_models = ("hnp",)

    zoo: str
    model: str
    out: str
    epochs: int = option(10, "passes over the training split", kw_only=True)
    batch_size: int = option(8, "networks per step", kw_only=True)
    lr: float = option(3e-3, "Adam's learning rate", kw_only=True)
    hidden_channels: tuple[int, ...] = (8, 8)
    head_hidden: tuple[int, ...] = (32,)


def weight_scale(part: Zoo) -> Tensor:
    """``(N,)``: the root-mean-square of each network's weights and biases."""
    return part.features.flatten().pow(2).mean(dim=1).sqrt()


def mse(predicted: Tensor, target: Tensor) -> Tensor:
    return ((predicted.reshape(-1) - target) ** 2).mean()


@register
class WeightScale(Task):
    """Regress each network's weight scale from its weights; select on validation R²."""

    name = command = "weight-scale"
    help = "predict each network's weight scale (an example task)"
    config_class = WeightScaleConfig
    data_field, noun, data_help = "zoo", "zoo", "zoo folder"
    metric, higher_is_better, min_split = "r2", True, 2
    required = ("hidden_channels", "head_hidden")

    def load(self, source: str, *, progress: bool = False) -> Zoo:
        return load_any_zoo(source)

    def check(self, data: Zoo, where: str) -> tuple[Zoo, dict[str, Any]]:
        finite, dropped = data.finite()
        return finite, {"dropped": dropped}

    def items(self, part: Zoo, *, train: bool) -> Items:
        return Items(part.features, weight_scale(part))

    def build(self, spec: NetworkSpec) -> nn.Module:
        s = self.settings
        return invariant_model(s["model"], spec, s["hidden_channels"], s["head_hidden"], 1)

    def objective(self) -> Supervised:
        return Supervised(mse)

    def metric_fn(self, predicted: Tensor, target: Tensor) -> float:
        return regression_metrics(predicted, target)["r2"]

    def score(self, model: nn.Module, test: Zoo, title: str, out: Path | None) -> dict[str, Any]:
        predicted, actual = predict(model, self.items(test, train=False))
        predicted, actual = predicted.reshape(-1).cpu(), actual.cpu()
        if out is not None:
            viz.scatter(predicted, actual, out / "scatter.png", title=title, xlabel="weight RMS")
        return {**regression_metrics(predicted, actual), "n_test": len(test)}


def main(out: Path) -> int:
    from weightspace.cli import main as cli
    from weightspace.data.zoo import ZooConfig, generate_zoo

    torch.set_num_threads(1)
    zoo = out / "zoo"
    tiny = {"epochs": 1, "chunk_size": 48, "limit_train": 128, "limit_test": 64}
    generate_zoo(ZooConfig("digits", 48, str(zoo), **tiny), progress=False)
    run = ["--zoo", str(zoo), "--model", "hnp", "--out", str(out / "run")]
    status = cli(["train", "weight-scale", *run])
    return status or cli(["evaluate", "--run", str(out / "run"), "--zoo", str(zoo)])


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/minimal-task")))
