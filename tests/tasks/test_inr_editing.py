"""weightspace.tasks.inr_editing: SIRENs edited in weight space so that they draw edited images."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import weightspace.data.inr as inr_module
from weightspace.cli import main
from weightspace.data.edits import edit_images
from weightspace.data.images import load_images
from weightspace.data.inr import (
    InrConfig,
    InrDataset,
    fit_inrs,
    init_sirens,
    load_inrs,
    psnr,
    render,
    source_images,
)
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.tasks import runner
from weightspace.tasks.inputs import AugmentedLoss, SymmetryAugmentation
from weightspace.tasks.inr_editing import (
    EDIT_MODELS,
    InrEditConfig,
    InrEditing,
    edit_inr_folder,
    load_edit_set,
    render_mse,
    run_inr_editing,
)
from weightspace.tasks.registry import TASKS
from weightspace.tasks.report import learning_curve
from weightspace.train.loop import Supervised, load_checkpoint

from .test_inr_classification import write_siren_folder

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"steps": 6, "warmup_steps": 2, "batch_size": 8, "hidden_channels": (8, 8)}
TINY_MLP = {"mlp_hidden": (16,)}
PNG = b"\x89PNG\r\n\x1a\n"


def tiny(model: str, inrs, out, edit: str = "dilate", **overrides) -> InrEditConfig:
    options = {**TINY, **(TINY_MLP if model == "mlp" else {}), **overrides}
    return InrEditConfig(inrs=str(inrs), model=model, out=str(out), edit=edit, **options)


@pytest.fixture(scope="module")
def runs(digits_inrs, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("runs")
    return {
        m: (root / m, run_inr_editing(tiny(m, digits_inrs, root / m), progress=False))
        for m in EDIT_MODELS
    }


def targets_of(inrs: Path, edit: str) -> tuple[InrDataset, torch.Tensor]:
    """The test INRs and their edited source images, computed here from the image dataset."""
    data = load_inrs(inrs).part("test")
    images = load_images("digits", limit_train=20, limit_test=20)
    return data, edit_images(source_images(data, images), edit)


# ------------------------------------------------------------------ runs
def test_the_task_is_registered_under_its_command() -> None:
    assert TASKS["inr-editing"] is InrEditing and InrEditing.command == "inr-edit"


@pytest.mark.parametrize("model", EDIT_MODELS)
def test_every_model_trains_and_writes_its_metrics(runs, digits_inrs, model) -> None:
    out, metrics = runs[model]
    assert json.loads((out / "metrics.json").read_text()) == json.loads(json.dumps(metrics))
    assert (metrics["model"], metrics["seed"], metrics["edit"]) == (model, 0, "dilate")
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (18, 2, 20)
    # 6 steps of batch 8 on 18 INRs: 3 steps per epoch, so 2 epochs.
    assert metrics["epochs_run"] == 2
    assert metrics["test_mse_01"] == pytest.approx(metrics["test_mse"] / 4)
    # identity_mse is the unedited INRs against the edited images, computed independently here.
    test, targets = targets_of(digits_inrs, "dilate")
    with torch.no_grad():
        identity = (render(test.features, 8, 8) - targets).square().mean()
    assert metrics["identity_mse"] == pytest.approx(float(identity), rel=1e-5)
    assert metrics["identity_mse_01"] == pytest.approx(float(identity) / 4, rel=1e-5)
    # test_mse is the selected model's edits against the same targets.
    _, _, model_ = runner.load_trained(InrEditing, out)
    with torch.no_grad():
        edited = model_.eval()(test.features)
        mse = (render(edited, 8, 8) - targets).square().mean()
    assert metrics["test_mse"] == pytest.approx(float(mse), rel=1e-5)
    assert metrics["ms_per_inr"] > 0 and metrics["train_time_s"] > 0
    assert (out / "edits.png").read_bytes()[:8] == PNG
    shown = load_file(out / "edits.safetensors")
    assert set(shown) == {"original", "target", "edited"}
    assert shown["target"].shape == (8, 1, 8, 8) and torch.equal(shown["target"], targets[:8])
    with open(out / "test_mse.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["index"]) for r in rows] == list(range(20, 40))
    assert sum(float(r["mse"]) for r in rows) / 20 == pytest.approx(metrics["test_mse"], rel=1e-5)
    saved = json.loads((out / "config.json").read_text())
    assert saved["task"]["edit"] == "dilate" and saved["task"]["image_size"] == [8, 8]
    assert "epochs" not in saved["task"] and saved["train"]["epochs"] == 2


def test_training_beats_the_identity_and_gamma_moves(digits_inrs, tmp_path) -> None:
    config = tiny("pt", digits_inrs, tmp_path / "run", steps=90, warmup_steps=0, lr=3e-3)
    metrics = run_inr_editing(config, progress=False)
    assert metrics["test_mse"] < 0.9 * metrics["identity_mse"]
    state = load_checkpoint(tmp_path / "run" / "best.pt")["model"]
    assert not torch.allclose(state["gamma"], torch.full((6,), 0.01))


def test_a_finished_run_is_rescored_not_retrained(runs, digits_inrs) -> None:
    out, metrics = runs["hnp"]
    before = (out / "best.pt").stat().st_mtime_ns
    again = run_inr_editing(tiny("hnp", digits_inrs, out), progress=False)
    assert (out / "best.pt").stat().st_mtime_ns == before
    assert again["test_mse"] == pytest.approx(metrics["test_mse"])
    with pytest.raises(ValueError, match="edit"):
        run_inr_editing(tiny("hnp", digits_inrs, out, edit="erode"), progress=False)


def test_evaluate_scores_another_folder_beside_the_run(runs, digits_inrs, tmp_path) -> None:
    out, metrics = runs["np"]
    copy = shutil.copytree(digits_inrs, tmp_path / "digits-copy")
    result = runner.evaluate(InrEditing, out, copy)
    assert result["test_mse"] == pytest.approx(metrics["test_mse"], rel=1e-6)
    assert result["identity_mse"] == pytest.approx(metrics["identity_mse"], rel=1e-6)
    assert Path(result["out"]) == out / "eval" / "digits-copy"
    assert (out / "eval" / "digits-copy" / "edits.png").is_file()
    assert main(["evaluate", "--run", str(out), "--inrs", str(copy)]) == 0


# ------------------------------------------------------------------ inr edit
def test_inr_edit_writes_an_inr_folder_of_the_edited_sirens(runs, digits_inrs, tmp_path) -> None:
    out, _ = runs["hnp"]
    folder = edit_inr_folder(out, digits_inrs, tmp_path / "edited", progress=False)
    edited, source = load_inrs(folder), load_inrs(digits_inrs)
    assert len(edited) == len(source) and torch.equal(edited.labels, source.labels)
    assert torch.equal(edited.split, source.split)
    assert edited.info["edit"]["edit"] == "dilate" and edited.info["edit"]["model"] == "hnp"
    _, _, model = runner.load_trained(InrEditing, out)
    with torch.no_grad():
        expected = model.eval()(source.features)
    for a, b in zip(edited.features.tensors, expected.tensors):
        assert torch.allclose(a, b, atol=1e-6)
    # Each row's PSNR is against the edited source image.
    images = load_images("digits", limit_train=20, limit_test=20)
    targets = edit_images(source_images(source, images), "dilate")
    with torch.no_grad():
        scores = psnr(render(edited.features, 8, 8), targets)
    assert [r["psnr"] for r in edited.metadata] == pytest.approx(scores.tolist(), rel=1e-5)
    # A second call keeps what is written; another run into the same folder is refused.
    stamp = (folder / "chunks" / "chunk-00000.safetensors").stat().st_mtime_ns
    edit_inr_folder(out, digits_inrs, folder, progress=False)
    assert (folder / "chunks" / "chunk-00000.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match=r"edited as .*choose another output folder"):
        edit_inr_folder(runs["np"][0], digits_inrs, folder, progress=False)


def test_inr_edit_resumes_after_a_lost_chunk(runs, digits_inrs, tmp_path) -> None:
    out, _ = runs["pt"]
    folder = edit_inr_folder(out, digits_inrs, tmp_path / "edited", progress=False)
    whole = load_inrs(folder).features
    (folder / "chunks" / "chunk-00001.json").unlink()
    edit_inr_folder(out, digits_inrs, folder, progress=False)
    again = load_inrs(folder).features
    assert all(torch.equal(a, b) for a, b in zip(whole.tensors, again.tensors))


def test_edited_folders_are_read_by_show_and_classify(
    runs, digits_inrs, tmp_path, monkeypatch
) -> None:
    out, _ = runs["pt"]
    folder = tmp_path / "edited"
    assert (
        main(["inr", "edit", "--run", str(out), "--inrs", str(digits_inrs), "--out", str(folder)])
        == 0
    )
    assert main(["inr", "show", "--inrs", str(folder), "--out", str(tmp_path / "show.png")]) == 0
    assert (tmp_path / "show.png").read_bytes()[:8] == PNG
    # `inr show` compares the edited SIRENs with the edited originals, not the plain ones.
    seen = []
    monkeypatch.setattr(inr_module, "show_grid", lambda data, images, path, n: seen.append(images))
    main(["inr", "show", "--inrs", str(folder), "--out", str(tmp_path / "x.png"), "--n", "4"])
    images = load_images("digits", limit_train=20, limit_test=20)
    first = load_inrs(digits_inrs).subset([0, 1, 2, 3])
    assert torch.equal(seen[0], edit_images(source_images(first, images), "dilate"))
    run = tmp_path / "cls"
    code = main(
        ["train", "inr-classify", "--inrs", str(folder), "--model", "mlp", "--out", str(run)]
        + ["--epochs", "1", "--head-hidden", "8"]
    )
    assert code == 0 and (run / "metrics.json").is_file()


def test_cli_trains_a_run(digits_inrs, tmp_path) -> None:
    out = tmp_path / "run"
    args = ["train", "inr-edit", "--inrs", str(digits_inrs), "--edit", "sharpen", "--model", "pt"]
    args += ["--out", str(out), "--steps", "3", "--hidden-channels", "4", "--seed", "3"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert (metrics["edit"], metrics["model"], metrics["seed"]) == ("sharpen", "pt", 3)


# ------------------------------------------------------------------ bad input
def test_unknown_edits_and_models_are_named(digits_inrs, tmp_path, capsys) -> None:
    with pytest.raises(ValueError, match=r"edit must be one of \('dilate'"):
        tiny("np", digits_inrs, tmp_path / "r", edit="blur")
    with pytest.raises(ValueError, match="unknown model 'cnn'"):
        tiny("cnn", digits_inrs, tmp_path / "r")
    with pytest.raises(ValueError, match="fourier_features must be None"):
        tiny("mlp", digits_inrs, tmp_path / "r", fourier_features=8)
    args = ["train", "inr-edit", "--inrs", str(digits_inrs), "--model", "np", "--out", "x"]
    with pytest.raises(SystemExit):
        main([*args, "--edit", "blur"])
    assert "invalid choice: 'blur'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(args)  # --edit is required
    assert "--edit" in capsys.readouterr().err


def test_folders_without_source_images_are_refused(digits_inrs, tmp_path) -> None:
    release = write_siren_folder(tmp_path / "release", [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"source images cannot be found.*inr fit"):
        load_edit_set(release, "dilate")
    # A folder whose rows point at images its dataset does not hold.
    broken = shutil.copytree(digits_inrs, tmp_path / "broken")
    chunk = broken / "chunks" / "chunk-00000.json"
    doc = json.loads(chunk.read_text())
    doc["rows"][3]["image_index"] = 10_000
    chunk.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"source images .* cannot be loaded.*image 10000"):
        load_edit_set(broken, "dilate")
    with pytest.raises(ValueError, match="is not an INR folder"):
        load_edit_set(tmp_path, "dilate")


def test_non_siren_spaces_and_other_spaces_are_refused(runs, digits_inrs, tmp_path) -> None:
    spec = NetworkSpec((3, 4, 1))
    g = torch.Generator().manual_seed(0)
    feats = WeightSpaceFeatures.from_tensors(
        [torch.randn(4, 1, *t.shape, generator=g) for t in spec.tensors], spec
    )
    other = InrDataset(
        spec, feats, torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long), [{}] * 4
    )
    with pytest.raises(ValueError, match="not SIRENs of grey images"):
        load_edit_set(other, "dilate")
    # A SIREN space of other widths: the run's model cannot read it.
    small = NetworkSpec((2, 16, 16, 1))
    sirens = WeightSpaceFeatures.from_tensors(
        [x.unsqueeze(1) for x in init_sirens(4, spec=small, generator=g)], small
    )
    rows = [{"index": i} for i in range(4)]
    data = InrDataset(small, sirens, torch.zeros(4, dtype=torch.long), torch.full((4,), 2), rows)
    with pytest.raises(
        ValueError, match=r"holds networks on .*16.* but the model in .* was trained on"
    ):
        runner.evaluate(InrEditing, runs["np"][0], data)


def test_images_of_another_size_are_refused(runs, tmp_path) -> None:
    mnist = fit_inrs(
        InrConfig(dataset="mnist", out=str(tmp_path / "mnist"), limit=2, steps=2, chunk_size=8),
        progress=False,
    )
    out = runs["np"][0]
    with pytest.raises(
        ValueError, match=r"images of \[28, 28\], but the editor .* images of \[8, 8\]"
    ):
        runner.evaluate(InrEditing, out, mnist)
    with pytest.raises(ValueError, match=r"images of \[28, 28\], but the editor"):
        edit_inr_folder(out, mnist, tmp_path / "edited", progress=False)
    assert not (tmp_path / "edited").exists()


def test_render_mse_agrees_with_and_without_gradients(digits_inrs, monkeypatch) -> None:
    from weightspace.tasks import inr_editing

    monkeypatch.setattr(inr_editing, "RENDER_CHUNK", 7)  # 40 INRs: 6 chunks, the last short
    data = load_inrs(digits_inrs)
    targets = torch.rand(len(data), 1, 8, 8) * 2 - 1
    with torch.no_grad():
        chunked = render_mse(data.features, targets, reduce=False)
    direct = render_mse(data.features, targets, reduce=False)
    assert torch.allclose(chunked, direct.detach()) and chunked.shape == (len(data),)
    assert math.isclose(
        float(chunked.mean()), float(render_mse(data.features, targets)), rel_tol=1e-5
    )


def test_report_gathers_one_block_per_run(runs, tmp_path) -> None:
    folders = [str(runs[m][0]) for m in EDIT_MODELS]
    assert main(["report", "--runs", *folders, "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "edits.png").read_bytes()[:8] == PNG
    table = (tmp_path / "report" / "learning_curve.md").read_text()
    for m in EDIT_MODELS:
        assert f"| {m} | {runs[m][1]['test_mse']:.3f} |" in table
    (runs["mlp"][0] / "edits.safetensors").rename(tmp_path / "moved.safetensors")
    try:
        with pytest.raises(ValueError, match=r"edits\.safetensors' is missing"):
            learning_curve(folders, tmp_path / "again")
    finally:
        (tmp_path / "moved.safetensors").rename(runs["mlp"][0] / "edits.safetensors")


def test_symmetry_augmentation_keeps_the_target_and_the_drawn_image(digits_inrs) -> None:
    data = load_edit_set(digits_inrs, "dilate").part("train")
    settings = {"model": "hnp", "edit": "dilate", "sign_flips": True, "half_periods": True}
    settings["spec"] = data.spec.to_dict()
    objective = InrEditing(settings).objective()
    assert isinstance(objective, AugmentedLoss)
    assert isinstance(
        InrEditing({**settings, "sign_flips": False, "half_periods": False}).objective(), Supervised
    )
    # γ = 0: the edit is the identity, so the loss is what the (augmented) input SIRENs draw.
    editor = InrEditing({**settings, "hidden_channels": (4,), "mlp_hidden": (4,)}).build(data.spec)
    with torch.no_grad():
        editor.gamma.zero_()
    batch = (data.inrs.features.to(torch.float64), data.targets.double())
    editor.double().train()
    torch.manual_seed(0)
    with torch.no_grad():
        augmented, _ = objective(editor, batch, 1)
        plain = render_mse(*batch)
    assert float(augmented) == pytest.approx(float(plain), rel=1e-9)
    # Control: shifting by half a period of the wrong frequency changes what the SIRENs draw.
    wrong = SymmetryAugmentation(data.spec, signs=False, half_periods=True, omega0=1.0)
    torch.manual_seed(0)
    with torch.no_grad():
        broken, _ = AugmentedLoss(render_mse, [wrong])(editor, batch, 1)
    assert abs(float(broken) - float(plain)) > 1e-3
