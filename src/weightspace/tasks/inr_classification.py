"""Classifying INRs: tell which class an image belongs to from its SIREN's weights (paper §4).

Each image is a SIREN (:mod:`weightspace.data.inr`); the classifier never sees a pixel, only the
weights. Four classifiers are compared, as in the paper:

- ``"np"``: an NFN of NP layers with a sinusoidal IO encoding (optionally Gaussian Fourier input
  features), an NP pool and an MLP head: invariant to hidden-neuron permutations (HNP);
- ``"hnp"``: the same with HNP layers and an HNP pool;
- ``"mlp"``: an MLP on the flattened weights (no symmetry);
- ``"mlp-aug"``: that MLP trained on randomly permuted SIRENs: every training example gets a fresh
  random HNP permutation at every step (the same function, other weights).

Every classifier first standardises each weight and bias tensor by one scalar mean and standard
deviation measured on the training split (SIREN layers differ in scale by an order of magnitude);
a scalar per tensor commutes with every permutation, so the symmetry is untouched. Training uses
cross-entropy and keeps the model with the best validation accuracy::

    RUN/config.json       TrainConfig + this task's config, the weight space and the classes
    RUN/metrics.jsonl     per epoch: train loss, validation loss and accuracy
    RUN/checkpoint.pt     resumable state;  RUN/best.pt: the selected model
    RUN/metrics.json      test_accuracy, per_class_accuracy, confusion_matrix, n_test, model, …
    RUN/confusion.png     the test confusion matrix with class names
    RUN/predictions.csv   one row per test INR: index, label, predicted

:func:`evaluate_inrs` rebuilds a classifier from ``config.json`` and ``best.pt`` and scores it on
the test split of another INR folder of the same weight space.

CPU defaults and the paper's configuration
------------------------------------------
:class:`InrClassifyConfig`'s defaults are sized for a laptop CPU: 3 NF-Layers of 32 channels, a
head of 256 units with dropout 0.2, batch 32, 30 epochs (timings in its docstring).
:data:`PAPER_CONFIG` holds the paper's model (3 × 512 channels, head 1000, dropout 0.5, 200k
steps) for a GPU; :func:`paper_config` turns it into a config.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from weightspace import symmetry, viz
from weightspace.data.inr import INR_FILE, InrDataset, load_inrs
from weightspace.data.siren_format import PAPER_PREFIX, PAPER_SPLIT_POINTS, load_siren_folder
from weightspace.io import atomic_path, write_json
from weightspace.models import FlatMLP, InvariantNFN
from weightspace.space.features import WeightSpaceFeatures, check_features
from weightspace.space.spec import NetworkSpec
from weightspace.tasks.metrics import accuracy, confusion_matrix
from weightspace.train import distributed
from weightspace.train.loop import (
    BEST_FILE,
    CONFIG_FILE,
    TrainConfig,
    fit,
    load_checkpoint,
    predict,
    resolve_device,
    seed_everything,
)

__all__ = [
    "MODELS",
    "NFN_FOURIER_FEATURES",
    "PAPER_CONFIG",
    "SOURCES",
    "InrClassifier",
    "InrClassifyConfig",
    "InrItems",
    "build_classifier",
    "detect_inr_source",
    "evaluate_inrs",
    "load_any_inrs",
    "paper_config",
    "read_task",
    "run_inr_classification",
    "save_confusion",
]

TASK = "inr-classification"
#: Classifier names (see the module docstring).
MODELS: tuple[str, ...] = ("np", "hnp", "mlp", "mlp-aug")
#: INR folder formats: written by :func:`~weightspace.data.inr.fit_inrs`, or the NFN paper's
#: released ``{prefix}_{label}s/net{i}.pth`` folders; ``"auto"`` tells them apart.
SOURCES: tuple[str, ...] = ("auto", "weightspace", "siren-folder")
METRICS_JSON = "metrics.json"
CONFUSION_PNG = "confusion.png"
PREDICTIONS_CSV = "predictions.csv"
_EVAL_BATCH = 256
#: Gaussian Fourier features the NFN classifiers use by default (``fourier_features="auto"``).
NFN_FOURIER_FEATURES = 64

#: The paper's INR classifier (§4), for a GPU: 3 NP layers of 512 channels with a sinusoidal IO
#: encoding (what ``model="np"`` uses), an MLP head of 1000 units with dropout 0.5, 200k Adam
#: steps at lr 1e-3. The paper trains on 45k SIRENs plus 10 extra fits per training image (20 for
#: CIFAR-10). ``batch_size`` is not given in PAPER.md; 32 is this package's assumption.
PAPER_CONFIG: dict[str, Any] = {
    "model": "np",
    "hidden_channels": (512, 512, 512),
    "head_hidden": (1000,),
    "dropout": 0.5,
    "io_encoding": "sinusoidal",
    "steps": 200_000,
    "lr": 1e-3,
    "batch_size": 32,
}


# ------------------------------------------------------------------ config
@dataclass
class InrClassifyConfig:
    """One INR-classification run.

    Attributes
    ----------
    inrs:
        Folder of the INRs (see :func:`load_any_inrs`).
    model:
        One of :data:`MODELS`.
    out:
        Run folder (resumed if it holds this run).
    seed:
        Seeds weight initialisation, training order and the augmentation permutations.
    epochs, batch_size, lr, weight_decay, patience:
        Training (Adam). ``patience`` stops after that many epochs without a better validation
        accuracy. Defaults: 30 epochs of batch 32 at lr 1e-3, no early stopping.
    hidden_channels:
        NF-Layer channels (NFNs only). Default 3 layers of 32: an epoch over 200 MNIST SIRENs
        (180 train, 10 validation) then takes ~0.45 s on one CPU thread for ``"np"`` (64
        channels: ~1.0 s; ``"hnp"`` ~0.35 s, the MLPs ~0.05 s), so the 30 default epochs over the
        ~3600 training SIRENs of the bundled MNIST take about 4 minutes.
    head_hidden:
        Hidden widths of the MLP head (every model). Default ``(256,)``.
    dropout:
        Dropout in the head. Default 0.2 (the paper's 0.5 is for its 1000-unit head).
    fourier_features:
        Mapping size of Gaussian Fourier features applied to every weight first (NFNs only);
        ``None`` for none. ``"auto"`` (default): :data:`NFN_FOURIER_FEATURES` for the NFNs,
        none for the MLPs. On the bundled MNIST SIRENs an NFN without them does not leave
        chance level in 6 epochs (train loss stays at ln 10); with them it learns at once.
    normalize:
        Standardise each weight/bias tensor by its training-split mean and standard deviation.
    sign_flips:
        Augment training examples with random hidden-neuron sign flips (see
        :class:`InrClassifier`); exact for SIRENs, whose sine is odd. ``"auto"`` (default): on
        for the NFNs, off for the MLP baselines (as the paper trains them).
    source:
        One of :data:`SOURCES`.
    prefix, split_points, augment_prefixes:
        For ``"siren-folder"`` only (see :func:`load_any_inrs`): which folders hold the INRs,
        ``(val_start, test_start)`` INR indices (the release's by default), and extra prefixes
        (e.g. ``"randinit_smaller_aug0"``) whose training-split INRs join the training set.
    device:
        ``"auto"``, ``"cpu"``, ``"cuda"``, …
    """

    inrs: str
    model: str
    out: str
    seed: int = 0
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    hidden_channels: tuple[int, ...] = (32, 32, 32)
    head_hidden: tuple[int, ...] = (256,)
    dropout: float = 0.2
    fourier_features: int | str | None = "auto"
    weight_decay: float = 0.0
    patience: int | None = None
    normalize: bool = True
    sign_flips: bool | str = "auto"
    source: str = "auto"
    prefix: str | None = None
    split_points: tuple[int, int] | None = PAPER_SPLIT_POINTS
    augment_prefixes: tuple[str, ...] = ()
    device: str = "auto"

    def __post_init__(self) -> None:
        _check_model(self.model)
        if self.source not in SOURCES:
            raise ValueError(
                f"InrClassifyConfig.source must be one of {SOURCES}, got {self.source!r}"
            )
        self.inrs, self.out = os.fspath(self.inrs), os.fspath(self.out)
        self.hidden_channels = tuple(self.hidden_channels)
        self.head_hidden = tuple(self.head_hidden)
        self.augment_prefixes = tuple(self.augment_prefixes)
        if self.split_points is not None:
            self.split_points = tuple(self.split_points)  # type: ignore[assignment]
        for name in ("hidden_channels", "head_hidden"):
            value = getattr(self, name)
            if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in value):
                raise ValueError(f"InrClassifyConfig.{name} must hold positive ints, got {value!r}")
        if not self.hidden_channels and self.model in ("np", "hnp"):
            raise ValueError("InrClassifyConfig.hidden_channels: an NFN needs at least one layer")
        if not (isinstance(self.dropout, int | float) and 0 <= self.dropout < 1):
            raise ValueError(f"InrClassifyConfig.dropout must be in [0, 1), got {self.dropout!r}")
        nfn = self.model in ("np", "hnp")
        if self.fourier_features == "auto":
            self.fourier_features = NFN_FOURIER_FEATURES if nfn else None
        if self.sign_flips == "auto":
            self.sign_flips = nfn
        if not isinstance(self.sign_flips, bool):
            raise ValueError(
                f"InrClassifyConfig.sign_flips must be True, False or 'auto', got {self.sign_flips!r}"
            )
        if self.fourier_features is not None:
            ff = self.fourier_features
            if isinstance(ff, bool) or not isinstance(ff, int) or ff < 1:
                raise ValueError(
                    "InrClassifyConfig.fourier_features must be a positive int, None or 'auto', "
                    f"got {ff!r}"
                )
            if self.model not in ("np", "hnp"):
                raise ValueError(
                    f"InrClassifyConfig.fourier_features applies to the NFN models ('np', 'hnp'), "
                    f"not {self.model!r}"
                )


def paper_config(
    inrs: str, out: str, *, num_train: int, model: str = "np", **overrides: Any
) -> InrClassifyConfig:
    """:data:`PAPER_CONFIG` as a config: its 200k steps become ``ceil(steps · batch / num_train)``
    epochs of ``num_train`` training INRs (45k images × 11 fits for the paper's MNIST).

    ``overrides`` replace any field (e.g. ``device="cuda"``, ``patience=20``).
    """
    if isinstance(num_train, bool) or not isinstance(num_train, int) or num_train < 1:
        raise ValueError(f"paper_config: num_train must be a positive int, got {num_train!r}")
    batch = int(overrides.get("batch_size", PAPER_CONFIG["batch_size"]))
    options = {
        "hidden_channels": PAPER_CONFIG["hidden_channels"],
        "head_hidden": PAPER_CONFIG["head_hidden"],
        "dropout": PAPER_CONFIG["dropout"],
        "lr": PAPER_CONFIG["lr"],
        "batch_size": batch,
        "epochs": math.ceil(PAPER_CONFIG["steps"] * batch / num_train),
        **overrides,
    }
    return InrClassifyConfig(inrs=inrs, model=model, out=out, **options)


def _check_model(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {MODELS}")
    return model


# ------------------------------------------------------------------ data
class InrItems(Dataset):
    """``(features[i], label[i])`` items of an :class:`InrDataset`, for a DataLoader.

    ``features[i]`` keeps a batch axis of 1; :func:`weightspace.collate` concatenates them.
    """

    def __init__(self, dataset: InrDataset) -> None:
        self.features: WeightSpaceFeatures = dataset.features
        self.labels: Tensor = dataset.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[WeightSpaceFeatures, Tensor]:
        return self.features[i], self.labels[i]


def detect_inr_source(path: str | os.PathLike[str]) -> str:
    """``"weightspace"`` (an ``inrs.json`` is present) or ``"siren-folder"`` (``*/net*.pth``).

    Raises ``ValueError`` when the folder is missing or holds neither.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"INR folder {str(path)!r} does not exist")
    if not path.is_dir():
        raise ValueError(f"INR folder {str(path)!r} is not a folder")
    if (path / INR_FILE).exists():
        return "weightspace"
    if any(path.glob("*/*.pth")):
        return "siren-folder"
    raise ValueError(
        f"{str(path)!r} is not an INR folder: expected {INR_FILE} (written by `weightspace inr "
        "fit`) or label folders of SIREN state dicts ({prefix}_{label}s/net{i}.pth, the NFN "
        "paper's release)"
    )


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

    Parameters
    ----------
    path:
        The folder.
    source:
        One of :data:`SOURCES`; ``"auto"`` uses :func:`detect_inr_source`.
    prefix:
        SIREN folders: which ``{prefix}_{label}s`` folders to read; ``None`` takes the release's
        originals (``randinit_smaller``) when present, else the only prefix.
    split_points:
        SIREN folders: ``(val_start, test_start)``; see
        :func:`~weightspace.data.siren_format.load_siren_folder`.
    augment_prefixes:
        SIREN folders: prefixes of extra fits of the same images; their training-split INRs are
        appended (as ``"train"``), the rest are dropped so no test image leaks into training.
    progress:
        Show a progress bar over files.

    Returns
    -------
    InrDataset
        Any dense weight space shared by every file (SIREN folders), :data:`SIREN_SPEC` for
        ``fit_inrs`` folders; ``info["source"]`` says which.

    Raises
    ------
    ValueError
        Naming the folder or file: see :func:`load_inrs` and
        :func:`~weightspace.data.siren_format.load_siren_folder` (wrong architecture, missing or
        out-of-range labels, NaN weights, …).
    """
    if source not in SOURCES:
        raise ValueError(f"INR source must be one of {SOURCES}, got {source!r}")
    if source == "auto":
        source = detect_inr_source(path)
    elif not Path(path).is_dir():
        raise ValueError(f"INR folder {str(path)!r} does not exist")
    if source == "weightspace":
        if augment_prefixes:
            raise ValueError(
                "augment_prefixes are for SIREN release folders; a fit_inrs folder stores its "
                "augmentation copies itself (InrConfig.augment)"
            )
        return load_inrs(path)
    root = Path(path)
    if prefix is None and _has_prefix(root, PAPER_PREFIX):
        prefix = PAPER_PREFIX
    data = load_siren_folder(
        root, prefix=prefix, split_points=split_points, spec=None, progress=progress
    )
    for extra in augment_prefixes:
        copies = load_siren_folder(
            root, prefix=extra, split_points=split_points, spec=data.spec, progress=progress
        ).part("train")
        data = _concat(data, copies)
    return data


def _has_prefix(root: Path, prefix: str) -> bool:
    pattern = re.compile(rf"^{re.escape(prefix)}_\d+s$")
    return any(p.is_dir() and pattern.match(p.name) for p in root.iterdir())


def _concat(a: InrDataset, b: InrDataset) -> InrDataset:
    return InrDataset(
        a.spec,
        WeightSpaceFeatures.cat([a.features, b.features]),
        torch.cat([a.labels, b.labels]),
        torch.cat([a.split, b.split]),
        [*a.metadata, *b.metadata],
        {**a.info, "num_inrs": len(a) + len(b)},
    )


def _class_names(dataset: InrDataset, num_classes: int) -> list[str]:
    names = [str(c) for c in dataset.info.get("classes") or []]
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def _label_of(dataset: InrDataset, where: str) -> str:
    return str(dataset.info.get("root") or where)


def _check_labels(dataset: InrDataset, num_classes: int, where: str) -> None:
    """Refuse labels outside ``0..num_classes - 1``, naming the INR (and its file if known)."""
    bad = ((dataset.labels < 0) | (dataset.labels >= num_classes)).nonzero().flatten()
    if len(bad):
        j = int(bad[0])
        row = dataset.metadata[j]
        origin = f" ({row['path']})" if "path" in row else ""
        raise ValueError(
            f"{where}: INR {row.get('index', j)}{origin} has label {int(dataset.labels[j])}, "
            f"outside the classes 0..{num_classes - 1}"
        )


# ------------------------------------------------------------------ classifiers
class InrClassifier(nn.Module):
    """Per-tensor standardisation → [random HNP permutation, training only] → a classifier.

    Parameters
    ----------
    net:
        The classifier on standardised weights (an :class:`InvariantNFN` or :class:`FlatMLP`).
    spec:
        The weight space.
    augment:
        In training mode, permute each example's hidden neurons by a fresh uniformly random
        element of the HNP group (:func:`weightspace.symmetry.sample` with one element per
        network, drawn from torch's global generator, which :func:`fit` seeds and checkpoints).
        The permuted SIREN computes the same image. Evaluation never permutes.
    sign_flips:
        In training mode, negate each hidden neuron of each example with probability 1/2
        (:func:`weightspace.symmetry.flip_signs`; sine is odd, so the SIREN computes the same
        image). The NFNs are built for permutations only, so this is a free augmentation.

    Attributes
    ----------
    shift, scale:
        ``(2L,)`` buffers, one per tensor in ``spec.tensors`` order (W_1..W_L, b_1..b_L): the
        input tensor t becomes ``(t - shift) / scale``. Identity until :meth:`set_statistics`.
        A scalar per tensor commutes with every neuron permutation.

    Shapes
    ------
    - input: :class:`WeightSpaceFeatures` on ``spec`` with 1 channel
    - output: ``(B, num_classes)`` logits
    """

    def __init__(
        self, net: nn.Module, spec: NetworkSpec, *, augment: bool = False, sign_flips: bool = False
    ) -> None:
        super().__init__()
        self.net, self.spec, self.augment = net, spec, bool(augment)
        self.sign_flips = bool(sign_flips)
        n = len(spec.tensors)
        self.register_buffer("shift", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))

    @torch.no_grad()
    def set_statistics(self, features: WeightSpaceFeatures) -> None:
        """Set ``shift`` and ``scale`` to each tensor's mean and standard deviation over all
        networks and entries of ``features`` (computed in float64; a constant tensor keeps
        scale 1)."""
        check_features(features, self.spec, 1, "InrClassifier.set_statistics")
        stats = [torch.std_mean(t.double(), correction=0) for t in features.tensors]
        std = torch.stack([s for s, _ in stats])
        mean = torch.stack([m for _, m in stats])
        self.shift.copy_(mean)
        self.scale.copy_(torch.where(std > 1e-12, std, torch.ones_like(std)))

    def permute_randomly(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """``x`` with each network's hidden neurons permuted by its own random HNP element."""
        perms = symmetry.sample(self.spec, "hnp", batch_size=x.batch_size, device=x.device)
        return x.permute(perms)

    def standardize(self, x: WeightSpaceFeatures) -> WeightSpaceFeatures:
        """Apply ``(t - shift) / scale`` to each tensor."""
        L = self.spec.num_layers
        shift, scale = self.shift.to(x.dtype), self.scale.to(x.dtype)
        weights = [(w - shift[i]) / scale[i] for i, w in enumerate(x.weights)]
        biases = [(b - shift[L + i]) / scale[L + i] for i, b in enumerate(x.biases)]
        return WeightSpaceFeatures(weights, biases)

    def forward(self, x: WeightSpaceFeatures) -> Tensor:
        check_features(x, self.spec, 1, type(self).__name__)
        if self.sign_flips and self.training:
            x = symmetry.flip_signs(
                x, symmetry.sample_signs(self.spec, x.batch_size, device=x.device)
            )
        if self.augment and self.training:
            x = self.permute_randomly(x)
        return self.net(self.standardize(x))

    def extra_repr(self) -> str:
        return f"spec={self.spec}, augment={self.augment}, sign_flips={self.sign_flips}"


def build_classifier(
    model: str,
    spec: NetworkSpec,
    num_classes: int,
    *,
    hidden_channels: Sequence[int] = (32, 32, 32),
    head_hidden: Sequence[int] = (256,),
    dropout: float = 0.2,
    fourier_features: int | None = None,
    sign_flips: bool = False,
) -> InrClassifier:
    """The classifier named ``model`` (:data:`MODELS`) for INRs on ``spec``, with
    ``num_classes`` logits, wrapped in an :class:`InrClassifier` (statistics still identity).

    ``"np"``: :class:`InvariantNFN` with NP layers and a sinusoidal IO encoding; ``"hnp"``: HNP
    layers, no IO encoding; ``"mlp"``: :class:`FlatMLP`; ``"mlp-aug"``: :class:`FlatMLP` trained
    on randomly HNP-permuted inputs.
    """
    _check_model(model)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"build_classifier: need at least 2 classes, got {num_classes!r}")
    net: nn.Module
    if model in ("np", "hnp"):
        net = InvariantNFN(
            spec,
            model,
            tuple(hidden_channels),
            tuple(head_hidden),
            num_classes,
            io_encoding="sinusoidal" if model == "np" else None,
            fourier_features=fourier_features,
            dropout=dropout,
        )
    else:
        if fourier_features is not None:
            raise ValueError(f"build_classifier: fourier_features applies to NFNs, not {model!r}")
        net = FlatMLP(
            spec, head_hidden=tuple(head_hidden), out_features=num_classes, dropout=dropout
        )
    return InrClassifier(net, spec, augment=model == "mlp-aug", sign_flips=sign_flips)


def _cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    return F.cross_entropy(logits, labels.long())


def _accuracy_metric(logits: Tensor, labels: Tensor) -> float:
    return accuracy(logits, labels)


def _spec_to_dict(spec: NetworkSpec) -> dict[str, Any]:
    return {"widths": list(spec.widths), "kernel_shapes": [list(k) for k in spec.kernel_shapes]}


def _spec_from_dict(d: Any, where: str) -> NetworkSpec:
    try:
        return NetworkSpec(tuple(d["widths"]), tuple(tuple(k) for k in d["kernel_shapes"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{where}: 'task.spec' is not a NetworkSpec ({err})") from None


def _task_config(
    config: InrClassifyConfig, spec: NetworkSpec, classes: list[str]
) -> dict[str, Any]:
    # out and device may change between a run and its resumption; everything else may not.
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "device")}
    return {
        "task": TASK,
        **fields,
        "spec": _spec_to_dict(spec),
        "num_classes": len(classes),
        "classes": classes,
    }


# ------------------------------------------------------------------ scoring
def _score(
    model: nn.Module,
    test: InrDataset,
    classes: list[str],
    run: Path,
    device: torch.device,
    title: str,
    write: bool = True,
) -> dict[str, Any]:
    """Test metrics of ``model``; writes the confusion plot and the predictions (if ``write``)."""
    logits, labels = predict(model, InrItems(test), batch_size=_EVAL_BATCH, device=device)
    logits, labels = logits.float().cpu(), labels.cpu()
    predicted = logits.argmax(dim=1)
    k = len(classes)
    matrix = confusion_matrix(predicted, labels, num_classes=k)
    support = matrix.sum(dim=1)
    per_class = {
        name: (float(matrix[i, i] / support[i]) if support[i] else None)
        for i, name in enumerate(classes)
    }
    majority = float(support.max()) / float(support.sum())
    metrics: dict[str, Any] = {
        "test_accuracy": accuracy(predicted, labels),
        "test_loss": float(F.cross_entropy(logits, labels)),
        "per_class_accuracy": per_class,
        "confusion_matrix": matrix.tolist(),
        "classes": classes,
        "n_test": len(test),
        "majority_accuracy": majority,
    }
    if not write:
        return metrics
    save_confusion(
        matrix,
        classes,
        run / CONFUSION_PNG,
        title=f"{title}\ntest accuracy {metrics['test_accuracy']:.3f}, n = {len(test)}",
    )
    with atomic_path(run / PREDICTIONS_CSV) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "predicted"])
        for j, (y, p) in enumerate(zip(labels.tolist(), predicted.tolist())):
            writer.writerow([test.metadata[j].get("index", j), y, p])
    return metrics


def save_confusion(
    matrix: Tensor, classes: Sequence[str], path: str | os.PathLike[str], *, title: str = ""
) -> None:
    """Plot a confusion matrix (rows: true class, columns: predicted) to a PNG, atomically."""
    viz.confusion(matrix, classes, path, title=title)


# ------------------------------------------------------------------ runs
def run_inr_classification(
    config: InrClassifyConfig, *, dataset: InrDataset | None = None, progress: bool = True
) -> dict[str, Any]:
    """Train a classifier on an INR set's train split, select on val accuracy, score on test.

    Resumes when ``config.out`` already holds this run (a finished run is only re-scored).

    Parameters
    ----------
    config:
        The run.
    dataset:
        In-memory INRs to use instead of loading ``config.inrs`` (which then only labels the run).
    progress:
        Show progress bars.

    Returns
    -------
    The contents of ``RUN/metrics.json``: ``test_accuracy``, ``test_loss``,
    ``per_class_accuracy`` (class name → accuracy, ``None`` for a class absent from the test
    split), ``confusion_matrix``, ``classes``, ``n_test``, ``majority_accuracy`` (the share of
    the test split's largest class: what a constant guess scores), ``model``, ``seed``, ``inrs``,
    ``n_train``, ``n_val``, ``best_epoch``, ``best_val_accuracy``, ``epochs_run``,
    ``stopped_early``, ``train_time_s``.

    Raises
    ------
    ValueError
        Unknown model; a missing folder or not an INR folder; SIREN files of another or mixed
        architectures, missing or out-of-range labels, NaN/Inf weights (from the loaders, naming
        the file); a split without INRs; fewer than 2 classes; a run folder that holds another
        config (e.g. a classifier of another weight space).
    """
    _check_model(config.model)
    out = Path(config.out)
    if dataset is None:
        dataset = load_any_inrs(
            config.inrs,
            source=config.source,
            prefix=config.prefix,
            split_points=config.split_points,
            augment_prefixes=config.augment_prefixes,
            progress=progress,
        )
    elif not isinstance(dataset, InrDataset):
        raise ValueError(
            f"run_inr_classification: dataset must be an InrDataset, got {type(dataset).__name__}"
        )
    where = _label_of(dataset, config.inrs)
    num_classes = dataset.num_classes
    if num_classes < 2:
        raise ValueError(f"INRs {where!r} hold {num_classes} class(es); need at least 2")
    _check_labels(dataset, num_classes, where)
    parts = {name: dataset.part(name) for name in ("train", "val", "test")}
    for name, part in parts.items():
        if len(part) == 0:
            hint = (
                " (set split_points for a SIREN folder)"
                if dataset.info.get("source") == "nfn-siren-folder"
                else ""
            )
            raise ValueError(f"INRs {where!r}: the {name} split holds no INRs{hint}")
    classes = _class_names(dataset, num_classes)
    seed_everything(config.seed)
    model = build_classifier(
        config.model,
        dataset.spec,
        num_classes,
        hidden_channels=config.hidden_channels,
        head_hidden=config.head_hidden,
        dropout=config.dropout,
        fourier_features=config.fourier_features,
        sign_flips=config.sign_flips,
    )
    if config.normalize:
        model.set_statistics(parts["train"].features)
    train_config = TrainConfig(
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        weight_decay=config.weight_decay,
        seed=config.seed,
        device=config.device,
        patience=config.patience,
        eval_batch_size=_EVAL_BATCH,
        progress=progress,
    )
    result = fit(
        model,
        InrItems(parts["train"]),
        InrItems(parts["val"]),
        loss_fn=_cross_entropy,
        metric_fn=_accuracy_metric,
        config=train_config,
        run_dir=out,
        task_config=_task_config(config, dataset.spec, classes),
    )
    device = resolve_device(config.device)
    # Under torchrun every process scores (cheap); only rank 0 writes.
    main = distributed.get_rank() == 0
    title = f"{config.model} on {where}"
    metrics = _score(model, parts["test"], classes, out, device, title, write=main)
    metrics.update(
        model=config.model,
        seed=config.seed,
        inrs=config.inrs,
        n_train=len(parts["train"]),
        n_val=len(parts["val"]),
        best_epoch=result.best_epoch,
        best_val_accuracy=result.best_metric,
        epochs_run=result.epochs_run,
        stopped_early=result.stopped_early,
        train_time_s=sum(h["time"] for h in result.history),
    )
    if main:
        write_json(metrics, out / METRICS_JSON)
    return metrics


def read_task(run: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``"task"`` object of ``RUN/config.json``, or ``None`` if there is no such file.

    Raises ``ValueError`` for a file that is not valid JSON.
    """
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    task = saved.get("task") if isinstance(saved, dict) else None
    return task if isinstance(task, dict) else {}


def _read_run(run: Path) -> dict[str, Any]:
    task = read_task(run)
    path = run / CONFIG_FILE
    if task is None:
        raise ValueError(f"{str(run)!r} is not a training run: {CONFIG_FILE} is missing")
    if task.get("task") != TASK:
        raise ValueError(f"{path}: expected an {TASK!r} run, found task {task.get('task')!r}")
    for key in ("model", "hidden_channels", "head_hidden", "spec", "num_classes", "classes"):
        if key not in task:
            raise ValueError(f"{path}: 'task' lacks {key!r}")
    return task


def evaluate_inrs(
    run: str | os.PathLike[str],
    inrs: str | os.PathLike[str] | InrDataset,
    *,
    source: str = "auto",
    device: str = "auto",
    progress: bool = False,
) -> dict[str, Any]:
    """Score a trained INR classifier on the test split of an INR folder; writes
    ``RUN/metrics.json``, ``RUN/confusion.png`` and ``RUN/predictions.csv``.

    Parameters
    ----------
    run:
        A run folder of :func:`run_inr_classification` (``config.json`` and ``best.pt``).
    inrs:
        An INR folder (or an in-memory :class:`InrDataset`) on the classifier's weight space. A
        SIREN folder is read with the run's ``prefix`` and ``split_points``.
    source:
        As in :func:`load_any_inrs`.
    device:
        Where to run the classifier.
    progress:
        Show a progress bar while reading a SIREN folder.

    Returns
    -------
    ``test_accuracy``, ``test_loss``, ``per_class_accuracy``, ``confusion_matrix``, ``classes``,
    ``n_test``, ``majority_accuracy``, ``model``, ``seed``, ``inrs``, ``run``.

    Raises
    ------
    ValueError
        The run folder is not an INR-classification run, ``best.pt`` is missing or unreadable,
        the INRs cannot be loaded (see :func:`load_any_inrs`), lie on another weight space than
        the classifier's (both are named), carry other class names, have labels outside the
        classifier's classes, or have no test split.
    """
    run = Path(run)
    task = _read_run(run)
    where_run = str(run / CONFIG_FILE)
    spec = _spec_from_dict(task["spec"], where_run)
    classes = [str(c) for c in task["classes"]]
    model = build_classifier(
        _check_model(task["model"]),
        spec,
        int(task["num_classes"]),
        hidden_channels=tuple(task["hidden_channels"]),
        head_hidden=tuple(task["head_hidden"]),
        dropout=float(task.get("dropout", 0.0)),
        fourier_features=task.get("fourier_features"),
    )
    state = load_checkpoint(run / BEST_FILE)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise ValueError(
            f"{run / BEST_FILE}: does not fit the {task['model']!r} classifier of {where_run} "
            f"({str(err).splitlines()[0]})"
        ) from None
    if isinstance(inrs, InrDataset):
        dataset, label = inrs, _label_of(inrs, "<in-memory INRs>")
    else:
        label = os.fspath(inrs)
        split_points = task.get("split_points")
        dataset = load_any_inrs(
            inrs,
            source=source,
            prefix=task.get("prefix"),
            split_points=None if split_points is None else tuple(split_points),
            progress=progress,
        )
    if dataset.spec != spec:
        raise ValueError(
            f"INRs {label!r} are networks on {dataset.spec}, but the classifier in {str(run)!r} "
            f"was trained on {spec}"
        )
    known = dataset.info.get("classes")
    if known and [str(c) for c in known] != classes:
        raise ValueError(
            f"INRs {label!r} have classes {list(known)}, but the classifier in {str(run)!r} was "
            f"trained on classes {classes}"
        )
    _check_labels(dataset, len(classes), label)
    test = dataset.part("test")
    if len(test) == 0:
        raise ValueError(f"INRs {label!r}: the test split holds no INRs")
    metrics = _score(
        model, test, classes, run, resolve_device(device), f"{task['model']} on {label}"
    )
    metrics.update(model=task["model"], seed=task.get("seed"), inrs=label, run=str(run))
    write_json(metrics, run / METRICS_JSON)
    return metrics
