"""Editing INRs: rewrite a SIREN's weights so that it draws the edited image (paper §4).

The edited network is ``U' = U + γ ⊙ NFN(U)`` (:class:`~weightspace.models.WeightEdit`, ``γ``
one learned scalar per tensor starting at 0.01). The loss is the pixel MSE between ``U'``
rendered on the image grid (:func:`~weightspace.data.inr.render`) and the edited source image
(:func:`~weightspace.data.edits.edit_images`), in [-1, 1] pixel units, the paper's; pixels are
never decoded on the way. Four delta models are compared, as in the paper: ``"np"`` (NP layers
with a sinusoidal IO encoding), ``"hnp"``, ``"pt"`` (:class:`~weightspace.nn.PointwiseLinear`
only) and ``"mlp"`` (flattened weights → 3 × 1000 ReLU → a flat delta). Training runs for a
number of Adam steps (rounded up to whole epochs), keeps the best validation MSE, and writes::

    RUN/metrics.json        test_mse ([-1, 1] units), test_mse_01 ([0, 1] units: / 4),
                            identity_mse (U' = U: the floor to beat), n_test, model, seed, times
    RUN/edits.png           original render / target / edited render of 8 test INRs
    RUN/edits.safetensors   those images, for ``weightspace report`` to gather
    RUN/test_mse.csv        one row per test INR: index, label, mse, identity_mse

:func:`edit_inr_folder` (``weightspace inr edit``) writes every INR of a folder, edited, as a new
INR folder that ``inr show`` and ``train inr-classify`` read.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from weightspace import viz
from weightspace.data.container import SPLITS
from weightspace.data.edits import EDITS, check_edit, edit_images
from weightspace.data.inr import (
    INR_FILE,
    INR_FORMAT,
    INR_STORE,
    OMEGA_0,
    InrDataset,
    load_inrs,
    psnr,
    render,
    source_images,
)
from weightspace.io import read_json, write_safetensors
from weightspace.io.store import ChunkLayout, ChunkStore
from weightspace.models import EquivariantNFN
from weightspace.models.edit import FlatDelta, WeightEdit
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.tasks import base, runner
from weightspace.tasks.base import Items, Task, TaskConfig, option
from weightspace.tasks.inputs import AugmentedLoss, SymmetryAugmentation
from weightspace.tasks.sources import INR_SOURCES, load_any_inrs
from weightspace.train import distributed
from weightspace.train.loop import LR_DECAYS, Supervised, predict, resolve_device

__all__ = ["EDIT_MODELS", "EditSet", "InrEditConfig", "InrEditing", "build_editor"]
__all__ += ["edit_inr_folder", "load_edit_set", "render_mse", "run_inr_editing"]

EDIT_MODELS: tuple[str, ...] = ("np", "hnp", "pt", "mlp")
#: INRs rendered at once outside training (memory: H·W·width floats per INR and layer).
RENDER_CHUNK = 512
#: Test INRs drawn in ``edits.png``.
SHOWN = 8


# ------------------------------------------------------------------ data
@dataclass
class EditSet:
    """INRs with their source images and the edited images they should draw.

    Attributes
    ----------
    inrs:
        The SIRENs (:class:`~weightspace.data.inr.InrDataset`).
    originals, targets:
        ``(N, 1, H, W)`` in [-1, 1]: each INR's source image, and that image edited.
    edit:
        One of :data:`~weightspace.data.edits.EDITS`.
    """

    inrs: InrDataset
    originals: Tensor
    targets: Tensor
    edit: str
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.inrs)
        for name in ("originals", "targets"):
            t = getattr(self, name)
            if not isinstance(t, Tensor) or t.ndim != 4 or t.shape[:2] != (n, 1):
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(f"EditSet: {name} has shape {shape}; expected ({n}, 1, H, W)")
        if self.originals.shape != self.targets.shape:
            raise ValueError(
                f"EditSet: originals {tuple(self.originals.shape)} and targets "
                f"{tuple(self.targets.shape)} differ in shape"
            )
        self.info = {**self.inrs.info, **self.info, "edit": self.edit}

    @property
    def spec(self) -> NetworkSpec:
        return self.inrs.spec

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.targets.shape[2:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self.inrs)

    def subset(self, index: Tensor | list[int]) -> EditSet:
        index = torch.as_tensor(index)
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        index = index.to(torch.long)
        return EditSet(
            self.inrs.subset(index),
            self.originals[index],
            self.targets[index],
            self.edit,
            dict(self.info),
        )

    def part(self, name: str) -> EditSet:
        if name not in SPLITS:
            raise ValueError(
                f"EditSet.part: unknown split {name!r}; expected one of {tuple(SPLITS)}"
            )
        return self.subset(self.inrs.split == SPLITS[name])


def _source_images_of(inrs: InrDataset, where: str) -> Tensor:
    """The source image of every INR, from the image dataset its folder's header names."""
    from weightspace.data.images import load_images

    if inrs.info.get("source") != INR_FORMAT:
        raise ValueError(
            f"INR folder {where!r}: its source images cannot be found; editing needs a folder "
            f"written by `weightspace inr fit` (with {INR_FILE}, which names the image dataset), "
            f"not a {inrs.info.get('source')!r} folder"
        )
    dataset = inrs.info.get("dataset")
    limit = (inrs.info.get("config") or {}).get("limit")
    try:
        images = load_images(str(dataset), limit_train=limit, limit_test=limit)
        originals = source_images(inrs, images)
    except (ValueError, ImportError, OSError) as err:
        raise ValueError(
            f"INR folder {where!r}: its source images ({dataset!r}) cannot be loaded: {err}"
        ) from None
    shape = inrs.info.get("image_shape")
    if shape is not None and list(originals.shape[1:]) != list(shape):
        raise ValueError(
            f"INR folder {where!r}: {INR_FILE} says images are {shape}, but {dataset!r} "
            f"holds {list(originals.shape[1:])}"
        )
    return originals


def check_siren_space(spec: NetworkSpec, where: str) -> None:
    """Refuse a weight space :func:`~weightspace.data.inr.render` cannot draw grey images with."""
    if spec.is_cnn or spec.widths[0] != 2 or spec.widths[-1] != 1:
        raise ValueError(
            f"{where}: networks on {spec} are not SIRENs of grey images; INR editing needs "
            "dense networks with 2 inputs (pixel coordinates) and 1 output"
        )


def load_edit_set(
    path: str | os.PathLike[str] | InrDataset, edit: str, *, source: str = "auto"
) -> EditSet:
    """An INR folder (or dataset) with its source images and their ``edit``.

    Raises ``ValueError`` for an unknown edit, a folder that is not an INR folder, one whose
    source images cannot be found (a SIREN release folder, a missing image dataset, image
    indices it does not hold) or whose images are not its header's size, and a non-SIREN space.
    """
    check_edit(edit, "load_edit_set")
    where = str(path) if not isinstance(path, InrDataset) else _label(path)
    inrs = path if isinstance(path, InrDataset) else load_any_inrs(path, source=source)
    check_siren_space(inrs.spec, f"INR folder {where!r}")
    originals = _source_images_of(inrs, where)
    return EditSet(inrs, originals, edit_images(originals, edit), edit)


def _label(inrs: InrDataset) -> str:
    return str(inrs.info.get("root") or "<in-memory INRs>")


# ------------------------------------------------------------------ loss
def render_mse(features: WeightSpaceFeatures, targets: Tensor, *, reduce: bool = True) -> Tensor:
    """Pixel MSE between the SIRENs rendered on the targets' grid and the targets.

    Without gradients, renders :data:`RENDER_CHUNK` INRs at a time.

    Shapes
    ------
    - features: B SIRENs, 1 channel;  targets: ``(B, 1, H, W)``
    - returns: a scalar, or ``(B,)`` per INR when ``reduce`` is False
    """
    height, width = targets.shape[-2:]
    if torch.is_grad_enabled():
        per = (render(features, height, width) - targets).square().flatten(1).mean(dim=1)
    else:
        per = torch.cat(
            [
                (
                    render(features[i : i + RENDER_CHUNK], height, width)
                    - targets[i : i + RENDER_CHUNK]
                )
                .square()
                .flatten(1)
                .mean(dim=1)
                for i in range(0, len(targets), RENDER_CHUNK)
            ]
        )
    return per.mean() if reduce else per


# ------------------------------------------------------------------ config
@dataclass
class InrEditConfig(TaskConfig):
    """One INR-editing run (the training fields are :class:`TaskConfig`'s).

    ``inrs``: an INR folder written by ``weightspace inr fit``; ``model``: one of
    :data:`EDIT_MODELS`; ``out``: the run folder; ``edit``: one of
    :data:`~weightspace.data.edits.EDITS`. ``steps``: Adam steps, rounded up to whole epochs
    of the train split (``epochs`` is derived from it, see :meth:`fit_to`); ``warmup_steps``:
    the linear warm-up; ``lr_decay``: cosine decay after it by default (RESULTS.md measures it). ``hidden_channels``: the NF-Layers' widths (one more layer maps to the
    delta); ``mlp_hidden``: the MLP's; ``fourier_features`` / ``fourier_scale``: Gaussian
    Fourier features of each standardised weight (NFNs); ``gamma_init``: γ's initial value;
    ``sign_flips`` / ``half_periods``: train on random same-function copies of each SIREN (the
    target image is unchanged).
    """

    models = EDIT_MODELS
    nfn_models = ("np", "hnp", "pt")
    added_fields = TaskConfig.added_fields + ("sign_flips", "half_periods")

    inrs: str
    model: str
    out: str
    edit: str = option(None, "the image edit to learn", choices=EDITS, required=True)
    steps: int = option(6000, "Adam steps, rounded up to whole epochs", type=base.positive_int)
    warmup_steps: int = option(
        1000,
        "linear learning-rate warm-up over this many steps",
        kw_only=True,
        type=base.nonnegative_int,
    )
    lr_decay: str = option(
        "cosine",
        "learning-rate schedule after the warm-up: none or cosine",
        kw_only=True,
        choices=LR_DECAYS,
    )
    hidden_channels: tuple[int, ...] = option(
        (64, 64, 64), "NF-Layer channels before the output layer (NFNs)", type=base.int_tuple
    )
    mlp_hidden: tuple[int, ...] = option(
        (1000, 1000, 1000), "hidden widths of the MLP", type=base.int_tuple
    )
    fourier_features: int | None = option(
        None, "Gaussian Fourier features of each weight (NFNs)", type=base.positive_int
    )
    fourier_scale: float = option(3.0, "frequency scale of the Fourier features", type=float)
    gamma_init: float = option(0.01, "initial γ of every tensor", type=float)
    sign_flips: bool = option(
        False, "random hidden-neuron sign flips in training (exact for SIRENs)"
    )
    half_periods: bool = option(
        False, "random half-period shifts of the sine neurons in training (exact for SIRENs)"
    )
    source: str = option("auto", "which kind of INR folder --inrs is", choices=INR_SOURCES)

    def __post_init__(self) -> None:
        super().__post_init__()
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in self.mlp_hidden):
            self.refuse("mlp_hidden", "positive ints")
        ff = self.fourier_features
        if ff is not None and (isinstance(ff, bool) or not isinstance(ff, int) or ff < 1):
            self.refuse("fourier_features", "a positive int or None")
        if ff is not None and self.model not in self.nfn_models:
            self.refuse("fourier_features", f"None: it applies to the NFNs {self.nfn_models}")
        fs = self.fourier_scale
        if isinstance(fs, bool) or not isinstance(fs, int | float) or not 0 < fs < math.inf:
            self.refuse("fourier_scale", "a positive number")
        g = self.gamma_init
        if isinstance(g, bool) or not isinstance(g, int | float) or not math.isfinite(g):
            self.refuse("gamma_init", "a finite number")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            self.refuse("steps", "a positive int")

    def fit_to(self, n_train: int) -> None:
        """``epochs``: the fewest whole epochs of ``n_train`` INRs that make ``steps`` steps."""
        _, world = distributed.rank_and_world()
        per_epoch = max(1, math.ceil(n_train / (self.batch_size * world)))
        self.epochs = max(1, math.ceil(self.steps / per_epoch))

    def settings(self) -> dict[str, Any]:
        """As :meth:`TaskConfig.settings`, without ``epochs`` (derived from ``steps``)."""
        out = super().settings()
        out.pop("epochs", None)
        return out


# ------------------------------------------------------------------ models
def build_editor(
    model: str,
    spec: NetworkSpec,
    *,
    hidden_channels: tuple[int, ...] = (64, 64, 64),
    mlp_hidden: tuple[int, ...] = (1000, 1000, 1000),
    fourier_features: int | None = None,
    fourier_scale: float = 3.0,
    gamma_init: float = 0.01,
) -> WeightEdit:
    """The editor named ``model`` (:data:`EDIT_MODELS`): a :class:`~weightspace.models.WeightEdit`
    around an :class:`~weightspace.models.EquivariantNFN` of ``hidden_channels`` and a 1-channel
    output layer (NP with a sinusoidal IO encoding, HNP, or pointwise), or an MLP."""
    if model not in EDIT_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {EDIT_MODELS}")
    delta: nn.Module
    if model == "mlp":
        delta = FlatDelta(spec, tuple(mlp_hidden))
    else:
        delta = EquivariantNFN(
            spec,
            model,  # type: ignore[arg-type]
            tuple(hidden_channels),
            io_encoding="sinusoidal" if model == "np" else None,
            fourier_features=fourier_features,
            fourier_scale=fourier_scale,
        )
    return WeightEdit(delta, spec, gamma_init)


# ------------------------------------------------------------------ task
class InrEditing(Task):
    """Edit SIRENs in weight space; select on validation MSE; score test MSE and identity."""

    name, command = "inr-editing", "inr-edit"
    help = "learn to edit SIRENs in weight space so that they draw edited images"
    config_class = InrEditConfig
    data_field, noun, unit = "inrs", "INRs", "INRs"
    data_help = "INR folder written by `weightspace inr fit`"
    cli_fields = ("edit", "seed", "steps", "batch_size", "lr", "warmup_steps", "lr_decay")
    cli_fields += ("patience",)
    cli_fields += ("hidden_channels", "mlp_hidden", "fourier_features", "fourier_scale")
    cli_fields += ("gamma_init", "sign_flips", "half_periods", "train_limit", "source", "device")
    metric: ClassVar[str] = "mse"
    higher_is_better: ClassVar[bool] = False
    required = ("edit", "image_size", "hidden_channels", "mlp_hidden")
    eval_overrides: ClassVar[dict[str, Any]] = {"source": "auto"}
    eval_batch_size = 256

    def load(self, source: str, *, progress: bool = False) -> EditSet:
        s = self.settings
        return load_edit_set(source, s["edit"], source=s.get("source", "auto"))

    def check(self, data: Any, where: str) -> tuple[EditSet, dict[str, Any]]:
        if isinstance(data, InrDataset):
            data = load_edit_set(data, self.settings["edit"])
        if not isinstance(data, EditSet):
            raise ValueError(f"{where}: expected INRs (an EditSet), got {type(data).__name__}")
        check_siren_space(data.spec, f"INR folder {where!r}")
        if data.edit != self.settings["edit"]:
            raise ValueError(
                f"{where}: its targets are edited with {data.edit!r}, the run learns "
                f"{self.settings['edit']!r}"
            )
        return data, {"edit": data.edit}

    def summary(self, data: EditSet, where: str, extra: Any) -> str:
        counts = {n: len(data.part(n)) for n in ("train", "val", "test")}
        return f"{len(data)} INRs in {where} ({counts}); edit {data.edit!r}"

    def describe(self, data: EditSet, where: str) -> dict[str, Any]:
        return {"image_size": list(data.image_size), "dataset": data.info.get("dataset")}

    def check_compatible(self, data: EditSet, where: str, run: Path) -> None:
        size = list(self.settings["image_size"])
        if list(data.image_size) != size:
            raise ValueError(
                f"INR folder {where!r} holds images of {list(data.image_size)}, but the editor in "
                f"{str(run)!r} was trained on images of {size}"
            )

    def items(self, part: EditSet, *, train: bool) -> Items:
        return Items(part.inrs.features, part.targets)

    def build(self, spec: NetworkSpec) -> nn.Module:
        s = self.settings
        check_siren_space(spec, "INR editing")
        ff = s.get("fourier_features")
        return build_editor(
            s["model"],
            spec,
            hidden_channels=tuple(s["hidden_channels"]),
            mlp_hidden=tuple(s["mlp_hidden"]),
            fourier_features=None if ff is None else int(ff),
            fourier_scale=float(s.get("fourier_scale", 3.0)),
            gamma_init=float(s.get("gamma_init", 0.01)),
        )

    def prepare(self, model: nn.Module, train: EditSet) -> None:
        model.set_statistics(train.inrs.features)  # type: ignore[operator]

    def objective(self) -> Supervised:
        s = self.settings
        flips, shifts = bool(s.get("sign_flips")), bool(s.get("half_periods"))
        if not (flips or shifts):
            return Supervised(render_mse)
        # Another SIREN of the same function draws the same image: the target stays.
        spec = NetworkSpec.from_dict(s["spec"])
        augment = SymmetryAugmentation(spec, signs=flips, half_periods=shifts, omega0=OMEGA_0)
        return AugmentedLoss(render_mse, [augment])

    def metric_fn(self, outputs: WeightSpaceFeatures, targets: Tensor) -> float:
        with torch.no_grad():
            return float(render_mse(outputs, targets))

    def score(
        self, model: nn.Module, test: EditSet, title: str, out: Path | None
    ) -> dict[str, Any]:
        """Test MSE of the edited INRs, and of the unedited ones (``identity_mse``)."""
        start = time.perf_counter()
        items = self.items(test, train=False)
        edited, targets = predict(model, items, batch_size=self.eval_batch_size)
        elapsed = time.perf_counter() - start
        edited, targets = edited.to("cpu"), targets.to("cpu")
        with torch.no_grad():
            mse = render_mse(edited, targets, reduce=False)
            identity = render_mse(test.inrs.features, targets, reduce=False)
        metrics: dict[str, Any] = {
            "edit": test.edit,
            "test_mse": float(mse.mean()),
            "test_mse_01": float(mse.mean()) / 4,
            "identity_mse": float(identity.mean()),
            "identity_mse_01": float(identity.mean()) / 4,
            "n_test": len(test),
            "edit_time_s": elapsed,
            "ms_per_inr": 1000 * elapsed / max(1, len(test)),
        }
        if out is not None:
            k = min(SHOWN, len(test))
            shown = _shown_images(test, edited, k)
            write_safetensors(shown, out / "edits.safetensors", metadata={"title": title})
            viz.image_blocks(
                [(f"{self.settings['model']}", [shown[r] for r in ROWS])],
                ROW_NAMES,
                out / "edits.png",
                title=f"{title}\n{test.edit}: test MSE {metrics['test_mse']:.4f} "
                f"(identity {metrics['identity_mse']:.4f}), n = {len(test)}",
            )
            index = [row.get("index", j) for j, row in enumerate(test.inrs.metadata)]
            rows = zip(index, test.inrs.labels.tolist(), mse.tolist(), identity.tolist())
            runner.write_csv(["index", "label", "mse", "identity_mse"], rows, out / "test_mse.csv")
        return metrics


#: The rows of ``edits.png``, as stored in ``edits.safetensors``.
ROWS: tuple[str, ...] = ("original", "target", "edited")
ROW_NAMES: tuple[str, ...] = ("original render", "target", "edited render")


def _shown_images(test: EditSet, edited: WeightSpaceFeatures, k: int) -> dict[str, Tensor]:
    height, width = test.image_size
    with torch.no_grad():
        return {
            "original": render(test.inrs.features[:k], height, width).contiguous(),
            "target": test.targets[:k].contiguous(),
            "edited": render(edited[:k], height, width).contiguous(),
        }


def run_inr_editing(
    config: InrEditConfig, *, dataset: EditSet | InrDataset | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train an editor on an INR folder's train split, select on validation MSE, score on test.

    Resumes when ``config.out`` holds this run; ``dataset`` replaces loading ``config.inrs``.
    Returns ``RUN/metrics.json``.
    """
    return runner.run(InrEditing, config, data=dataset, progress=progress)


# ------------------------------------------------------------------ editing a folder
def edit_inr_folder(
    run: str | os.PathLike[str],
    inrs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    device: str = "auto",
    progress: bool = True,
) -> Path:
    """Write every INR of folder ``inrs``, edited by the model of ``run``, as INR folder ``out``.

    ``out`` has the same header, chunks and rows as ``inrs``, plus an ``"edit"`` entry (edit,
    model, run, source folder); each row's ``psnr`` is the edited INR's against the edited
    source image. Chunks already written are kept, so a killed call resumes.

    Raises
    ------
    ValueError
        ``run`` is not an INR-editing run; ``inrs`` is not a folder written by
        ``weightspace inr fit``, lies on another weight space or holds images of another size
        than the run's; ``out`` holds another store, or INRs edited by another run, from
        another folder or on another device type (``out``'s header records ``device``).
    """
    run, inrs, out = Path(run), Path(inrs), Path(out)
    task, spec, model = runner.load_trained(InrEditing, run)
    if not (inrs / INR_FILE).is_file():
        raise ValueError(
            f"{str(inrs)!r} holds no {INR_FILE}: `inr edit` needs a folder written by "
            "`weightspace inr fit`"
        )
    data = load_inrs(inrs)
    if data.spec != spec:
        raise ValueError(
            f"INR folder {str(inrs)!r} holds networks on {data.spec}, but the editor in "
            f"{str(run)!r} was trained on {spec}"
        )
    edit = task.settings["edit"]
    edits = load_edit_set(data, edit)
    task.check_compatible(edits, str(inrs), run)
    header = read_json(inrs / INR_FILE)
    stamp = {
        "edit": edit,
        "model": task.settings["model"],
        "run": os.path.abspath(run),
        "source": os.path.abspath(inrs),
    }
    dev = resolve_device(device)
    store = ChunkStore(out, INR_STORE)
    # The edits are computed on dev: the header records its type, and a resume must match it.
    store.check_resume(header["config"], header.get("threads"), dev.type)
    if store.header_path.is_file():
        previous = read_json(store.header_path).get("edit")
        if previous != stamp:
            raise ValueError(
                f"{str(store.header_path)!r} holds INRs edited as {previous!r}, not {stamp!r}; "
                "choose another output folder"
            )
    chunk_size = int(header["chunk_size"])
    num_chunks = math.ceil(len(data) / chunk_size)
    owned = store.begin({**header, "edit": stamp, "device": dev.type}, num_chunks, 0, 1)
    shapes = {t.name: t.shape for t in spec.tensors}

    def layout(k: int) -> ChunkLayout:
        return ChunkLayout(k, range(k * chunk_size, min((k + 1) * chunk_size, len(data))), shapes)

    model.to(dev).eval()
    height, width = edits.image_size

    def compute(k: int, position: int) -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
        part = edits.subset(list(layout(k).items))
        with torch.no_grad():
            edited = model(part.inrs.features.to(dev)).to("cpu")
            scores = torch.cat(
                [
                    psnr(render(edited[i : i + RENDER_CHUNK], height, width), t)
                    for i, t in zip(
                        range(0, len(part), RENDER_CHUNK), part.targets.split(RENDER_CHUNK)
                    )
                ]
            )
        tensors = {t.name: x[:, 0].contiguous() for t, x in zip(spec.tensors, edited.tensors)}
        rows = [{**row, "psnr": float(s)} for row, s in zip(part.inrs.metadata, scores.tolist())]
        return tensors, rows

    todo = store.missing(owned, layout)
    store.fill(
        todo, compute, total=len(owned), desc=f"edit ({edit})", progress=progress, rank=0, world=1
    )
    return out
