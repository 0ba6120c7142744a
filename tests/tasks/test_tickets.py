"""weightspace.tasks.tickets: masks predicted from inits, scored by training them."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from weightspace import WeightSpaceFeatures
from weightspace.cli import main
from weightspace.data.tickets import (
    TicketConfig,
    TicketRecipe,
    generate_tickets,
    load_tickets,
    train_masked,
)
from weightspace.models.ticket_vae import allocated_top_k, sampled_top_k
from weightspace.tasks import runner
from weightspace.tasks.registry import TASKS
from weightspace.tasks.report import learning_curve
from weightspace.tasks.tickets import (
    TICKET_MODELS,
    Tickets,
    TicketTrainConfig,
    run_tickets,
)

pytestmark = pytest.mark.usefixtures("one_thread")

PNG = b"\x89PNG\r\n\x1a\n"
#: MLPs 64 → 8 → 8 → 10 on 600 digits, 80 % sparse, 3 epochs each.
SET = {
    "dataset": "digits",
    "sparsity": 0.8,
    "hidden": (8, 8),
    "chunk_size": 15,
    "recipe": TicketRecipe(epochs=3, batch_size=32),
    "limit_train": 600,
}
TINY = {"epochs": 2, "batch_size": 4, "hidden_channels": (4, 4), "n_test": 5, "n_val": 5}


@pytest.fixture(scope="module")
def ticket_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tickets") / "set"
    return generate_tickets(
        TicketConfig(out=str(out), networks=30, **SET), progress=False, threads=1
    )


@pytest.fixture(scope="module")
def hnp_run(ticket_set: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "hnp"
    run_tickets(TicketTrainConfig(str(ticket_set), "hnp", str(out), **TINY), progress=False)
    return out


def test_the_task_is_registered_with_its_contract() -> None:
    assert TASKS["tickets"] is Tickets and Tickets.command == "tickets"
    assert TICKET_MODELS == ("np", "hnp", "pt")
    with pytest.raises(ValueError, match="kl_weight must be a finite number >= 0"):
        TicketTrainConfig("t", "hnp", "o", kl_weight=-1.0)
    with pytest.raises(ValueError, match="unknown model 'mlp'"):
        TicketTrainConfig("t", "mlp", "o")


def test_a_run_reports_trained_masks_beside_the_references(hnp_run: Path, ticket_set: Path) -> None:
    metrics = json.loads((hnp_run / "metrics.json").read_text())
    for kind in ("mask", "dense", "imp", "random", "magnitude"):
        assert 0 <= metrics[f"{kind}_test_accuracy"] <= 1
        assert metrics[f"{kind}_test_accuracy_std"] >= 0
    assert 0 <= metrics["iou_with_imp"] <= 1 and metrics["n_test"] == 5
    assert metrics["model"] == "hnp" and metrics["sparsity"] == 0.8
    for name in ("accuracy.png", "layer_sparsity.png", "input_usage.png"):  # 64 inputs: 8x8
        assert (hnp_run / name).read_bytes()[:8] == PNG
    # dense / IMP / random come from the set's records for the same held-out inits
    data = load_tickets(ticket_set, n_test=5, n_val=5)
    test = data.part("test")
    for kind in ("dense", "imp", "random"):
        assert metrics[f"{kind}_test_accuracy"] == pytest.approx(float(test.accuracy[kind].mean()))
    # the predicted masks keep exactly 20 % of the weights, and training them again gives the
    # reported accuracy (same recipe, same data order)
    task, spec, model = runner.load_trained(Tickets, hnp_run)
    masks = task.predict_masks(model, test.inits)
    kept = sum(w.flatten(1).sum(1) for w in masks.weights)
    total = sum(w[0].numel() for w in masks.weights)
    assert kept.tolist() == [round(0.2 * total)] * 5
    init = [w[:, 0] for w in test.inits.weights] + [b[:, 0] for b in test.inits.biases]
    _, acc = train_masked(
        spec, init, test.seeds.tolist(), test.images(), test.recipe,
        masks=[w[:, 0] for w in masks.weights],
    )  # fmt: skip
    assert float(acc.mean()) == pytest.approx(metrics["mask_test_accuracy"])
    with (hnp_run / "tickets.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and float(rows[0]["imp_test_accuracy"]) == pytest.approx(
        float(test.accuracy["imp"][0])
    )
    density = metrics["layer_density"]
    assert set(density) == {"mask", "imp", "random", "magnitude"} and len(density["imp"]) == 3
    # First-layer use, counted here from the masks themselves.
    w1 = masks.weights[0][:, 0].bool()  # (5, 8 hidden, 64 inputs)
    used = metrics["first_layer"]["mask"]
    assert used["inputs_used"] == pytest.approx(float(w1.any(1).sum(1).double().mean()))
    assert used["neurons_without_inputs"] == pytest.approx(
        float((~w1.any(2)).sum(1).double().mean())
    )
    imp_w1 = test.masks.weights[0][:, 0].bool()
    assert metrics["first_layer"]["imp"]["inputs_used"] == pytest.approx(
        float(imp_w1.any(1).sum(1).double().mean())
    )


def test_input_maps_are_square_images_of_the_first_layers_kept_share() -> None:
    from weightspace.space.spec import NetworkSpec
    from weightspace.tasks.tickets import _input_maps

    spec = NetworkSpec((9, 4, 2))
    w1 = torch.zeros(2, 1, 4, 9)
    w1[0, 0, :, 4] = 1  # network 0 keeps every weight of pixel (1, 1), the centre
    w1[1, 0, 0, 0] = 1  # network 1 keeps one weight of pixel (0, 0)
    masks = WeightSpaceFeatures(
        [w1, torch.zeros(2, 1, 2, 4)], [torch.ones(2, 1, 4), torch.ones(2, 1, 2)], spec
    )
    (image,) = _input_maps({"m": masks}, 9).values()
    expected = torch.zeros(3, 3, dtype=torch.float64)
    expected[1, 1], expected[0, 0] = 0.5, 1 / 8
    assert torch.equal(image, expected)
    # Inputs that are not a square image get no map.
    assert _input_maps({"m": masks}, 10) is None


@pytest.mark.parametrize("model", ["np", "pt"])
def test_other_models_train(model: str, ticket_set: Path, tmp_path: Path) -> None:
    config = TicketTrainConfig(
        str(ticket_set), model, str(tmp_path / model), **{**TINY, "epochs": 1}
    )
    metrics = run_tickets(config, progress=False)
    assert metrics["model"] == model and 0 <= metrics["mask_test_accuracy"] <= 1
    log = [
        json.loads(line) for line in (tmp_path / model / "metrics.jsonl").read_text().splitlines()
    ]
    assert {"bce", "kl"} <= set(log[0]) or {"train_bce", "train_kl"} <= set(log[0])


def test_evaluate_on_another_ticket_set(
    hnp_run: Path, ticket_set: Path, tmp_path: Path, capsys
) -> None:
    other = generate_tickets(
        TicketConfig(out=str(tmp_path / "other"), networks=12, seed=5, **SET),
        progress=False,
        threads=1,
    )
    assert main(["evaluate", "--run", str(hnp_run), "--tickets", str(other)]) == 0
    out = hnp_run / "eval" / "other"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test"] == 5 and "iou_with_imp" in metrics
    assert (out / "accuracy.png").is_file()
    sparser = generate_tickets(
        TicketConfig(out=str(tmp_path / "sparser"), networks=12, **{**SET, "sparsity": 0.9}),
        progress=False, threads=1,
    )  # fmt: skip
    capsys.readouterr()
    assert main(["evaluate", "--run", str(hnp_run), "--tickets", str(sparser)]) == 2
    assert "pruned to sparsity 0.9, but the model" in capsys.readouterr().err


def test_predict_a_users_init(hnp_run: Path, ticket_set: Path, tmp_path: Path, capsys) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 10))
    by_name = tmp_path / "init.safetensors"
    tensors = {}
    for j, layer in enumerate(m for m in net if isinstance(m, nn.Linear)):
        tensors[f"W{j + 1}"] = layer.weight.detach().clone()
        tensors[f"b{j + 1}"] = layer.bias.detach().clone()
    save_file(tensors, by_name)
    state = tmp_path / "state.safetensors"
    save_file({k: v.detach().clone() for k, v in net.state_dict().items()}, state)
    argv = ["tickets", "predict", "--run", str(hnp_run), "--init"]
    assert main([*argv, str(by_name), "--out", str(tmp_path / "mask.safetensors")]) == 0
    assert main([*argv, str(state), "--out", str(tmp_path / "mask2.safetensors")]) == 0
    mask, mask2 = (
        load_file(tmp_path / "mask.safetensors"),
        load_file(tmp_path / "mask2.safetensors"),
    )
    assert sorted(mask) == ["W1", "W2", "W3"] and mask["W1"].shape == (8, 64)
    assert all(torch.equal(mask[k], mask2[k]) for k in mask)
    assert all(bool(((m == 0) | (m == 1)).all()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in mask.values()) == round(0.2 * total)
    # the same mask as the task predicts for that init
    task, spec, model = runner.load_trained(Tickets, hnp_run)
    from weightspace.tasks.tickets import _read_init

    expected = task.predict_masks(model, _read_init(by_name, spec)[0])
    assert all(torch.equal(mask[f"W{j + 1}"], w[0, 0]) for j, w in enumerate(expected.weights))
    capsys.readouterr()
    wrong = dict(tensors, W1=torch.zeros(8, 63))
    save_file(wrong, tmp_path / "wrong.safetensors")
    assert main([*argv, str(tmp_path / "wrong.safetensors"), "--out", str(tmp_path / "m")]) == 2
    assert "tensor W1 has shape (8, 63)" in capsys.readouterr().err
    nan = dict(tensors, b2=torch.full((8,), math.nan))
    save_file(nan, tmp_path / "nan.safetensors")
    assert main([*argv, str(tmp_path / "nan.safetensors"), "--out", str(tmp_path / "m")]) == 2
    assert "tensor b2 holds NaN" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "none.safetensors"), "--out", str(tmp_path / "m")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_report_gathers_ticket_runs(hnp_run: Path, tmp_path: Path) -> None:
    rows = learning_curve([str(hnp_run)], str(tmp_path / "report"))
    assert rows[0]["metric"] == "mask_test_accuracy"


def test_hnp_on_wide_inputs_is_refused_before_it_fills_memory() -> None:
    from weightspace.space.spec import NetworkSpec

    task = Tickets({"model": "hnp", "hidden_channels": [8, 8, 8], "latent_channels": 5})
    with pytest.raises(ValueError, match=r"would hold 517,877,136 parameters .*use 'np' or 'pt'"):
        task.build(NetworkSpec((784, 128, 128, 10)))
    np_task = Tickets({"model": "np", "hidden_channels": [8, 8, 8], "latent_channels": 5})
    assert (
        sum(p.numel() for p in np_task.build(NetworkSpec((784, 128, 128, 10))).parameters()) < 10**5
    )


def test_magnitude_and_sampled_decoding_reach_the_run_through_the_cli(
    ticket_set: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pt-mag"
    args = ["train", "tickets", "--tickets", str(ticket_set), "--model", "pt", "--out", str(out)]
    args += ["--magnitude", "--decoding", "sample", "--epochs", "1", "--hidden-channels", "4"]
    args += ["--n-test", "5", "--n-val", "3"]
    assert main(args) == 0
    task = json.loads((out / "config.json").read_text())["task"]
    assert task["magnitude"] is True and task["decoding"] == "sample"
    trained, _, model = runner.load_trained(Tickets, out)
    assert model.magnitude and model.encoder.in_channels == 3
    # The run's masks are the seeded draw, within the same per-tensor budgets as its top logits.
    test = load_tickets(ticket_set, n_test=5, n_val=3).part("test")
    logits = trained.predict_logits(model, test.inits)
    drawn = trained.predict_masks(model, test.inits)
    assert all(
        torch.equal(a, b)
        for a, b in zip(drawn.weights, sampled_top_k(logits, test.sparsity, seed=0).weights)
    )
    top = allocated_top_k(logits, test.sparsity)
    assert [w.sum() for w in drawn.weights] == [w.sum() for w in top.weights]
    assert main(["evaluate", "--run", str(out), "--tickets", str(ticket_set)]) == 0
    # At their defaults the fields are left out of the settings, so older runs still resume.
    plain = TicketTrainConfig(str(ticket_set), "pt", str(tmp_path / "pt"), **TINY)
    assert "magnitude" not in plain.settings() and "decoding" not in plain.settings()
    with pytest.raises(ValueError, match="decoding must be 'top' with allocation 'global'"):
        TicketTrainConfig(
            str(ticket_set), "pt", "x", **TINY, decoding="sample", allocation="global"
        )


def test_a_learned_io_encoding_reaches_the_np_stacks(ticket_set: Path, tmp_path: Path) -> None:
    from weightspace.nn.encoding import LearnedIOEncoding, SinusoidalIOEncoding

    out = tmp_path / "np-learned"
    args = ["train", "tickets", "--tickets", str(ticket_set), "--model", "np", "--out", str(out)]
    args += ["--io-encoding", "learned", "--epochs", "1", "--hidden-channels", "4"]
    args += ["--n-test", "5", "--n-val", "3"]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["task"]["io_encoding"] == "learned"
    _, spec, model = runner.load_trained(Tickets, out)
    for stack in (model.encoder, model.decoder):
        kinds = {type(m) for m in stack.modules()}
        assert LearnedIOEncoding in kinds and SinusoidalIOEncoding not in kinds
    # One embedding per input pixel of W_1.
    enc = next(m for m in model.decoder.modules() if isinstance(m, LearnedIOEncoding))
    assert enc.input_embedding.shape[1] == spec.widths[0]
    # The default stays sinusoidal under NP, and is left out of the settings (old runs resume).
    default = Tickets({"model": "np", "hidden_channels": [4, 4], "latent_channels": 5})
    assert any(isinstance(m, SinusoidalIOEncoding) for m in default.build(spec).modules())
    plain = TicketTrainConfig(str(ticket_set), "np", str(tmp_path / "np"), **TINY)
    assert "io_encoding" not in plain.settings()
    with pytest.raises(ValueError, match="io_encoding must be 'auto' for model 'pt'"):
        TicketTrainConfig(str(ticket_set), "pt", "x", **TINY, io_encoding="learned")
