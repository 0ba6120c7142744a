"""benchmarks/task_throughput.py: each case pits the task's default NFN against the same model
built from ``nfn``'s layers, and the script times both.

A ratio means something only if the two models are the same kind of model. These tests check,
for every case: ours is what the task builds from its config's defaults; both have the same
NF-Layer stacks (kinds, widths, heads, dropouts), with input widths that differ only by the
documented IO-encoding size; both give outputs of the same shapes; both are HNP-invariant or
-equivariant in float64, with controls that must break; the parameter counts agree within the
documented tolerance. Per layer, the reference's NPLinear spans the same maps as ours and its
HNPLinear a subspace missing exactly the documented term. Last, ``main`` runs every case.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from tests.benchmarks import load_script
from weightspace import NetworkSpec, WeightSpaceFeatures
from weightspace.data.inr import SIREN_SPEC
from weightspace.nn import HNPLinear, NPLinear
from weightspace.testing import (
    assert_equivariant,
    assert_invariant,
    equivariance_errors,
    inconsistent_permutation,
    invariance_error,
    random_features,
)

nfn = pytest.importorskip("nfn")
pytestmark = pytest.mark.usefixtures("one_thread")

CASE_NAMES = ("generalization", "inr-classify", "inr-edit", "tickets")
#: Channels the IO encodings add: ours 2 · 13 (inputs and outputs apart), the reference 13.
OURS_IO, REF_IO = 26, 13


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("task_throughput")


def _task_built(name: str) -> tuple[nn.Module, int]:
    """The model the task itself builds from its config's defaults, and the config's batch."""
    from weightspace.data.tickets import ticket_spec
    from weightspace.data.zoo import ZOO_SPEC
    from weightspace.tasks.generalization import Generalization, GeneralizationConfig
    from weightspace.tasks.inr_classification import InrClassification, InrClassifyConfig
    from weightspace.tasks.inr_editing import InrEditConfig, InrEditing
    from weightspace.tasks.tickets import Tickets, TicketTrainConfig

    if name == "generalization":
        config = GeneralizationConfig("zoo", "hnp", "out")
        return Generalization(config.settings()).build(ZOO_SPEC), config.batch_size
    if name == "inr-classify":
        config = InrClassifyConfig("inrs", "np", "out")
        task = InrClassification({**config.settings(), "num_classes": 10})
        return task.build(SIREN_SPEC), config.batch_size
    if name == "inr-edit":
        config = InrEditConfig("inrs", "np", "out", edit="dilate")
        return InrEditing(config.settings()).build(SIREN_SPEC), config.batch_size
    config = TicketTrainConfig("tickets", "np", "out")
    return Tickets(config.settings()).build(ticket_spec(784)), config.batch_size


@pytest.mark.parametrize("name", CASE_NAMES)
def test_ours_is_what_the_task_builds_from_its_defaults(bench: ModuleType, name: str) -> None:
    case = bench.get_case(name)
    torch.manual_seed(0)
    task_model, batch_size = _task_built(name)
    ours = bench.build(case, "weightspace", seed=0)
    assert type(ours) is type(task_model)
    assert case.batch_size == batch_size
    shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert shapes == {k: v.shape for k, v in task_model.state_dict().items()}
    # Same seed, same builder: the same values too.
    for key, value in task_model.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=0, msg=key)


def _nf_layers(model: nn.Module) -> list[tuple[str, int, int]]:
    """(kind, in channels, out channels) of every NF-Layer of either library, in order."""
    kinds = {
        NPLinear: "np",
        HNPLinear: "hnp",
        nfn.layers.NPLinear: "np",
        nfn.layers.HNPLinear: "hnp",
    }
    out = []
    for m in model.modules():
        kind = kinds.get(type(m))
        if kind is None:
            continue
        c_in, c_out = getattr(m, "in_channels", None), getattr(m, "out_channels", None)
        if c_in is None:  # the reference's names
            c_in, c_out = m.c_in, m.c_out
        out.append((kind, c_in, c_out))
    return out


def _outside_nf_layers(model: nn.Module, kind: type[nn.Module]) -> list[nn.Module]:
    """Modules of type ``kind`` that are not inside an NF-Layer (the reference's layers are
    made of nn.Linear and nn.Conv modules; ours hold raw parameters)."""
    layers = (NPLinear, HNPLinear, nfn.layers.NPLinear, nfn.layers.HNPLinear)
    inside = {id(s) for m in model.modules() if isinstance(m, layers) for s in m.modules()}
    return [m for m in model.modules() if type(m) is kind and id(m) not in inside]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_both_models_have_the_same_stacks_up_to_the_io_encoding(
    bench: ModuleType, name: str
) -> None:
    case = bench.get_case(name)
    ours, ref = bench.build(case, "weightspace"), bench.build(case, "nfn")
    mine, theirs = _nf_layers(ours), _nf_layers(ref)
    assert mine and [(k, o) for k, _, o in mine] == [(k, o) for k, _, o in theirs]
    # Every stack starts where the previous one ended or at an input; under NP with an IO
    # encoding its first layer reads 13 more channels on our side, elsewhere the widths agree.
    expected = {
        "generalization": [(1, 1), (16, 16), (16, 16)],
        "inr-classify": [(128 + OURS_IO, 128 + REF_IO), (32, 32), (32, 32)],
        "inr-edit": [(1 + OURS_IO, 1 + REF_IO), (64, 64), (64, 64), (64, 64)],
        "tickets": [(2 + OURS_IO, 2 + REF_IO), (8, 8), (8, 8), (8, 8)]
        + [(6 + OURS_IO, 6 + REF_IO), (8, 8), (8, 8), (8, 8)],
    }[name]
    assert [(a[1], b[1]) for a, b in zip(mine, theirs)] == expected
    assert {k for k, _, _ in mine} == {"hnp" if name == "generalization" else "np"}
    # The same heads and dropouts.
    heads = [[m.weight.shape for m in _outside_nf_layers(x, nn.Linear)] for x in (ours, ref)]
    assert heads[0] == heads[1]
    drops = [[m.p for m in _outside_nf_layers(x, nn.Dropout)] for x in (ours, ref)]
    assert drops[0] == drops[1] == ([0.2] if name == "inr-classify" else [])
    # The parameter counts within the documented tolerance, and not equal by accident.
    p_ours, p_ref = bench.num_params(ours), bench.num_params(ref)
    assert abs(p_ref - p_ours) / p_ours <= bench.PARAM_TOLERANCE[name], (p_ours, p_ref)
    assert (p_ref > p_ours) == (name == "generalization"), (p_ours, p_ref)


def _outputs(model: nn.Module, batch: tuple) -> list[Tensor]:
    """The tensors a model outputs on a batch, for the case's loss."""
    if isinstance(batch[1], WeightSpaceFeatures):  # the mask VAE: (logits, mean, logvar)
        return [t for f in model(*batch) for t in f.tensors]
    out = model(batch[0])
    return list(out.tensors) if isinstance(out, WeightSpaceFeatures) else [out]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_both_models_give_the_same_shapes_and_a_finite_loss(bench: ModuleType, name: str) -> None:
    case = bench.get_case(name)
    batch = case.draw(3, torch.Generator().manual_seed(0))
    shapes = []
    for side in bench.MODELS:
        model = bench.build(case, side)
        if case.prepare is not None:
            case.prepare(model, batch)
        with torch.no_grad():
            shapes.append([t.shape for t in _outputs(model.eval(), batch)])
            model.train()
            assert math.isfinite(float(case.loss(model, batch))), side
    assert shapes[0] == shapes[1]
    assert shapes[0][0][0] == 3


def _swap_inputs(spec: NetworkSpec) -> list[Tensor | None]:
    """A permutation of the input neurons (not a symmetry that an IO encoding respects).

    The controls that use it break at 1e-6, not 1e-4: the checks run in float64, where a
    symmetry errs by ~1e-15, and the reference's encoding tells SIREN's two inputs (positions
    -1 and 1) apart only weakly (its cosines are even, its first sine vanishes at ±π), so the
    reference's untrained editor moves by ~2e-4 only."""
    n = spec.widths[0]
    return [torch.arange(n).roll(1), *([None] * spec.num_layers)]


@pytest.mark.parametrize("side", ["weightspace", "nfn"])
def test_generalization_models_are_hnp_invariant(bench: ModuleType, side: str) -> None:
    case = bench.get_case("generalization")
    model = bench.build(case, side)
    assert_invariant(model, case.spec, "hnp", rtol=1e-9)
    # Controls: a permutation that changes the CNN's function, and one of its output classes,
    # which HNP keeps apart.
    broken = invariance_error(
        model, case.spec, perturb=lambda f, g: inconsistent_permutation(f, 2, g)
    )
    assert broken > 1e-4
    classes = [None] * case.spec.num_layers + [torch.arange(10).roll(1)]
    assert invariance_error(model, case.spec, perturb=lambda f, g: f.permute(classes)) > 1e-4


@pytest.mark.parametrize("side", ["weightspace", "nfn"])
def test_inr_classifiers_are_hnp_invariant_and_tell_inputs_apart(
    bench: ModuleType, side: str
) -> None:
    case = bench.get_case("inr-classify")
    model = bench.build(case, side)
    # Statistics that are not the identity, so the standardisation is in the check too.
    stats = random_features(SIREN_SPEC, 4, generator=torch.Generator().manual_seed(1))
    model.set_statistics(stats * 0.3 + 0.1)
    assert_invariant(model, SIREN_SPEC, "hnp", rtol=1e-9)
    broken = invariance_error(
        model, SIREN_SPEC, perturb=lambda f, g: inconsistent_permutation(f, 1, g)
    )
    assert broken > 1e-4
    swap = _swap_inputs(SIREN_SPEC)
    assert invariance_error(model, SIREN_SPEC, perturb=lambda f, g: f.permute(swap)) > 1e-6


@pytest.mark.parametrize("side", ["weightspace", "nfn"])
def test_inr_editors_are_hnp_equivariant_and_tell_inputs_apart(
    bench: ModuleType, side: str
) -> None:
    case = bench.get_case("inr-edit")
    model = bench.build(case, side)
    with torch.no_grad():  # γ away from its small start, so the delta weighs in the check
        model.gamma.fill_(0.7)
    model.set_statistics(random_features(SIREN_SPEC, 4, generator=torch.Generator().manual_seed(1)))
    assert_equivariant(model, SIREN_SPEC, "hnp", rtol=1e-9)
    errors = equivariance_errors(model, SIREN_SPEC, "np", perms=_swap_inputs(SIREN_SPEC))
    assert max(errors.values()) > 1e-6


@pytest.mark.parametrize("side", ["weightspace", "nfn"])
def test_ticket_vaes_are_hnp_equivariant_and_tell_inputs_apart(
    bench: ModuleType, side: str
) -> None:
    case = bench.get_case("tickets")
    model = bench.build(case, side).double().eval()
    gen = torch.Generator().manual_seed(2)
    init, mask = (f.map(lambda t: t.double()) for f in case.draw(2, gen))
    case.prepare(model, (init * 0.3 + 0.1, mask))
    spec = case.spec

    def both(x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        # The training path: encode (init, mask), decode (init, mean); logvar alongside.
        i, m = x.map(lambda t: t[:, :1]), x.map(lambda t: t[:, 1:])
        mean, logvar = model.encode(i, m)
        return model.decode(i, mean).cat_channels(logvar)

    x = init.cat_channels(mask)
    errors = equivariance_errors(both, spec, "hnp", in_channels=2, features=x, trials=2)
    assert max(errors.values()) <= 1e-9, errors
    moved = equivariance_errors(both, spec, "np", features=x, perms=_swap_inputs(spec))
    assert max(moved.values()) > 1e-6


# ------------------------------------------------------------------ the layers, one by one
def _maps(layer: nn.Module, x: object) -> Tensor:
    """The layer's outputs on ``x`` (either library's features) as a linear function of its
    parameters: one column per parameter (outputs at that unit parameter, less those at 0)."""
    names, params = zip(*layer.named_parameters())
    sizes = [p.numel() for p in params]
    inputs = (x,)

    def outputs(flat: Tensor) -> Tensor:
        values = {k: v.view(p.shape) for k, v, p in zip(names, flat.split(sizes), params)}
        out = torch.func.functional_call(layer, values, inputs)
        return torch.cat([t.flatten() for t in (*out.weights, *out.biases)])

    eye = torch.eye(sum(sizes), dtype=torch.float64)
    with torch.no_grad():
        zero = outputs(torch.zeros_like(eye[0]))
        return torch.stack([outputs(e) - zero for e in eye], dim=1)


def _rank(m: Tensor) -> int:
    s = torch.linalg.svdvals(m)
    return int((s > s[0] * 1e-9).sum())


@pytest.mark.parametrize(
    "spec, channels, batch",
    [(NetworkSpec((2, 3, 4, 2)), 2, 40), (NetworkSpec((2, 3, 3, 2), ((2, 2), (2, 2), ())), 1, 40)],
    ids=["mlp", "cnn"],
)
def test_np_layers_span_the_same_maps_and_hnp_the_documented_subspace(
    bench: ModuleType, spec: NetworkSpec, channels: int, batch: int
) -> None:
    # Each layer is linear in its parameters; on enough random inputs the span of its columns
    # is the space of maps it can be. Ours has as many parameters as that space's dimension.
    x = random_features(spec, batch, channels, generator=torch.Generator().manual_seed(0))
    ref_spec = bench.reference_spec(spec)
    spans = {}
    for kind, mine, theirs in (
        ("np", NPLinear, nfn.layers.NPLinear),
        ("hnp", HNPLinear, nfn.layers.HNPLinear),
    ):
        torch.manual_seed(0)
        a = _maps(mine(spec, channels, channels).double(), x)
        b = _maps(theirs(ref_spec, channels, channels).double(), bench.to_reference(x))
        spans[kind] = a, b
        assert _rank(a) == a.shape[1], kind  # ours: no redundant parameter
        assert b.shape[1] > _rank(b), kind  # the reference's: some
        assert _rank(torch.cat([a, b], dim=1)) == _rank(a), kind  # theirs within ours
        missing = spec.widths[-1] * channels * channels if kind == "hnp" else 0
        assert _rank(a) - _rank(b) == missing, kind
    # Control: NP maps do not span the reference's HNP layer.
    np_ours, hnp_ref = spans["np"][0], spans["hnp"][1]
    assert _rank(torch.cat([np_ours, hnp_ref], dim=1)) > _rank(np_ours)


def test_the_reference_hnp_layer_lacks_the_per_neuron_b_to_last_weight_term(
    bench: ModuleType,
) -> None:
    # The missing dimensions: W_L reads b_{L-1} only through its mean in the reference, so
    # moving one neuron's bias shifts every column of W_L alike; ours singles out its column.
    spec = NetworkSpec((2, 3, 4, 2))
    x = random_features(spec, 1, generator=torch.Generator().manual_seed(0))
    biases = [b.clone() for b in x.biases]
    biases[-2][..., 0] += 1.0
    moved = WeightSpaceFeatures(list(x.weights), biases, spec)
    torch.manual_seed(0)
    ours = HNPLinear(spec, 1, 1).double()
    ref = nfn.layers.HNPLinear(bench.reference_spec(spec), 1, 1).double()
    with torch.no_grad():
        d_ours = ours(moved).weights[-1] - ours(x).weights[-1]
        d_ref = ref(bench.to_reference(moved)).weights[-1] - ref(bench.to_reference(x)).weights[-1]
    col = d_ours[0, 0]  # (n_L, n_{L-1})
    assert (col[:, 0] - col[:, 1]).abs().max() > 1e-6
    torch.testing.assert_close(d_ref, d_ref[..., :1].expand_as(d_ref), rtol=0, atol=1e-12)
    assert d_ref.abs().max() > 1e-6  # it does read the bias, through its mean


# ------------------------------------------------------------------ the script
def test_main_times_every_case_and_reports(bench: ModuleType, tmp_path: Path, capsys) -> None:
    out = tmp_path / "throughput.json"
    argv = ["--steps", "1", "--warmup", "1", "--reps", "2", "--batch-size", "2"]
    argv += ["--json", str(out)]
    result = bench.main(argv)
    printed = capsys.readouterr().out
    assert printed.startswith(f"$ {result['command']}")
    assert result["command"].endswith(" ".join(argv))
    assert "| weightspace s / step | nfn 0.1.2 s / step |" in printed
    assert json.loads(out.read_text())["command"] == result["command"]
    assert result["machine"]["threads"] == 1 and result["machine"]["nfn"]
    assert [r["case"] for r in result["results"]] == list(CASE_NAMES)
    for res in result["results"]:
        assert res["batch_size"] == 2
        assert f"| {res['case']} | 2 |" in printed
        for side in bench.MODELS:
            r = res["models"][side]
            assert len(r["step_s"]) == 2 and all(t > 0 for t in r["step_s"])
            assert r["median_step_s"] == pytest.approx(sum(r["step_s"]) / 2)
            assert r["networks_per_s"] == pytest.approx(2 / r["median_step_s"])
            assert math.isfinite(r["final_loss"]) and r["params"] > 0
        ratio = (
            res["models"]["nfn"]["median_step_s"] / res["models"]["weightspace"]["median_step_s"]
        )
        assert math.isfinite(res["ratio"]) and res["ratio"] == pytest.approx(ratio)


def test_main_runs_a_subset_with_the_tasks_batch_and_refuses_bad_options(
    bench: ModuleType, capsys
) -> None:
    result = bench.main(
        ["--cases", "generalization", "--steps", "1", "--warmup", "0", "--reps", "1"]
    )
    (res,) = result["results"]
    assert res["case"] == "generalization" and res["batch_size"] == 8
    for bad in (["--steps", "0"], ["--batch-size", "0"], ["--cases", "nope"], ["--device", "tpu"]):
        with pytest.raises(SystemExit):
            bench.main(bad)
    assert "--steps" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown case 'nope'; expected one of"):
        bench.get_case("nope")
    with pytest.raises(ValueError, match="expected one of \\('weightspace', 'nfn'\\)"):
        bench.build(bench.get_case("generalization"), "torch")
