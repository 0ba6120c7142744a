"""benchmarks/zoo.py: both sides on the requested device, masks from the requested generator."""

from __future__ import annotations

import argparse

import pytest
import torch

from tests.benchmarks import load_script
from tests.conftest import DEVICES


def _args(device: str, mask_generator: str) -> argparse.Namespace:
    return argparse.Namespace(
        networks=4, epochs=1, batch_size=64, limit_train=None, reps=1, seed=0,
        device=device, mask_generator=mask_generator,
    )  # fmt: skip


@pytest.mark.parametrize("mask_generator", ["cpu", "device"])
@pytest.mark.parametrize("device", DEVICES)
def test_bench_runs_on_the_device_with_the_chosen_generator(device, mask_generator):
    zoo = load_script("zoo")
    result = zoo.bench("digits", _args(device, mask_generator))
    assert result["device"] == device
    assert result["mask_generator"] == mask_generator
    assert result["steps"] == 24  # 1500 digits in batches of 64
    assert result["batched_s"][0] > 0 and result["loop_s"][0] > 0


@pytest.mark.parametrize("device", DEVICES)
def test_mask_generator_decides_where_masks_are_drawn(monkeypatch, device):
    """The batched side hands the trainer a generator on the CPU or on the data's device."""
    zoo = load_script("zoo")
    seen = []
    real = zoo.zoo_trainer

    def spy(*args, generator, device, **kwargs):
        seen.append((generator.device.type, torch.device(device).type))
        return real(*args, generator=generator, device=device, **kwargs)

    monkeypatch.setattr(zoo, "zoo_trainer", spy)
    data = zoo.load_images("digits", limit_train=64)
    x, y = data.train_x.to(device), data.train_y.to(device)
    nets = [zoo._make_network(0, i, 64) for i in range(2)]
    idx = torch.stack([n.stream.take(32) for n in nets]).view(2, 1, 32).to(device)
    for choice in ("cpu", "device"):
        zoo.run_batched(nets, x, y, idx, choice)
    kind = torch.device(device).type
    assert seen == [("cpu", kind), (kind, kind)]
