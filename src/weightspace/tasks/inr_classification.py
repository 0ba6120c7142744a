"""Classifying INRs: tell which class an image belongs to from its SIREN's weights (paper §4).

Each image is a SIREN (:mod:`weightspace.data.inr`); the classifier never sees a pixel, only the
weights. Four classifiers are compared, as in the paper: ``"np"``, an NFN of NP layers with a
sinusoidal IO encoding (optionally Gaussian Fourier input features), an NP pool and an MLP head;
``"hnp"``, the same with HNP layers and pool; ``"mlp"``, an MLP on the flattened weights; and
``"mlp-aug"``, that MLP trained on randomly permuted SIRENs (a fresh random HNP permutation of
every training example at every step, :mod:`weightspace.tasks.augment`).

Every classifier first standardises each weight and bias tensor by one scalar mean and standard
deviation measured on the training split (SIREN layers differ in scale by an order of
magnitude); a scalar per tensor commutes with every permutation. Training uses cross-entropy and
keeps the model with the best validation accuracy (see :mod:`weightspace.tasks.runner`)::

    RUN/metrics.json      test_accuracy, per_class_accuracy, confusion_matrix, n_test, model, …
    RUN/confusion.png     the test confusion matrix with class names
    RUN/predictions.csv   one row per test INR: index, label, predicted

:class:`InrClassifyConfig`'s defaults are sized for a CPU (3 NF-Layers of 32 channels, a head of
256 units with dropout 0.2, batch 32, 30 epochs); :data:`PAPER_CONFIG` holds the paper's model
for a GPU and :func:`paper_config` turns it into a config.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightspace import viz
from weightspace.data.inr import INR_FILE, InrDataset, load_inrs
from weightspace.data.siren_format import PAPER_PREFIX, PAPER_SPLIT_POINTS, load_siren_folder
from weightspace.models import FlatMLP, InvariantNFN
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec
from weightspace.tasks import runner
from weightspace.tasks.augment import AugmentedLoss, SymmetryAugmentation
from weightspace.tasks.base import Items, Task, TaskConfig, option, positive_int
from weightspace.tasks.metrics import accuracy, confusion_matrix, per_class_accuracy
from weightspace.train.loop import predict

__all__ = [
    "MODELS",
    "PAPER_CONFIG",
    "SOURCES",
    "InrClassification",
    "InrClassifier",
    "InrClassifyConfig",
    "build_classifier",
    "detect_inr_source",
    "evaluate_inrs",
    "load_any_inrs",
    "paper_config",
    "run_inr_classification",
]

MODELS: tuple[str, ...] = ("np", "hnp", "mlp", "mlp-aug")
#: Written by :func:`~weightspace.data.inr.fit_inrs`, or the NFN paper's released
#: ``{prefix}_{label}s/net{i}.pth`` folders; ``"auto"`` tells them apart.
SOURCES: tuple[str, ...] = ("auto", "weightspace", "siren-folder")
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


def _fourier(text: str) -> int | str | None:
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0, got {text!r}")
    return int(text) or None


def _on_off(text: str) -> bool | str:
    if text not in ("auto", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
    return {"auto": "auto", "on": True, "off": False}[text]


@dataclass
class InrClassifyConfig(TaskConfig):
    """One INR-classification run (the training fields are :class:`TaskConfig`'s).

    Attributes
    ----------
    inrs, model, out:
        Folder of the INRs (see :func:`load_any_inrs`), one of :data:`MODELS`, run folder.
    hidden_channels, head_hidden, dropout:
        NF-Layer channels (NFNs only), hidden widths of the MLP head, dropout in the head.
    fourier_features:
        Gaussian Fourier features of every weight (NFNs only; ``None``: none). ``"auto"``:
        :data:`NFN_FOURIER_FEATURES` for the NFNs, none for the MLPs. Without them an NFN on
        the bundled MNIST SIRENs stays at chance level for the first epochs.
    normalize:
        Standardise each weight/bias tensor by its training-split mean and standard deviation.
    sign_flips:
        Augment training examples with random hidden-neuron sign flips (exact for SIRENs: sine
        is odd). ``"auto"``: on for the NFNs, off for the MLP baselines (as the paper trains).
    source, prefix, split_points, augment_prefixes:
        One of :data:`SOURCES`; for SIREN folders (see :func:`load_any_inrs`) which folders
        hold the INRs, ``(val_start, test_start)``, and extra prefixes whose training-split INRs
        join the training set.
    """

    models = MODELS
    nfn_models = ("np", "hnp")

    inrs: str
    model: str
    out: str
    epochs: int = option(30, "passes over the training split", kw_only=True, type=positive_int)
    hidden_channels: tuple[int, ...] = (32, 32, 32)
    head_hidden: tuple[int, ...] = (256,)
    dropout: float = 0.2
    fourier_features: int | str | None = option(
        "auto", "Gaussian Fourier features of each weight (NFNs); 0 for none", type=_fourier
    )
    normalize: bool = True
    sign_flips: bool | str = option(
        "auto", "random hidden-neuron sign flips in training (auto: on for the NFNs)",
        type=_on_off, metavar="auto|on|off",
    )  # fmt: skip
    source: str = option("auto", "which kind of INR folder --inrs is", choices=SOURCES)
    prefix: str | None = None
    split_points: tuple[int, int] | None = PAPER_SPLIT_POINTS
    augment_prefixes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        nfn, ff = self.model in self.nfn_models, self.fourier_features
        if self.source not in SOURCES:
            raise ValueError(
                f"InrClassifyConfig.source must be one of {SOURCES}, got {self.source!r}"
            )
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            raise ValueError(f"InrClassifyConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if self.sign_flips == "auto":
            self.sign_flips = nfn
        if not isinstance(self.sign_flips, bool):
            raise ValueError(
                f"InrClassifyConfig.sign_flips must be a bool or 'auto', got {self.sign_flips!r}"
            )
        if ff == "auto":
            self.fourier_features = ff = NFN_FOURIER_FEATURES if nfn else None
        if ff is not None and (isinstance(ff, bool) or not isinstance(ff, int) or ff < 1):
            raise ValueError(
                f"InrClassifyConfig.fourier_features must be a positive int, None or 'auto', got {ff!r}"
            )
        if ff is not None and not nfn:
            raise ValueError(
                f"InrClassifyConfig.fourier_features applies to the NFN models {self.nfn_models}, not {self.model!r}"
            )


def paper_config(
    inrs: str, out: str, *, num_train: int, model: str = "np", **overrides: Any
) -> InrClassifyConfig:
    """:data:`PAPER_CONFIG` as a config: its 200k steps become ``ceil(steps · batch / num_train)``
    epochs of ``num_train`` training INRs; ``overrides`` replace any field."""
    if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
        raise ValueError(f"paper_config: num_train must be a positive int, got {num_train!r}")
    keys = ("hidden_channels", "head_hidden", "dropout", "lr", "batch_size")
    options: dict[str, Any] = {k: PAPER_CONFIG[k] for k in keys} | overrides
    options.setdefault(
        "epochs", math.ceil(PAPER_CONFIG["steps"] * options["batch_size"] / num_train)
    )
    return InrClassifyConfig(inrs=inrs, model=model, out=out, **options)


def _kind(path: str | os.PathLike[str], source: str) -> str:
    markers = {
        "weightspace": lambda p: (p / INR_FILE).exists(),
        "siren-folder": lambda p: any(p.glob("*/*.pth")),
    }
    expected = (
        f"{INR_FILE} (written by `weightspace inr fit`) or label folders of SIREN state dicts "
        "({prefix}_{label}s/net{i}.pth, the NFN paper's release)"
    )
    return runner.resolve_kind(path, source, markers, noun="INR folder", expected=expected)


def load_any_inrs(
    path: str | os.PathLike[str],
    *,
    source: str = "auto",
    prefix: str | None = None,
    split_points: tuple[int, int] | None = PAPER_SPLIT_POINTS,
    augment_prefixes: Sequence[str] = (),
    progress: bool = False,
) -> InrDataset:
    """Load INRs written by :func:`~weightspace.data.inr.fit_inrs` or a SIREN release folder.

    ``source`` is one of :data:`SOURCES`. For SIREN folders: ``prefix`` picks the
    ``{prefix}_{label}s`` folders (``None``: the release's originals when present, else the
    only one), ``split_points`` is ``(val_start, test_start)``, and the training-split INRs of
    ``augment_prefixes`` (extra fits of the same images) are appended. Errors of the loaders
    (wrong architecture, missing or out-of-range labels, NaN weights) name the file.
    """
    source = _kind(path, source)
    if source == "weightspace":
        if augment_prefixes:
            raise ValueError(
                "augment_prefixes are for SIREN release folders; a fit_inrs folder stores its augmentation copies itself (InrConfig.augment)"
            )
        return load_inrs(path)
    root = Path(path)
    pattern = re.compile(rf"^{re.escape(PAPER_PREFIX)}_\d+s$")
    if prefix is None and any(p.is_dir() and pattern.match(p.name) for p in root.iterdir()):
        prefix = PAPER_PREFIX
    data = load_siren_folder(root, prefix=prefix, split_points=split_points, spec=None, progress=progress)
    for extra in augment_prefixes:
        more = load_siren_folder(
            root, prefix=extra, split_points=split_points, spec=data.spec, progress=progress
        ).part("train")
        data = InrDataset(
            data.spec,
            WeightSpaceFeatures.cat([data.features, more.features]),
            torch.cat([data.labels, more.labels]),
            torch.cat([data.split, more.split]),
            [*data.metadata, *more.metadata],
            {**data.info, "num_inrs": len(data) + len(more)},
        )
    return data


def detect_inr_source(path: str | os.PathLike[str]) -> str:
    """``"weightspace"`` (an ``inrs.json`` is present) or ``"siren-folder"`` (``*/net*.pth``)."""
    return _kind(path, "auto")


class InrClassifier(nn.Module):
    """Per-tensor standardisation, then a classifier on the standardised weights.

    ``shift`` and ``scale`` are ``(2L,)`` buffers, one per tensor in ``spec.tensors`` order: the
    input tensor t becomes ``(t - shift) / scale`` (identity until :meth:`set_statistics`).

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: ``(B, num_classes)`` logits
    """

    def __init__(self, net: nn.Module, spec: NetworkSpec) -> None:
        super().__init__()
        self.net, self.spec = net, spec
        self.register_buffer("shift", torch.zeros(len(spec.tensors)))
        self.register_buffer("scale", torch.ones(len(spec.tensors)))

    @torch.no_grad()
    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        """Each tensor's mean and standard deviation over all networks and entries (float64; a
        constant tensor keeps scale 1)."""
        check_features(features, self.spec, 1, "InrClassifier.set_statistics")
        std, mean = zip(*(torch.std_mean(t.double(), correction=0) for t in features.tensors))
        std = torch.stack(std)
        self.shift.copy_(torch.stack(mean))
        self.scale.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        check_features(x, self.spec, 1, type(self).__name__)
        shift, scale = self.shift.to(x.dtype), self.scale.to(x.dtype)
        tensors = [(t - shift[k]) / scale[k] for k, t in enumerate(x.tensors)]
        return self.net(WeightSpaceFeatures.from_tensors(tensors, self.spec))


def build_classifier(
    model: str,
    spec: NetworkSpec,
    num_classes: int,
    *,
    hidden_channels: Sequence[int] = (32, 32, 32),
    head_hidden: Sequence[int] = (256,),
    dropout: float = 0.2,
    fourier_features: int | None = None,
) -> InrClassifier:
    """The classifier named ``model`` (:data:`MODELS`) for INRs on ``spec`` with ``num_classes``
    logits, in an :class:`InrClassifier` (``"mlp"`` and ``"mlp-aug"`` are the same network)."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"build_classifier: need at least 2 classes, got {num_classes!r}")
    if model in ("np", "hnp"):
        encoding = "sinusoidal" if model == "np" else None
        net: nn.Module = InvariantNFN(
            spec, model, tuple(hidden_channels), tuple(head_hidden), num_classes,
            io_encoding=encoding, fourier_features=fourier_features, dropout=dropout,
        )  # fmt: skip
    elif fourier_features is not None:
        raise ValueError(f"build_classifier: fourier_features applies to NFNs, not {model!r}")
    else:
        net = FlatMLP(
            spec, head_hidden=tuple(head_hidden), out_features=num_classes, dropout=dropout
        )
    return InrClassifier(net, spec)


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels.long())


class InrClassification(Task):
    """Classify images from their SIRENs' weights; select on validation accuracy."""

    name, command = "inr-classification", "inr-classify"
    help = "classify images from their SIRENs' weights"
    config_class = InrClassifyConfig
    data_field, noun, unit = "inrs", "INRs", "INRs"
    data_help = "INR folder (`weightspace inr fit` or SIRENs)"
    cli_fields = (
        "seed",
        "epochs",
        "batch_size",
        "lr",
        "patience",
        "fourier_features",
        "sign_flips",
        "source",
        "device",
    )
    metric, higher_is_better, eval_batch_size = "accuracy", True, 256
    required = ("hidden_channels", "head_hidden", "num_classes", "classes")
    #: Another folder's format is told apart again; extra training fits are not test data.
    eval_overrides: ClassVar[dict[str, Any]] = {"source": "auto", "augment_prefixes": ()}

    def load(self, source: str, *, progress: bool = False) -> InrDataset:
        s = self.settings
        points = None if s.get("split_points") is None else tuple(s["split_points"])
        return load_any_inrs(
            source, source=s.get("source", "auto"), prefix=s.get("prefix"), split_points=points,
            augment_prefixes=tuple(s.get("augment_prefixes", ())), progress=progress,
        )  # fmt: skip

    def split_hint(self, data: InrDataset, extra: dict[str, Any]) -> str:
        siren = data.info.get("source") == "nfn-siren-folder"
        return " (set split_points for a SIREN folder)" if siren else ""

    def describe(self, data: InrDataset, where: str) -> dict[str, Any]:
        k = data.num_classes
        if k < 2:
            raise ValueError(f"INRs {where!r} hold {k} class(es); need at least 2")
        _check_labels(data, k, where)
        names = [str(c) for c in data.info.get("classes") or []]
        return {
            "num_classes": k,
            "classes": names if len(names) == k else [str(i) for i in range(k)],
        }

    def check_compatible(self, data: InrDataset, where: str, run: Path) -> None:
        classes, known = self.settings["classes"], data.info.get("classes")
        if known and [str(c) for c in known] != classes:
            raise ValueError(
                f"INRs {where!r} have classes {list(known)}, but the classifier in {str(run)!r} was trained on classes {classes}"
            )
        _check_labels(data, len(classes), where)

    def items(self, part: InrDataset, *, train: bool) -> Items:
        return Items(part.features, part.labels)

    def build(self, spec: NetworkSpec) -> nn.Module:
        s = self.settings
        return build_classifier(
            s["model"], spec, int(s["num_classes"]), hidden_channels=s["hidden_channels"],
            head_hidden=s["head_hidden"], dropout=float(s.get("dropout", 0.0)),
            fourier_features=s.get("fourier_features"),
        )  # fmt: skip

    def prepare(self, model: InrClassifier, train: InrDataset) -> None:  # type: ignore[override]
        if self.settings.get("normalize", True):
            model.set_statistics(train.features)

    def objective(self) -> AugmentedLoss:
        s = self.settings
        spec = NetworkSpec.from_dict(s["spec"])
        flips, permute = bool(s.get("sign_flips")), s["model"] == "mlp-aug"
        return AugmentedLoss(
            _cross_entropy, SymmetryAugmentation(spec, signs=flips, permute=permute)
        )

    def metric_fn(self, logits: Tensor, labels: Tensor) -> float:
        return accuracy(logits, labels)

    def score(
        self, model: nn.Module, test: InrDataset, title: str, out: Path | None
    ) -> dict[str, Any]:
        logits, labels = predict(
            model, Items(test.features, test.labels), batch_size=self.eval_batch_size
        )
        logits, labels = logits.float().cpu(), labels.cpu()
        predicted, classes = logits.argmax(dim=1), self.settings["classes"]
        matrix = confusion_matrix(predicted, labels, num_classes=len(classes))
        metrics: dict[str, Any] = {
            "test_accuracy": accuracy(predicted, labels),
            "test_loss": float(F.cross_entropy(logits, labels)),
            "per_class_accuracy": dict(zip(classes, per_class_accuracy(matrix))),
            "confusion_matrix": matrix.tolist(),
            "classes": classes,
            "n_test": len(test),
            "majority_accuracy": float(matrix.sum(dim=1).max()) / len(test),
        }
        if out is not None:
            note = f"test accuracy {metrics['test_accuracy']:.3f}, n = {len(test)}"
            viz.confusion(matrix, classes, out / "confusion.png", title=f"{title}\n{note}")
            rows = [
                (test.metadata[j].get("index", j), y, p)
                for j, (y, p) in enumerate(zip(labels.tolist(), predicted.tolist()))
            ]
            runner.write_csv(["index", "label", "predicted"], rows, out / "predictions.csv")
        return metrics


def _check_labels(data: InrDataset, num_classes: int, where: str) -> None:
    """Refuse labels outside ``0..num_classes - 1``, naming the INR (and its file if known)."""
    bad = ((data.labels < 0) | (data.labels >= num_classes)).nonzero().flatten()
    if len(bad):
        j = int(bad[0])
        row = data.metadata[j]
        origin = f" ({row['path']})" if "path" in row else ""
        raise ValueError(
            f"{where}: INR {row.get('index', j)}{origin} has label {int(data.labels[j])}, outside the classes 0..{num_classes - 1}"
        )


def run_inr_classification(
    config: InrClassifyConfig, *, dataset: InrDataset | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train a classifier on an INR set's train split, select on val accuracy, score on test.

    Resumes when ``config.out`` holds this run; ``dataset`` replaces loading ``config.inrs``.
    Returns ``RUN/metrics.json``: ``test_accuracy``, ``test_loss``, ``per_class_accuracy``
    (``None`` for a class absent from the test split), ``confusion_matrix``, ``classes``,
    ``n_test``, ``majority_accuracy`` (what a constant guess scores), ``model``, ``seed``,
    ``inrs``, ``n_train``, ``n_val``, ``best_epoch``, ``best_val_accuracy``, ``epochs_run``,
    ``stopped_early``, ``train_time_s``.
    """
    if dataset is not None and not isinstance(dataset, InrDataset):
        raise ValueError(
            f"run_inr_classification: dataset must be an InrDataset, got {type(dataset).__name__}"
        )
    return runner.run(InrClassification, config, data=dataset, progress=progress)


def evaluate_inrs(
    run: str | os.PathLike[str],
    inrs: str | os.PathLike[str] | InrDataset,
    *,
    source: str = "auto",
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Score a trained INR classifier on the test split of an INR folder (read with the run's
    ``prefix`` and ``split_points``); writes ``RUN/eval/<folder name>/``. Returns the metrics
    of :func:`run_inr_classification`'s test split with ``run`` and ``out``."""
    overrides = {"source": source, "augment_prefixes": ()}
    return runner.evaluate(
        InrClassification, run, inrs, device=device, overrides=overrides, progress=progress
    )
