"""weightspace.data.tickets: (init, IMP mask) pairs, masked batched training, the store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F

from weightspace.cli import main
from weightspace.data.images import load_images
from weightspace.data.tickets import (
    TicketConfig,
    TicketRecipe,
    check_mask,
    generate_tickets,
    init_mlp,
    load_tickets,
    magnitude_mask,
    random_mask,
    ticket_spec,
    train_masked,
)
from weightspace.data.zoo import network_seed

pytestmark = pytest.mark.usefixtures("one_thread")

#: 3 chunks of 2 MLPs 64 → 8 → 8 → 10 on digits, 2 epochs, 80 % sparse.
BASE = {
    "dataset": "digits",
    "networks": 6,
    "seed": 1,
    "sparsity": 0.8,
    "hidden": (8, 8),
    "chunk_size": 2,
    "recipe": TicketRecipe(epochs=2, batch_size=64),
}
SPEC = ticket_spec(64, (8, 8))


@pytest.fixture(scope="module")
def digits():
    return load_images("digits")


@pytest.fixture(scope="module")
def tickets(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tickets") / "set"
    return generate_tickets(TicketConfig(out=str(out), **BASE), progress=False, threads=1)


def _inits(seeds: list[int]) -> list[torch.Tensor]:
    each = [init_mlp(SPEC, torch.Generator().manual_seed(s)) for s in seeds]
    return [torch.stack([net[j] for net in each]) for j in range(len(SPEC.tensors))]


# ------------------------------------------------------------------ masks
def test_magnitude_mask_is_global_over_layers() -> None:
    g = torch.Generator().manual_seed(0)
    weights = [
        torch.randn(3, *t.shape, generator=g) * (j + 1) for j, t in enumerate(SPEC.tensors[:3])
    ]
    masks = magnitude_mask(weights, SPEC, 0.9)
    total = sum(math.prod(t.shape) for t in SPEC.tensors[:3])
    keep = round(0.1 * total)
    for b in range(3):
        flat = np.concatenate([w[b].abs().flatten().numpy() for w in weights])
        expected = np.zeros(total)
        expected[np.argsort(-flat, kind="stable")[:keep]] = 1
        got = np.concatenate([m[b].flatten().numpy() for m in masks])
        np.testing.assert_array_equal(got, expected)
    # The larger third layer keeps a larger share: the pruning is global, not per layer.
    assert masks[2].mean() > masks[0].mean()


def test_random_masks_are_exact_and_seeded() -> None:
    a = random_mask(SPEC, 0.8, [5, 6])
    b = random_mask(SPEC, 0.8, [5, 7])
    total = sum(math.prod(t.shape) for t in SPEC.tensors[:3])
    for masks in (a, b):
        kept = sum(m.flatten(1).sum(1) for m in masks)
        assert kept.tolist() == [round(0.2 * total)] * 2
    assert all(torch.equal(x[0], y[0]) for x, y in zip(a, b))  # same seed, same mask
    assert not all(torch.equal(x[1], y[1]) for x, y in zip(a, b))


def test_bad_masks_and_sparsities_are_refused() -> None:
    masks = random_mask(SPEC, 0.8, [1])
    masks[1] = masks[1] * 0.5
    with pytest.raises(ValueError, match="mask W2 is not binary"):
        check_mask(masks, SPEC, "test")
    with pytest.raises(ValueError, match=r"mask W1 has shape \(1, 8, 63\)"):
        check_mask([torch.ones(1, 8, 63), *masks[1:]], SPEC, "test")
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="sparsity must lie in"):
            magnitude_mask(masks, SPEC, bad)
        with pytest.raises(ValueError, match="sparsity must lie in"):
            TicketConfig("digits", 4, "x", sparsity=bad)


# ------------------------------------------------------------------ masked training
def test_pruned_weights_stay_exactly_zero_under_every_rule(digits) -> None:
    seeds = [1, 2, 3]
    masks = random_mask(SPEC, 0.8, seeds)
    for optimizer in ("adam", "sgd", "rmsprop"):
        recipe = TicketRecipe(epochs=1, batch_size=128, optimizer=optimizer, l2=1e-2)
        trained, acc = train_masked(SPEC, _inits(seeds), seeds, digits, recipe, masks=masks)
        for w, m in zip(trained, masks):
            assert bool((w[m == 0] == 0).all()), optimizer
            assert float((w[m == 1] != 0).float().mean()) > 0.99, optimizer
        assert acc.shape == (3,)


def test_masked_training_equals_a_torch_loop(digits) -> None:
    """One network, masked Adam in BatchedTrainer == nn.Linear layers with masked gradients."""
    seed = network_seed(0, 4)
    masks = random_mask(SPEC, 0.7, [seed])
    init = _inits([seed])
    recipe = TicketRecipe(epochs=1, batch_size=100)
    trained, _ = train_masked(SPEC, init, [seed], digits, recipe, masks=masks)

    from weightspace.data.tickets import _order_seed

    layers = [nn.Linear(a, b) for a, b in zip(SPEC.widths[:-1], SPEC.widths[1:])]
    with torch.no_grad():
        for j, layer in enumerate(layers):
            layer.weight.copy_(init[j][0] * masks[j][0])
            layer.bias.copy_(init[3 + j][0])
    params = [p for layer in layers for p in layer.parameters()]
    opt = torch.optim.Adam(params, lr=recipe.learning_rate)
    x, y = digits.train_x.flatten(1), digits.train_y
    g = torch.Generator().manual_seed(_order_seed(seed))
    order = torch.randperm(x.shape[0], generator=g)
    for s in range(math.ceil(x.shape[0] / recipe.batch_size)):
        idx = order[s * recipe.batch_size : (s + 1) * recipe.batch_size]
        h = x[idx]
        for j, layer in enumerate(layers):
            h = layer(h) if j == len(layers) - 1 else torch.relu(layer(h))
        opt.zero_grad()
        F.cross_entropy(h, y[idx]).backward()
        for j, layer in enumerate(layers):
            layer.weight.grad *= masks[j][0]
        opt.step()
    for j, layer in enumerate(layers):
        torch.testing.assert_close(trained[j][0], layer.weight.detach(), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(trained[3 + j][0], layer.bias.detach(), atol=1e-5, rtol=1e-4)


def test_train_masked_refuses_bad_input(digits) -> None:
    seeds = [1]
    init = _inits(seeds)
    with pytest.raises(ValueError, match="images have 64 pixels"):
        train_masked(ticket_spec(784), init, seeds, digits, TicketRecipe(epochs=1))
    init[4] = init[4].clone()
    init[4][0, 0] = float("nan")
    with pytest.raises(ValueError, match="init: tensor b2 holds NaN"):
        train_masked(SPEC, init, seeds, digits, TicketRecipe(epochs=1))


# ------------------------------------------------------------------ the store
def test_ticket_set_holds_the_pruned_masks_of_its_inits(tickets: Path, digits) -> None:
    data = load_tickets(tickets, n_test=2, n_val=1)
    assert len(data) == 6 and data.spec == SPEC and data.sparsity == 0.8
    seeds = [network_seed(1, i) for i in range(6)]
    assert data.seeds.tolist() == seeds
    init = _inits(seeds)
    for got, want in zip(data.inits.weights + data.inits.biases, init):
        assert torch.equal(got[:, 0], want)
    # The stored mask is the magnitude mask of the dense-trained weights, and retraining the
    # init with it gives the recorded IMP accuracy (same data order, same bytes).
    trained, dense = train_masked(SPEC, init, seeds, digits, data.recipe)
    masks = magnitude_mask(trained[:3], SPEC, 0.8)
    for got, want in zip(data.masks.weights, masks):
        assert torch.equal(got[:, 0], want)
    assert all(bool((b == 1).all()) for b in data.masks.biases)
    assert torch.allclose(data.accuracy["dense"], dense)
    _, imp = train_masked(SPEC, init, seeds, digits, data.recipe, masks=masks)
    assert torch.allclose(data.accuracy["imp"], imp)
    rows = json.loads((tickets / "chunks" / "chunk-00001.json").read_text())["rows"]
    assert [r["index"] for r in rows] == [2, 3]
    assert all(0 <= r["random_test_accuracy"] <= 1 for r in rows)
    assert len(rows[0]["mask_density"]) == 3
    counts = {n: len(data.part(n)) for n in ("train", "val", "test")}
    assert counts == {"train": 3, "val": 1, "test": 2}


def test_rank_sharding_and_resume_give_the_same_set(
    tickets: Path, tmp_path: Path, monkeypatch
) -> None:
    out = tmp_path / "sharded"
    config = TicketConfig(out=str(out), **BASE)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    generate_tickets(config, progress=False, threads=1)
    assert sorted(p.name for p in (out / "chunks").iterdir()) == [
        "chunk-00001.json",
        "chunk-00001.safetensors",
    ]
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.delenv("RANK")
    generate_tickets(config, progress=False, threads=1)  # rank 0's chunks and the header
    for name in sorted(p.name for p in (tickets / "chunks").iterdir()):
        a, b = tickets / "chunks" / name, out / "chunks" / name
        if name.endswith(".json"):
            assert json.loads(a.read_text()) == json.loads(b.read_text())
        else:
            ta, tb = load_file(a), load_file(b)
            assert all(torch.equal(ta[k], tb[k]) for k in ta)
    with pytest.raises(ValueError, match=r"sparsity: stored 0\.8, requested 0\.9"):
        generate_tickets(
            TicketConfig(out=str(out), **{**BASE, "sparsity": 0.9}), progress=False, threads=1
        )


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_missing_truncated_and_bad_chunks_are_named(tickets: Path, tmp_path: Path) -> None:
    missing = _copy(tickets, tmp_path / "missing")
    (missing / "chunks" / "chunk-00002.json").unlink()
    with pytest.raises(ValueError, match=r"incomplete: chunk-00002\.json missing"):
        load_tickets(missing, n_test=2, n_val=1)
    truncated = _copy(tickets, tmp_path / "truncated")
    st = truncated / "chunks" / "chunk-00001.safetensors"
    st.write_bytes(st.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"chunk-00001\.safetensors' is truncated or corrupt"):
        load_tickets(truncated, n_test=2, n_val=1)
    # generate_tickets redoes what is missing or truncated
    generate_tickets(TicketConfig(out=str(truncated), **BASE), progress=False, threads=1)
    assert load_file(st).keys() == load_file(tickets / "chunks" / "chunk-00001.safetensors").keys()
    for name, value, match in (
        ("mask.W2", 0.5, "mask W2 is not binary"),
        ("init.W1", float("nan"), "init: tensor W1 holds NaN"),
    ):
        bad = _copy(tickets, tmp_path / name)
        path = bad / "chunks" / "chunk-00000.safetensors"
        tensors = load_file(path)
        tensors[name][0].view(-1)[0] = value
        save_file(tensors, path, metadata={"format": "weightspace-tickets", "chunk": "0"})
        with pytest.raises(ValueError, match=match):
            load_tickets(bad, n_test=2, n_val=1)
    with pytest.raises(ValueError, match="leave none to train on"):
        load_tickets(tickets, n_test=5, n_val=1)


def test_cli_generates_and_refuses_a_bad_sparsity(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    argv = ["tickets", "generate", "--dataset", "digits", "--networks", "2", "--out", str(out)]
    tiny = ["--hidden", "4,4", "--epochs", "1", "--limit-train", "64", "--limit-test", "32"]
    assert main([*argv, "--sparsity", "1.5", *tiny]) == 2
    assert "sparsity must lie in (0, 1)" in capsys.readouterr().err
    assert main([*argv, "--sparsity", "0.5", *tiny]) == 0
    assert f"tickets: {out}" in capsys.readouterr().out
    assert len(load_tickets(out, n_test=0, n_val=0)) == 2
