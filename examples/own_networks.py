"""Your own networks: save checkpoints in a loop, import them as a zoo, train a predictor.

README's "Your own networks" as one script:

1. train 20 small CNNs (a torchvision-style class: ``features``, global pooling,
   ``classifier``) on scikit-learn's 8×8 digits, each with its own learning rate and number of
   steps so that their test accuracies differ, and save each one's state dict with
   ``torch.save``;
2. write ``targets.csv``: one row per checkpoint, its name and its test accuracy;
3. ``weightspace zoo import`` the folder, with :class:`SmallCNN` as the template
   (``--module own_networks:SmallCNN``: its forward is traced, state dicts are read by key
   name, and the activation it applies, ReLU, is recorded);
4. ``weightspace train generalization``: a predictor of test accuracy from the weights;
5. ``weightspace evaluate`` it.

Run (seconds on a CPU)::

    python examples/own_networks.py OUT [--networks 20] [--epochs 30]

Twenty networks make a walkthrough, not a study: the test split holds three of them. The same
commands work for hundreds of checkpoints of any one feedforward architecture.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from weightspace.data.images import load_images


class SmallCNN(nn.Module):
    """The architecture of every network: the template ``--module own_networks:SmallCNN``.

    Shapes
    ------
    - input: ``(N, 1, H, W)`` images
    - output: ``(N, 10)`` logits
    """

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


def save_checkpoints(out: Path, networks: int = 20) -> None:
    """Train ``networks`` CNNs and save ``out/checkpoints/net{i}.pt`` and ``out/targets.csv``."""
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    digits = load_images("digits")
    rows = []
    for i in range(networks):
        torch.manual_seed(i)
        model = SmallCNN()
        opt = torch.optim.Adam(model.parameters(), lr=0.003 * 1.2**i)
        for _ in range(3 + 2 * i):
            opt.zero_grad()
            nn.functional.cross_entropy(model(digits.train_x), digits.train_y).backward()
            opt.step()
        with torch.no_grad():
            accuracy = (model(digits.test_x).argmax(1) == digits.test_y).float().mean().item()
        torch.save(model.state_dict(), out / "checkpoints" / f"net{i:02d}.pt")
        rows.append((f"net{i:02d}", accuracy))
    with open(out / "targets.csv", "w", newline="") as f:
        csv.writer(f).writerows([("name", "test_accuracy"), *rows])


def main(argv: list[str] | None = None) -> int:
    from weightspace.cli import main as weightspace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="runs/own-networks")
    parser.add_argument("--networks", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=30, help="predictor epochs")
    args = parser.parse_args(argv)
    out = Path(args.out)
    torch.set_num_threads(1)
    save_checkpoints(out, args.networks)
    zoo, run = str(out / "zoo"), str(out / "run")
    status = weightspace(
        ["zoo", "import", "--checkpoints", str(out / "checkpoints"), "--targets"]
        + [str(out / "targets.csv"), "--out", zoo, "--module", "own_networks:SmallCNN"]
    )
    train = ["train", "generalization", "--zoo", zoo, "--model", "statnet", "--out", run]
    status = status or weightspace([*train, "--epochs", str(args.epochs)])
    return status or weightspace(["evaluate", "--run", run, "--zoo", zoo])


if __name__ == "__main__":
    sys.exit(main())
