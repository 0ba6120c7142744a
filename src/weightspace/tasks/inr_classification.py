"""Classifying INRs: tell which class an image belongs to from its SIREN's weights (paper §4).

The classifier never sees a pixel, only the weights. Four are compared, as in the paper:
``"np"`` and ``"hnp"``, NFNs of NP or HNP layers (the NP one with a sinusoidal IO encoding;
both optionally on Gaussian Fourier features of the weights); ``"mlp"``, an MLP on the
flattened weights; and ``"mlp-aug"``, that MLP trained on randomly permuted SIRENs. Each first
standardises every weight and bias tensor by the training split's mean and standard deviation
(:class:`~weightspace.tasks.inputs.Standardized`; SIREN layers differ in scale by an order of
magnitude). Beside them, two models read the function the weights compute: ``"probe"`` runs
each SIREN on learned coordinates (:class:`~weightspace.models.ProbeModel`, raw weights), and
``"np-probe"`` feeds those outputs and the NP NFN's pooled features to one head
(:class:`~weightspace.models.HybridModel`). Training uses cross-entropy, optionally on sign
flips, half-period shifts or moved images (all drawn per batch in the objective), and keeps the
best validation accuracy::

    RUN/metrics.json      test_accuracy, per_class_accuracy, confusion_matrix, n_test, model, …
    RUN/confusion.png     the test confusion matrix with class names
    RUN/predictions.csv   one row per test INR: index, label, predicted
    RUN/probes.png        probe models: where the learned probes lie over the mean test image

:class:`InrClassifyConfig`'s defaults are sized for a CPU; :data:`PAPER_CONFIG` holds the
paper's model for a GPU and :func:`paper_config` turns it into a config.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from weightspace import viz
from weightspace.data.inr import OMEGA_0, InrDataset, render, siren_activation
from weightspace.data.siren_format import PAPER_SPLIT_POINTS
from weightspace.models.probe import HybridModel, ProbeModel
from weightspace.nn.probe import PROBE_GENERATORS, ProbeFeatures
from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.symmetry import canonicalize
from weightspace.tasks import base, runner
from weightspace.tasks.base import TaskConfig, option
from weightspace.tasks.classification import ClassificationTask
from weightspace.tasks.inputs import (
    AffineAugmentation,
    Augmentation,
    Standardized,
    SymmetryAugmentation,
)
from weightspace.tasks.sources import INR_SOURCES, detect_inr_source, load_any_inrs

__all__ = ["MODELS", "PAPER_CONFIG", "SOURCES", "InrClassification", "InrClassifier"]
__all__ += ["InrClassifyConfig", "build_classifier", "detect_inr_source", "evaluate_inrs"]
__all__ += ["load_any_inrs", "paper_config", "run_inr_classification"]

MODELS: tuple[str, ...] = ("np", "hnp", "mlp", "mlp-aug", "probe", "np-probe")
#: Models that read the function through learned probes (:mod:`weightspace.models.probe`).
PROBE_MODELS: tuple[str, ...] = ("probe", "np-probe")
SOURCES = INR_SOURCES
#: ``image_augment``'s moves (:class:`~weightspace.tasks.inputs.AffineAugmentation`): up to 10°
#: of rotation, 10 % of zoom and 2 pixels of shift on a 28-pixel side (coordinates span 2).
IMAGE_AUGMENT: tuple[float, float, float] = (10.0, 1.1, 2 * 2 / 27)
#: ``probe_gradients``' unit: one pixel's step on a 28-pixel side (coordinates span 2), so the
#: derivatives read as differences between neighbouring pixels.
PROBE_GRADIENT_SCALE = 2 / 27
#: Gaussian Fourier features the NFN classifiers use by default (``fourier_features="auto"``).
NFN_FOURIER_FEATURES = 64
#: The paper's INR classifier (§4), for a GPU: 3 NP layers of 512 channels with a sinusoidal IO
#: encoding, a head of 1000 units with dropout 0.5, 200k Adam steps at lr 1e-3, on 45k SIRENs
#: plus 10 extra fits per training image. ``batch_size`` 32 is this package's assumption.
PAPER_CONFIG: dict[str, Any] = {
    **{"model": "np", "hidden_channels": (512, 512, 512), "head_hidden": (1000,)},
    **{"dropout": 0.5, "io_encoding": "sinusoidal", "steps": 200_000, "lr": 1e-3},
    "batch_size": 32,
}


@dataclass
class InrClassifyConfig(TaskConfig):
    """One INR-classification run (the training fields are :class:`TaskConfig`'s).

    ``inrs``: the INR folder (:func:`load_any_inrs`); ``model``: one of :data:`MODELS`;
    ``out``: the run folder; ``hidden_channels`` (NFNs only), ``head_hidden`` and ``dropout``
    size the classifier. ``fourier_features``: Gaussian Fourier features of each weight (NFNs
    only; ``"auto"``: :data:`NFN_FOURIER_FEATURES` for NFNs, without which they do not learn on
    these SIRENs, see RESULTS.md). ``normalize``: standardise each tensor by
    training-split statistics. ``sign_flips``: train on random hidden-neuron sign flips (exact
    for sine networks; ``"auto"``: on for NFNs, off for the MLPs, as the paper trains them).
    ``half_periods``: also random half-period shifts (exact for SIRENs); ``canonicalize``: the
    model reads every SIREN in its canonical form (:class:`Canonicalized`); ``image_augment``:
    train on moved images (:data:`IMAGE_AUGMENT`, made on the weights; ``"auto"``: on for the
    probe models); ``mirror_images``: also mirror half of them left to right (exact on the
    pixel grid; for Fashion-MNIST, not digits). ``fourier_scale`` and ``channel_dropout`` shape
    the NFNs; ``probes``, ``probe_generator`` and ``probe_gradients`` (also the derivatives at
    each probe, in :data:`PROBE_GRADIENT_SCALE` units) the probe models. ``source``: one of
    :data:`SOURCES`; ``prefix``, ``split_points``, ``augment_prefixes``: for SIREN folders, see
    :func:`load_any_inrs`.
    """

    models = MODELS
    nfn_models = ("np", "hnp", "np-probe")
    added_fields = TaskConfig.added_fields + ("fourier_scale", "channel_dropout", "image_augment")
    added_fields += ("probes", "probe_generator", "half_periods", "canonicalize", "mirror_images")
    added_fields += ("probe_gradients",)

    inrs: str
    model: str
    out: str
    epochs: int = option(30, "passes over the training split", kw_only=True, type=base.positive_int)
    hidden_channels: tuple[int, ...] = option(
        (32, 32, 32), "NF-Layer channels, comma-separated", type=base.int_tuple
    )
    head_hidden: tuple[int, ...] = option(
        (256,), "head widths, comma-separated", type=base.int_tuple
    )
    dropout: float = option(0.2, "dropout in the head", type=float)
    fourier_features: int | str | None = option(
        "auto",
        "Gaussian Fourier features of each weight (NFNs); 0 for none",
        type=base.auto_or_count,
    )
    fourier_scale: float = option(10.0, "frequency scale of the Fourier features", type=float)
    channel_dropout: float = option(0.0, "channel dropout after each NF-Layer (NFNs)", type=float)
    normalize: bool = option(
        True, "standardise each tensor by training statistics (weight-space models)",
        type=base.on_off,
    )  # fmt: skip
    half_periods: bool = option(
        False, "random half-period shifts of the sine neurons in training (exact for SIRENs)"
    )
    canonicalize: bool = option(
        False, "fold every sine neuron into its canonical form before the model reads it"
    )
    image_augment: bool | str = option(
        "auto",
        "random moves of the images, made on the weights (auto: on for the probe models)",
        type=base.auto_on_off,
    )
    mirror_images: bool = option(
        False,
        "also mirror half the training images left to right, made on the weights (for classes "
        "that survive a mirror, such as clothes; not digits)",
    )
    probes: int = option(128, "probe inputs of the probe models", type=base.positive_int)
    probe_generator: str = option(
        "deep-linear", "how probes are parameterised (probe models)", choices=PROBE_GENERATORS
    )
    probe_gradients: bool = option(
        False, "probe models also read the image's slope at each probe (its x and y derivatives)"
    )
    sign_flips: bool | str = option(
        "auto", "hidden-neuron sign flips in training (auto: on for NFNs)", type=base.auto_on_off
    )
    source: str = option("auto", "which kind of INR folder --inrs is", choices=SOURCES)
    prefix: str | None = None
    split_points: tuple[int, int] | None = PAPER_SPLIT_POINTS
    augment_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        nfn = self.model in self.nfn_models
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            self.refuse("dropout", "in [0, 1)")
        for name in ("mirror_images", "probe_gradients"):
            if not isinstance(getattr(self, name), bool):
                self.refuse(name, "True or False")
        if self.probe_gradients and self.model not in PROBE_MODELS:
            self.refuse("probe_gradients", f"False: it applies to the probe models {PROBE_MODELS}")
        if self.image_augment != "auto" and not isinstance(self.image_augment, bool):
            self.refuse("image_augment", "True, False or 'auto'")
        cd = self.channel_dropout
        if not (isinstance(cd, int | float) and 0 <= cd < 1):
            self.refuse("channel_dropout", "a number in [0, 1)")
        if cd and not nfn:
            self.refuse("channel_dropout", f"0: it applies to the NFN models {self.nfn_models}")
        fs = self.fourier_scale
        if isinstance(fs, bool) or not isinstance(fs, int | float) or not 0 < fs < math.inf:
            self.refuse("fourier_scale", "a positive number")
        if self.sign_flips == "auto":
            self.sign_flips = nfn
        if not isinstance(self.sign_flips, bool):
            self.refuse("sign_flips", "True, False or 'auto'")
        if self.fourier_features == "auto":
            self.fourier_features = NFN_FOURIER_FEATURES if nfn else None
        ff = self.fourier_features
        if ff is not None and (isinstance(ff, bool) or not isinstance(ff, int) or ff < 1):
            self.refuse("fourier_features", "a positive int, None or 'auto'")
        if ff is not None and not nfn:
            self.refuse("fourier_features", f"None: it applies to the NFN models {self.nfn_models}")


def paper_config(
    inrs: str, out: str, *, num_train: int, model: str = "np", **overrides: Any
) -> InrClassifyConfig:
    """:data:`PAPER_CONFIG` as a config: its 200k steps become ``ceil(steps · batch / num_train)``
    epochs of ``num_train`` training INRs; ``overrides`` replace any field."""
    if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
        raise ValueError(f"paper_config: num_train must be a positive int, got {num_train!r}")
    keys = ("hidden_channels", "head_hidden", "dropout", "lr", "batch_size")
    options: dict[str, Any] = {k: PAPER_CONFIG[k] for k in keys} | overrides
    steps = PAPER_CONFIG["steps"] * options["batch_size"]
    options.setdefault("epochs", math.ceil(steps / num_train))
    return InrClassifyConfig(inrs=inrs, model=model, out=out, **options)


#: The classifier: per-tensor standardisation, then the network on the standardised weights.
InrClassifier = Standardized


def build_classifier(
    model: str,
    spec: NetworkSpec,
    num_classes: int,
    *,
    hidden_channels: Sequence[int] = (32, 32, 32),
    head_hidden: Sequence[int] = (256,),
    dropout: float = 0.2,
    fourier_features: int | None = None,
    fourier_scale: float = 10.0,
    channel_dropout: float = 0.0,
    probes: int = 128,
    probe_generator: str = "deep-linear",
    probe_gradients: bool = False,
) -> nn.Module:
    """The classifier named ``model`` (:data:`MODELS`) for INRs on ``spec`` with ``num_classes``
    logits.

    The weight-space models (see :func:`~weightspace.tasks.base.invariant_model`; ``"mlp-aug"``
    is the ``"mlp"`` network) sit behind a :class:`~weightspace.tasks.inputs.Standardized`.
    ``"probe"`` is a :class:`~weightspace.models.ProbeModel` with ``probes`` probes, which runs
    the SIRENs as they are; ``"np-probe"`` a :class:`~weightspace.models.HybridModel` of those
    probes and an NP NFN of ``hidden_channels`` (standardised inside).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"build_classifier: need at least 2 classes, got {num_classes!r}")
    if model in PROBE_MODELS:
        probe = {"num_probes": probes, "generator": probe_generator, "activation": siren_activation}
        if probe_gradients:
            probe |= {"gradients": True, "gradient_scale": PROBE_GRADIENT_SCALE}
        if model == "probe":
            return ProbeModel(spec, tuple(head_hidden), num_classes, dropout, **probe)
        return HybridModel(
            spec, "np", tuple(hidden_channels), tuple(head_hidden), num_classes, dropout,
            fourier_features=fourier_features, fourier_scale=fourier_scale,
            channel_dropout=channel_dropout, **probe,
        )  # fmt: skip
    name = "mlp" if model == "mlp-aug" else model
    options: dict[str, Any] = {"fourier_features": fourier_features, "dropout": dropout}
    if fourier_features is not None:
        options["fourier_scale"] = fourier_scale
    if channel_dropout:
        options["channel_dropout"] = channel_dropout
    net = base.invariant_model(name, spec, hidden_channels, head_hidden, num_classes, **options)
    return Standardized(net, spec)


class InrClassification(ClassificationTask):
    """Classify images from their SIRENs' weights; select on validation accuracy."""

    name, command = "inr-classification", "inr-classify"
    help = "classify images from their SIRENs' weights"
    config_class = InrClassifyConfig
    data_field, noun, unit = "inrs", "INRs", "INRs"
    data_help = "INR folder (`weightspace inr fit` or SIRENs)"
    cli_fields = ("seed", "epochs", "batch_size", "lr", "patience", "warmup_steps", "lr_decay")
    cli_fields += ("train_limit",)
    cli_fields += (
        "hidden_channels",
        "head_hidden",
        "dropout",
        "fourier_features",
        "fourier_scale",
        "channel_dropout",
        "normalize",
    )
    cli_fields += (
        "sign_flips",
        "half_periods",
        "canonicalize",
        "image_augment",
        "mirror_images",
        "probes",
        "probe_generator",
        "probe_gradients",
    )
    cli_fields += ("source", "device")
    eval_batch_size = 256
    required = (*ClassificationTask.required, "hidden_channels", "head_hidden")
    #: Another folder's format is told apart again; extra training fits are not test data.
    eval_overrides: ClassVar[dict[str, Any]] = {"source": "auto", "augment_prefixes": ()}

    def load(self, source: str, *, progress: bool = False) -> InrDataset:
        s = self.settings
        points = s.get("split_points")
        return load_any_inrs(
            source,
            source=s.get("source", "auto"),
            prefix=s.get("prefix"),
            split_points=None if points is None else tuple(points),
            augment_prefixes=tuple(s.get("augment_prefixes", ())),
            progress=progress,
        )

    def split_hint(self, data: InrDataset, extra: dict[str, Any]) -> str:
        siren = data.info.get("source") == "nfn-siren-folder"
        return " (set split_points for a SIREN folder)" if siren else ""

    def build(self, spec: NetworkSpec) -> nn.Module:
        s = self.settings
        net = build_classifier(
            s["model"],
            spec,
            int(s["num_classes"]),
            hidden_channels=s["hidden_channels"],
            head_hidden=s["head_hidden"],
            dropout=float(s.get("dropout", 0.0)),
            fourier_features=s.get("fourier_features"),
            fourier_scale=float(s.get("fourier_scale", 10.0)),
            channel_dropout=float(s.get("channel_dropout", 0.0)),
            probes=int(s.get("probes", 128)),
            probe_generator=s.get("probe_generator", "deep-linear"),
            probe_gradients=bool(s.get("probe_gradients", False)),
        )
        return Canonicalized(net) if s.get("canonicalize") else net

    def prepare(self, model: nn.Module, train: InrDataset) -> None:
        if self.settings.get("normalize", True) and hasattr(model, "set_statistics"):
            model.set_statistics(train.features)

    def score(
        self, model: nn.Module, test: InrDataset, title: str, out: Path | None
    ) -> dict[str, Any]:
        """The classification scores, and for probe models ``probes.png``: where the learned
        probes lie, over the mean test image the SIRENs draw."""
        metrics = super().score(model, test, title, out)
        probe = getattr(getattr(model, "net", model), "probe", None)
        shape = test.info.get("image_shape")
        if out is not None and isinstance(probe, ProbeFeatures) and shape and len(shape) == 3:
            with torch.no_grad():
                feats = test.features[: min(len(test), 256)]
                mean = render(feats.to(next(model.parameters()).device), *shape[1:]).mean(
                    dim=(0, 1)
                )
                viz.probe_points(probe.probes().cpu(), mean.cpu(), out / "probes.png", title=title)
        return metrics

    def augmentation(self) -> list[Augmentation]:
        s = self.settings
        spec, flips = NetworkSpec.from_dict(s["spec"]), bool(s.get("sign_flips"))
        augments: list[Augmentation] = [
            SymmetryAugmentation(
                spec,
                signs=flips,
                half_periods=bool(s.get("half_periods")),
                omega0=OMEGA_0,
                permute=s["model"] == "mlp-aug",
            )
        ]
        mirror = 1 if s.get("mirror_images") else None  # axis 1 of pixel_grid: the column
        if image_augment(s):
            augments.append(AffineAugmentation(*IMAGE_AUGMENT, mirror=mirror))
        elif mirror is not None:
            augments.append(AffineAugmentation(mirror=mirror))
        return augments


def image_augment(settings: dict[str, Any]) -> bool:
    """Whether a run trains on moved images: its ``image_augment``, where ``"auto"`` is on for
    the probe models (they read images; RESULTS.md measures the gain) and off for the others.
    ``"auto"`` stays unresolved in ``config.json``, so runs written before the field resume."""
    value = settings.get("image_augment", "auto")
    return settings["model"] in PROBE_MODELS if value == "auto" else bool(value)


class Canonicalized(nn.Module):
    """``net`` on the canonical form of each SIREN (:func:`weightspace.symmetry.canonicalize`:
    every sine neuron's phase folded into [0, π/2]; the function is unchanged)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        if hasattr(self.net, "set_statistics"):
            self.net.set_statistics(canonicalize(features, siren_activation))

    def forward(self, x: WeightSpaceFeatures) -> Any:
        return self.net(canonicalize(x, siren_activation))


def run_inr_classification(
    config: InrClassifyConfig, *, dataset: InrDataset | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train a classifier on an INR set's train split, select on val accuracy, score on test.

    Resumes when ``config.out`` holds this run; ``dataset`` replaces loading ``config.inrs``.
    Returns ``RUN/metrics.json``: :func:`~weightspace.tasks.metrics.classification_metrics`
    of the test split and the runner's training fields (``best_val_accuracy``, …).
    """
    if dataset is not None and not isinstance(dataset, InrDataset):
        got = type(dataset).__name__
        raise ValueError(f"run_inr_classification: dataset must be an InrDataset, got {got}")
    return runner.run(InrClassification, config, data=dataset, progress=progress)


def evaluate_inrs(
    run: str | os.PathLike[str],
    inrs: str | os.PathLike[str] | InrDataset,
    *,
    source: str = "auto",
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Score a trained classifier on the test split of an INR folder (read with the run's
    ``prefix`` and ``split_points``); writes ``RUN/eval/<folder name>/``."""
    options = {"overrides": {"source": source}, "device": device, "progress": progress}
    return runner.evaluate(InrClassification, run, inrs, **options)
