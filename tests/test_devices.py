"""Every layer, model, the functional forward, the zoo trainer and the SIREN fitter on each device.

Parametrised over :data:`tests.conftest.DEVICES`: on a machine without a GPU the CUDA cases are
skipped and the CPU cases run. On a GPU each case checks that results live on the device, that
every random draw which defines a result is the CPU's (bit-identical), and that float results
are close to the CPU's. ``benchmarks/cuda_check.sh`` runs this module on a CUDA machine.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from weightspace import NetworkSpec, WeightSpaceFeatures, symmetry
from weightspace.data.inr import InrConfig, fit_inrs, load_inrs
from weightspace.data.tickets import (
    TicketConfig,
    TicketRecipe,
    init_mlp,
    load_images,
    ticket_spec,
    train_masked,
)
from weightspace.data.zoo import ZooConfig, generate_zoo, load_zoo
from weightspace.functional.forward import forward
from weightspace.models import (
    EquivariantNFN,
    FlatDelta,
    FlatMLP,
    HybridModel,
    InvariantNFN,
    MaskVAE,
    ProbeModel,
    StatNet,
    WeightEdit,
)
from weightspace.models.ticket_vae import allocated_top_k
from weightspace.nn import HNPLinear, HNPPool, NPLinear, NPPool, PointwiseLinear, StatsPool
from weightspace.testing import (
    assert_equivariant,
    assert_invariant,
    inconsistent_permutation,
    invariance_error,
    random_features,
)
from weightspace.train import batched
from weightspace.train.siren import fit_sirens

pytestmark = pytest.mark.usefixtures("one_thread")

MLP = NetworkSpec((3, 5, 4, 2))
CNN = NetworkSpec((2, 4, 3, 2), ((3, 3), (3, 3), ()))
# float32 on a GPU reduces in another order than on the CPU: close, not equal.
CLOSE = {"rtol": 1e-4, "atol": 1e-5}
#: A tiny zoo: 3 networks, 1 epoch of 2 steps on 64 digits, epochs 0 and 1 stored.
ZOO = {
    "dataset": "digits",
    "networks": 3,
    "epochs": 1,
    "batch_size": 32,
    "chunk_size": 3,
    "save_epochs": (0, 1),
    "limit_train": 64,
    "limit_test": 32,
}
INRS = {"dataset": "digits", "limit": 2, "steps": 5, "chunk_size": 4, "val_fraction": 0.0}


def on(device: torch.device, x: torch.Tensor | WeightSpaceFeatures) -> bool:
    return x.device.type == device.type


def assert_close_to_cpu(out: torch.Tensor, ref: torch.Tensor, device: torch.device) -> None:
    """``out`` (on ``device``) equals the CPU result ``ref``: exactly on the CPU, closely on a
    GPU."""
    assert on(device, out), f"output on {out.device}, expected {device}"
    if device.type == "cpu":
        assert torch.equal(out, ref)
    else:
        torch.testing.assert_close(out.cpu(), ref, equal_nan=True, **CLOSE)


def features(spec: NetworkSpec, batch: int = 3, seed: int = 0) -> WeightSpaceFeatures:
    g = torch.Generator().manual_seed(seed)
    return random_features(spec, batch, dtype=torch.float32, generator=g)


# ------------------------------------------------------------------ layers: the test kit
@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
def test_layers_pass_the_equivariance_kit(device: torch.device, spec: NetworkSpec) -> None:
    torch.manual_seed(0)
    for layer, mode in (
        (NPLinear(spec, 2, 3), "np"),
        (HNPLinear(spec, 2, 3), "hnp"),
        (PointwiseLinear(spec, 2, 3), "np"),
    ):
        errors = assert_equivariant(layer.to(device), spec, mode, in_channels=2, device=device)
        assert set(errors) == {t.name for t in spec.tensors}
    pools = ((NPPool(spec), "np"), (HNPPool(spec), "hnp"), (StatsPool(spec, "hnp"), "hnp"))
    for pool, mode in pools:
        assert_invariant(pool, spec, mode, in_channels=2, device=device)
    model = InvariantNFN(spec, "hnp", (4, 4), (8,), pool="stats", io_encoding=None).to(device)
    assert_invariant(model, spec, "hnp", device=device)
    # The control must break on the device too: an inconsistent permutation is no symmetry.
    err = invariance_error(
        model,
        spec,
        perturb=lambda x, g: inconsistent_permutation(x, 1, g),
        device=device,
    )
    assert err > 1e-6


# ------------------------------------------------------------------ models and forward
def _models(spec: NetworkSpec) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    small = {"hidden_channels": (4, 4), "head_hidden": (8,)}
    return {
        "invariant-hnp": InvariantNFN(spec, "hnp", **small),
        "invariant-np": InvariantNFN(spec, "np", io_encoding=None, **small),
        "invariant-stats": InvariantNFN(spec, "hnp", io_encoding=None, pool="stats", **small),
        "equivariant-hnp": EquivariantNFN(spec, "hnp", (4,)),
        "equivariant-pt": EquivariantNFN(spec, "pt", (4,), io_encoding=None),
        "probe": ProbeModel(spec, (8,), 2, num_probes=4, activation="tanh"),
        "hybrid": HybridModel(spec, "np", (4, 4), (8,), 2, num_probes=4, activation="tanh"),
        "statnet": StatNet(spec, head_hidden=(8,), out_features=2),
        "flat-mlp": FlatMLP(spec, head_hidden=(8,), out_features=2),
        "edit": WeightEdit(EquivariantNFN(spec, "hnp", (4,), io_encoding=None), spec),
        "edit-flat": WeightEdit(FlatDelta(spec, (8,)), spec),
        "mask-vae": MaskVAE(spec, "hnp", (4, 4), 2, prior_seed=0),
    }


@pytest.mark.parametrize("name", list(_models(MLP)))
def test_every_model_family_runs_on_the_device(device: torch.device, name: str) -> None:
    cpu_model = _models(MLP)[name].eval()
    x = features(MLP)
    with torch.no_grad():
        ref = cpu_model(x)
        model = copy.deepcopy(cpu_model).to(device)
        out = model(x.to(device))
    if isinstance(out, WeightSpaceFeatures):
        assert out.spec == MLP
        for a, b in zip(out.tensors, ref.tensors, strict=True):
            assert_close_to_cpu(a, b, device)
    else:
        assert out.shape == ref.shape
        assert_close_to_cpu(out, ref, device)


@pytest.mark.parametrize("spec", [MLP, CNN], ids=["mlp", "cnn"])
def test_functional_forward_on_the_device(device: torch.device, spec: NetworkSpec) -> None:
    x = features(spec, 4)
    g = torch.Generator().manual_seed(1)
    inputs = torch.randn(6, spec.widths[0], *((7, 7) if spec.is_cnn else ()), generator=g)
    ref = forward(x, inputs, ["relu", "tanh", "relu", "tanh"], padding=1 if spec.is_cnn else 0)
    out = forward(
        x.to(device), inputs.to(device), ["relu", "tanh", "relu", "tanh"],
        padding=1 if spec.is_cnn else 0,
    )  # fmt: skip
    assert out.shape == ref.shape
    assert_close_to_cpu(out, ref, device)


# ------------------------------------------------------------------ samplers on the hot path
def test_samplers_draw_on_the_cpu_and_land_on_the_device(device: torch.device) -> None:
    def draws(on_device: torch.device | None) -> list[torch.Tensor]:
        g = torch.Generator().manual_seed(3)
        return [
            *symmetry.sample_signs(MLP, 4, generator=g, device=on_device),
            *symmetry.sample_scales(MLP, 4, generator=g, device=on_device),
            *symmetry.sample_half_period_shifts(MLP, 4, generator=g, device=on_device),
            *[p for p in symmetry.sample(MLP, "np", batch_size=4, generator=g, device=on_device)],
        ]

    for a, b in zip(draws(device), draws(None), strict=True):
        assert on(device, a)
        assert torch.equal(a.cpu(), b)  # the same random choice on every device
    x = features(MLP, 4).to(device)
    signs = symmetry.sample_signs(MLP, 4, device=device)
    flipped = symmetry.flip_signs(x, signs)
    assert on(device, flipped)
    inputs = torch.randn(5, 3, device=device)
    torch.testing.assert_close(forward(flipped, inputs, "tanh"), forward(x, inputs, "tanh"))


def test_dropout_bytes_are_the_cpu_generators_on_every_device(device: torch.device) -> None:
    n = 2**19 + 5  # a first layer's worth of bytes, and not a whole number of 64-bit words
    out = batched._random_bytes(n, device, torch.Generator().manual_seed(4))
    ref = batched._random_bytes(n, torch.device("cpu"), torch.Generator().manual_seed(4))
    assert on(device, out) and out.shape == (n,)
    assert torch.equal(out.cpu(), ref)


def test_allocated_top_k_stays_on_the_device(device: torch.device) -> None:
    logits = features(MLP, 4, seed=5)
    ref = allocated_top_k(logits, 0.5)
    out = allocated_top_k(logits.to(device), 0.5)
    for a, b in zip(out.tensors, ref.tensors, strict=True):
        assert on(device, a)
        assert torch.equal(a.cpu(), b)  # ranking is exact: the same mask everywhere


# ------------------------------------------------------------------ the zoo trainer
@pytest.fixture(scope="module")
def cpu_zoo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("zoo") / "cpu"
    return generate_zoo(ZooConfig(out=out, device="cpu", **ZOO), progress=False, threads=1)


def test_zoo_generation_on_the_device(device: torch.device, cpu_zoo: Path, tmp_path) -> None:
    out = generate_zoo(
        ZooConfig(out=tmp_path / "zoo", device=str(device), **ZOO), progress=False, threads=1
    )
    header = json.loads((out / "zoo.json").read_text())
    assert header["device"] == device.type
    rows = json.loads((out / "chunks" / "chunk-00000.json").read_text())["rows"]
    ref_rows = json.loads((cpu_zoo / "chunks" / "chunk-00000.json").read_text())["rows"]
    # Hyperparameters, seeds and data subsets are the CPU's draws on every device.
    drawn = ("seed", "optimizer", "learning_rate", "dropout", "init", "train_size")
    assert [{k: r[k] for k in drawn} for r in rows] == [{k: r[k] for k in drawn} for r in ref_rows]
    got = load_file(out / "chunks" / "chunk-00000.safetensors")
    ref = load_file(cpu_zoo / "chunks" / "chunk-00000.safetensors")
    assert got.keys() == ref.keys()
    for name in got:
        assert got[name].device.type == "cpu"  # what is stored is on the CPU
        # The initialisation (epoch 0) is bit-identical on every device.
        if name.startswith("epoch0.") or device.type == "cpu":
            assert torch.equal(got[name], ref[name]), name
        else:  # trained: the same batches and masks, other float rounding
            torch.testing.assert_close(got[name], ref[name], rtol=1e-3, atol=1e-4, equal_nan=True)
    zoo = load_zoo(out)
    assert zoo.features.device.type == "cpu" and len(zoo) == ZOO["networks"]


# ------------------------------------------------------------------ the SIREN fitter
def test_fit_sirens_on_the_device(device: torch.device) -> None:
    images = load_images("digits", limit_train=3, limit_test=1).train_x
    seeds = [11, 12, 13]
    init, _ = fit_sirens(images, seeds, steps=0, device=device)
    init_ref, _ = fit_sirens(images, seeds, steps=0)
    fitted, scores = fit_sirens(images, seeds, steps=10, device=device)
    ref, ref_scores = fit_sirens(images, seeds, steps=10)
    assert on(device, fitted) and on(device, scores)
    for a, b in zip(init.tensors, init_ref.tensors, strict=True):
        assert torch.equal(a.cpu(), b)  # the CPU's initialisation on every device
    for a, b in zip(fitted.tensors, ref.tensors, strict=True):
        assert_close_to_cpu(a, b, device)
    assert bool((ref_scores > 0).all())
    torch.testing.assert_close(scores.cpu(), ref_scores, rtol=1e-3, atol=1e-3)


def test_fit_inrs_on_the_device_stores_cpu_tensors(device: torch.device, tmp_path) -> None:
    out = fit_inrs(
        InrConfig(out=str(tmp_path / "inrs"), device=str(device), **INRS), progress=False, threads=1
    )
    assert json.loads((out / "inrs.json").read_text())["device"] == device.type
    data = load_inrs(out)
    assert data.features.device.type == "cpu" and len(data) == 2 * INRS["limit"]
    assert all(r["psnr"] is not None and r["psnr"] > 0 for r in data.metadata)


# ------------------------------------------------------------------ ticket training
def test_train_masked_on_the_device(device: torch.device) -> None:
    data = load_images("digits", limit_train=64, limit_test=32)
    spec = ticket_spec(64, (8,))
    seeds = [1, 2]
    inits_each = [init_mlp(spec, torch.Generator().manual_seed(s)) for s in seeds]
    inits = [torch.stack([net[j] for net in inits_each]) for j in range(len(spec.tensors))]
    recipe = TicketRecipe(epochs=1, batch_size=32)
    trained, acc = train_masked(spec, inits, seeds, data, recipe, device=device)
    ref, ref_acc = train_masked(spec, inits, seeds, data, recipe)
    assert all(t.device.type == "cpu" for t in trained)  # returned where the inits are
    for a, b in zip(trained, ref, strict=True):
        assert_close_to_cpu(a.to(device), b, device)
    torch.testing.assert_close(acc, ref_acc, rtol=0, atol=1 / 32)  # one test image at most


@pytest.mark.parametrize(
    "make",
    [
        lambda d: ZooConfig(dataset="digits", networks=1, out="o", device=d),
        lambda d: InrConfig(dataset="digits", out="o", device=d),
        lambda d: TicketConfig(dataset="digits", networks=1, out="o", device=d),
    ],
    ids=["ZooConfig", "InrConfig", "TicketConfig"],
)
def test_generator_configs_name_their_device_field(make, request) -> None:
    """An unknown device is refused when the config is made, naming the config's field."""
    name = request.node.callspec.id
    with pytest.raises(ValueError, match=rf"^{name}\.device must be 'auto', 'cpu', 'cuda'"):
        make("tpu")
    assert make("cpu").device == "cpu"
