"""weightspace.train.batched: dropout through forward's hook, and the trainers' utilities."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch
from torch import Tensor, nn

from tests.nets import cnn, mlp, stacked
from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.zoo import zoo_module
from weightspace.functional import forward
from weightspace.train.batched import dropout_forward, retain_freed_memory

B = 3


pytestmark = pytest.mark.usefixtures("one_thread")


def assert_close(actual: Tensor, expected: Tensor, atol: float = 1e-10) -> None:
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected, atol=atol, rtol=0)


# ------------------------------------------- zoo networks: dropout, activations
@pytest.mark.parametrize(
    "acts",
    [["relu", "tanh", "relu"], ["tanh", "tanh", "relu"]],
    ids=["interleaved", "blocks"],
)
def test_per_network_activation_and_dropout_on_zoo_networks(acts: list[str]) -> None:
    torch.manual_seed(0)
    nets = [zoo_module(a) for a in acts]
    features = WeightSpaceFeatures.from_modules(nets)
    x = torch.randn(3, 7, 1, 8, 8)
    out = forward(features, x, acts, stride=2, padding=1)
    expected = torch.stack([net(x[b]) for b, net in enumerate(nets)])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    shared = forward(features, x[0], acts, stride=2, padding=1)
    torch.testing.assert_close(shared, torch.stack([net(x[0]) for net in nets]), atol=1e-6, rtol=0)
    # Dropout: all rates 0 is exactly forward; a network with p = 0 is untouched.
    none = dropout_forward(features, x, acts, torch.zeros(3), stride=2, padding=1)
    assert torch.equal(none, out)
    p = torch.tensor([0.0, 0.5, 0.3])
    g = torch.Generator().manual_seed(1)
    dropped = dropout_forward(features, x, acts, p, generator=g, stride=2, padding=1)
    assert torch.equal(dropped[0], out[0])
    assert not torch.allclose(dropped[1], out[1])
    g = torch.Generator().manual_seed(1)
    again = dropout_forward(features, x, acts, p, generator=g, stride=2, padding=1)
    assert torch.equal(again, dropped)
    with pytest.raises(ValueError, match=r"dropout must be a \(3,\) tensor"):
        dropout_forward(features, x, acts, torch.zeros(2), stride=2, padding=1)
    with pytest.raises(ValueError, match=r"dropout rates must lie in \[0, 1\)"):
        dropout_forward(features, x, acts, torch.ones(3), stride=2, padding=1)
    with pytest.raises(ValueError, match="activation lists 2 entries"):
        dropout_forward(features, x, acts[:2], p, stride=2, padding=1)


def test_dropout_rate_and_scale() -> None:
    """Entries are dropped at rate p and kept ones scaled by 1 / (1 - p): the mean survives."""
    features = WeightSpaceFeatures(
        [torch.ones(2, 1, 4000, 1), torch.ones(2, 1, 1, 4000)],
        [torch.zeros(2, 1, 4000), torch.zeros(2, 1, 1)],
    )
    x = torch.ones(2, 50, 1)
    p = torch.tensor([0.2, 0.6])
    out = dropout_forward(features, x, "identity", p)
    # Hidden layer (2, 50, 4000) of ones → dropped entries 0, kept 1 / (1 - p); sum = output.
    for b, rate in enumerate(p.tolist()):
        assert abs(out[b].mean().item() / 4000 - 1) < 0.02
        kept = out[b] * (1 - rate)  # number of kept hidden units per input
        assert abs(kept.mean().item() / 4000 - (1 - rate)) < 0.02


# ---------------------------------------------------------------- dropout (training)
_bt = importlib.import_module("weightspace.train.batched")


def _recorded_masks(monkeypatch: pytest.MonkeyPatch) -> list[Tensor]:
    """Record every dropout mask ``dropout_forward`` draws, in order."""
    masks: list[Tensor] = []
    draw = _bt._Dropout.mask

    def record(self, t: Tensor, axis: int, generator) -> Tensor:
        keep = draw(self, t, axis, generator)
        masks.append(keep.clone())
        return keep

    monkeypatch.setattr(_bt._Dropout, "mask", record)
    return masks


@pytest.mark.parametrize(
    "acts", [["relu", "tanh", "relu"], ["sigmoid"] * 3, ["tanh"] * 3], ids=["mixed", "sig", "tanh"]
)
@pytest.mark.parametrize("dim", [0, 2], ids=["mlp", "cnn2d"])
def test_dropout_training_matches_explicit_masks(monkeypatch, acts: list[str], dim: int) -> None:
    """Masks applied and kept entries scaled by 1/keep, before the next layer, per network."""
    torch.manual_seed(40)
    masks = _recorded_masks(monkeypatch)
    make = (lambda: cnn(2)) if dim else (lambda: mlp((4, 6, 5, 3), nn.ReLU))
    modules, features = stacked(make)
    x = torch.randn(B, 7, 2, 8, 7, dtype=torch.float64) if dim else torch.randn(B, 7, 4).double()
    p = torch.tensor([0.5, 0.0, 0.3])
    out = dropout_forward(
        features, x, acts, p, generator=torch.Generator().manual_seed(0), stride=2, padding=1
    )
    # Networks are run one sub-batch per activation, in first-seen order of the functions.
    groups: dict[str, list[int]] = {}
    for b, a in enumerate(acts):
        groups.setdefault(a, []).append(b)
    hidden = 3 if dim else 2
    by_network: dict[int, list[Tensor]] = {}
    it = iter(masks)
    for members in groups.values():
        if all(p[b] == 0 for b in members):
            continue  # an inactive dropout draws nothing
        for layer in range(hidden):
            keep = next(it)  # conv: (N, G * n, ...), network-major channels; dense: (G, N, n)
            for j, b in enumerate(members):
                if dim and layer < 2:
                    n = keep.shape[1] // len(members)
                    by_network.setdefault(b, []).append(keep[:, j * n : (j + 1) * n])
                else:
                    by_network.setdefault(b, []).append(keep[j])
    assert next(it, None) is None
    for b, module in enumerate(modules):
        act = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[acts[b]]
        keep_p = round((1 - p[b].item()) * 256) / 256
        h = x[b]
        layer = 0
        with torch.no_grad():
            for m in module:
                if isinstance(m, nn.ReLU):
                    h = act(h)
                    if p[b] > 0:
                        h = h * by_network[b][layer].to(h.dtype) / keep_p
                    layer += 1
                else:
                    h = m(h)
        assert_close(out[b], h, atol=1e-9)


@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_gradcheck_dropout_training(act: str) -> None:
    """The masked activations' hand-written backward, through the folded 1/keep scaling."""
    torch.manual_seed(41)
    spec = NetworkSpec((2, 3, 3, 2), ((3, 3), (3, 3), ()))
    tensors = [
        torch.randn(2, 1, *s, dtype=torch.float64, requires_grad=True) for s in spec.weight_shapes
    ]
    tensors += [
        torch.randn(2, 1, *s, dtype=torch.float64, requires_grad=True) for s in spec.bias_shapes
    ]
    x = torch.randn(2, 3, 2, 6, 5, dtype=torch.float64, requires_grad=True)
    p = torch.tensor([0.4, 0.2])

    def fn(xx: Tensor, *ts: Tensor) -> Tensor:
        g = torch.Generator().manual_seed(3)  # the same masks on every call
        return dropout_forward(
            WeightSpaceFeatures.from_tensors(ts), xx, act, p, generator=g, stride=2, padding=1
        )

    assert torch.autograd.gradcheck(fn, (x, *tensors))


def test_random_bytes_are_deterministic_and_uniform() -> None:
    cpu = torch.device("cpu")
    g = torch.Generator().manual_seed(5)
    a = _bt._random_bytes(80_003, cpu, g)
    after = _bt._random_bytes(80_003, cpu, g)  # the generator's stream moved on
    b = _bt._random_bytes(80_003, cpu, torch.Generator().manual_seed(5))
    c = _bt._random_bytes(80_003, cpu, torch.Generator().manual_seed(6))
    assert a.dtype == torch.uint8 and a.shape == (80_003,)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, after)
    counts = torch.bincount(a.long(), minlength=256).double()
    expected = a.numel() / 256
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 400  # 255 degrees of freedom: mean 255, sd 22.6
    # Neighbouring bytes are independent: the 65 536 pairs of (even, odd) bytes are uniform.
    pairs = a[:80_000:2].long() * 256 + a[1:80_000:2].long()
    counts = torch.bincount(pairs, minlength=2**16).double()
    expected = pairs.numel() / 2**16
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert abs(chi2 - (2**16 - 1)) < 6 * (2 * (2**16 - 1)) ** 0.5


def test_random_bytes_follow_the_global_generator() -> None:
    cpu = torch.device("cpu")
    torch.manual_seed(11)
    a = _bt._random_bytes(1000, cpu, None)
    torch.manual_seed(11)
    assert torch.equal(_bt._random_bytes(1000, cpu, None), a)


def test_dropout_rate_holds_on_large_draws() -> None:
    features = WeightSpaceFeatures(
        [torch.ones(2, 1, 4000, 1), torch.ones(2, 1, 1, 4000)],
        [torch.zeros(2, 1, 4000), torch.zeros(2, 1, 1)],
    )
    out = dropout_forward(features, torch.ones(2, 50, 1), "identity", torch.tensor([0.2, 0.6]))
    for b in range(2):
        assert abs(out[b].mean().item() / 4000 - 1) < 0.02


# ------------------------------------------------------------------- memory
def test_retain_freed_memory_can_be_switched_off(monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTSPACE_RETAIN_MEMORY", "0")
    assert retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
@pytest.mark.parametrize("floats", [4 * 2**20, 12 * 2**20], ids=["16MB", "48MB"])
def test_retain_freed_memory_keeps_large_blocks_mapped(floats: int) -> None:
    """A training step's pattern: many large tensors alive at once, then all freed.

    By default glibc returns the freed heap top to the system (it exceeds the trim threshold),
    so the next step faults every page in again; after the call the pages are reused. Blocks
    above 32 MiB (the largest mmap threshold glibc accepts) are mapped afresh on every
    allocation unless mmap is switched off: the 48 MB case fails without ``M_MMAP_MAX = 0``.
    """
    code = """
import resource, sys, torch
from weightspace.train.batched import retain_freed_memory
on = sys.argv[1] == "1"
if on:
    assert retain_freed_memory() is True
def step():
    alive = [torch.ones(int(sys.argv[2])) for _ in range(8)]  # 8 blocks, touched
    del alive
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {}
    for on in ("0", "1"):
        run = subprocess.run(
            [sys.executable, "-c", code, on, str(floats)],
            capture_output=True,
            text=True,
            check=True,
        )
        faults[on] = int(run.stdout.strip())
    # 5 steps of 8 blocks of `pages` pages. Off, glibc trims the freed top of the heap (16 MB:
    # about two blocks per step fault in again, ~37k pages measured) or maps every block afresh
    # (48 MB: all 8 per step); on, a few thousand pages over the 5 steps.
    pages = floats * 4 // 4096
    assert faults["0"] > 5 * pages
    assert faults["1"] < faults["0"] / 4
