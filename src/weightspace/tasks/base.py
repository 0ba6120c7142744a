"""What a task is: its config, its data, its model, its objective, its scoring.

A task module holds only what is its own. It subclasses :class:`TaskConfig` (its data folder,
model and run folder, then its options) and :class:`Task` (loading the data, building the model
from the settings saved in ``RUN/config.json``, the objective, the selection metric and the test
scores with their plots), and adds one entry to :mod:`weightspace.tasks.registry`. The
:mod:`~weightspace.tasks.runner` then trains, resumes, selects, scores and evaluates it, writes
its files on rank 0, and the command line gets ``weightspace train NAME`` and ``weightspace
evaluate --run RUN --DATA DIR`` for it. ``examples/minimal_task.py`` is a whole task in ~100
lines.

The data a task loads is any object with ``.spec`` (a :class:`~weightspace.NetworkSpec`),
``.part(name)`` for ``"train"``, ``"val"`` and ``"test"``, ``.info`` (a dict) and ``len()``, as
:class:`~weightspace.data.container.Zoo` and :class:`~weightspace.data.inr.InrDataset` are.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import Tensor, nn
from torch.utils.data import Dataset

from weightspace.space.features import WeightSpaceFeatures
from weightspace.space.spec import NetworkSpec
from weightspace.train.loop import LR_DECAYS, Objective, TrainConfig

__all__ = [
    "Items",
    "Task",
    "TaskConfig",
    "auto_on_off",
    "auto_or_count",
    "count_or_none",
    "int_tuple",
    "invariant_model",
    "nonnegative_int",
    "on_off",
    "option",
    "positive_float",
    "positive_int",
]


def _int_at_least(text: str, low: int, expected: str) -> int:
    """``text`` as an int >= ``low``, else an ``ArgumentTypeError`` saying ``expected``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an int >= 1."""
    return _int_at_least(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    """argparse type: an int >= 0."""
    return _int_at_least(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def auto_or_count(text: str) -> int | str | None:
    """argparse type: ``"auto"``, or an int >= 0 where 0 means none (``None``)."""
    if text == "auto":
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer >= 0, got {text!r}")
    return int(text) or None


def count_or_none(text: str) -> int | None:
    """argparse type: an int >= 0 where 0 means none (``None``)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return int(text) or None


def int_tuple(text: str) -> tuple[int, ...]:
    """argparse type: comma-separated positive ints (``"64,64,64"``), or ``""`` for none."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def on_off(text: str) -> bool:
    """argparse type: ``"on"`` (True) or ``"off"`` (False)."""
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return text == "on"


def auto_on_off(text: str) -> bool | str:
    """argparse type: ``"auto"``, ``"on"`` (True) or ``"off"`` (False)."""
    if text not in ("auto", "on", "off"):
        raise argparse.ArgumentTypeError(f"expected auto, on or off, got {text!r}")
    return {"auto": "auto", "on": True, "off": False}[text]


def option(default: Any, help: str = "", *, kw_only: Any = dataclasses.MISSING, **cli: Any) -> Any:
    """A config field with a default and, for the command line, a help text and argparse
    options (``type``, ``choices``, ``metavar``); ``kw_only`` as for ``dataclasses.field``."""
    return field(default=default, kw_only=kw_only, metadata={"help": help, **cli})


@dataclass(kw_only=True)
class TaskConfig:
    """The fields every task's config has, after its own positional ``DATA, model, out``.

    Attributes
    ----------
    seed:
        Seeds weight initialisation, training order and augmentation.
    epochs, batch_size, lr, weight_decay, patience, warmup_steps, lr_decay:
        Training (Adam). ``patience`` stops after that many epochs without a better validation
        metric (``None``: never); ``warmup_steps`` ramps the learning rate up linearly over the
        first optimiser steps, and ``lr_decay`` (``"none"`` or ``"cosine"``) shapes it after
        them (:class:`~weightspace.train.TrainConfig`).
    device:
        ``"auto"``, ``"cpu"``, ``"cuda"``, …; may change when a run is resumed.
    train_limit:
        Train on the first ``train_limit`` networks of a random permutation of the train split
        (seeded by ``seed``; ``None``: all), the points of a learning curve. Validation and test
        splits are untouched.
    """

    #: Model names of the task; ``model`` must be one of them.
    models: ClassVar[tuple[str, ...]] = ()
    #: Models that are NFNs: they need at least one ``hidden_channels`` layer.
    nfn_models: ClassVar[tuple[str, ...]] = ()
    #: Fields added after runs were first written: :meth:`settings` holds them only when they
    #: differ from their default, so run folders written before they existed still resume.
    added_fields: ClassVar[tuple[str, ...]] = ("warmup_steps", "train_limit", "lr_decay")

    seed: int = option(0, "seeds initialisation, training order and augmentation", type=int)
    epochs: int = option(10, "passes over the training split", type=positive_int)
    batch_size: int = option(32, "networks per step", type=positive_int)
    lr: float = option(1e-3, "Adam's learning rate", type=positive_float)
    weight_decay: float = option(0.0, "Adam's (L2) weight decay", type=float)
    patience: int | None = option(
        None,
        "stop after this many epochs without a better validation metric (default: never)",
        type=positive_int,
    )
    device: str = option("auto", "auto, cpu, cuda or cuda:N")
    train_limit: int | None = option(
        None,
        "train on this many networks of the train split, a seeded random subset (learning curves)",
        type=positive_int,
    )
    warmup_steps: int = option(
        0, "linear learning-rate warm-up over this many steps", type=nonnegative_int
    )
    lr_decay: str = option(
        "none", "learning-rate schedule after the warm-up: none or cosine", choices=LR_DECAYS
    )

    def __post_init__(self) -> None:
        name = type(self).__name__
        if getattr(self, "model", None) not in self.models:
            raise ValueError(
                f"unknown model {getattr(self, 'model', None)!r}; expected one of {self.models}"
            )
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, os.PathLike):
                setattr(self, f.name, os.fspath(value))
            elif isinstance(value, list):  # tuples after a JSON round trip or from a caller
                setattr(self, f.name, tuple(value))
            if "choices" in f.metadata and value not in f.metadata["choices"]:
                self.refuse(f.name, f"one of {tuple(f.metadata['choices'])}")
        for key in ("hidden_channels", "head_hidden"):
            value = getattr(self, key, ())
            if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in value):
                raise ValueError(f"{name}.{key} must hold positive ints, got {value!r}")
        if self.model in self.nfn_models and not getattr(self, "hidden_channels", (1,)):
            raise ValueError(f"{name}.hidden_channels: an NFN needs at least one layer")
        self.train_config(eval_batch_size=None, progress=False)  # checks the training fields

    def fit_to(self, n_train: int) -> None:
        """Adjust the training fields to the train split's size before training (the runner
        calls it; by default nothing changes)."""

    def refuse(self, name: str, expected: str) -> None:
        """Raise ``ValueError``: ``Config.name must be <expected>, got <value>``."""
        value = getattr(self, name)
        raise ValueError(f"{type(self).__name__}.{name} must be {expected}, got {value!r}")

    def train_config(self, *, eval_batch_size: int | None, progress: bool) -> TrainConfig:
        """The :class:`~weightspace.train.TrainConfig` of this run."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            weight_decay=self.weight_decay,
            seed=self.seed,
            device=self.device,
            patience=self.patience,
            warmup_steps=self.warmup_steps,
            lr_decay=self.lr_decay,
            eval_batch_size=eval_batch_size,
            progress=progress,
        )

    def settings(self) -> dict[str, Any]:
        """The fields a resumed run must share: all but ``out`` and ``device``, and those of
        :attr:`added_fields` that are at their default."""
        skip = {"out", "device"}
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        skip |= {k for k in self.added_fields if getattr(self, k) == defaults[k]}
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in skip}


def invariant_model(
    name: str,
    spec: NetworkSpec,
    hidden_channels: Sequence[int],
    head_hidden: Sequence[int],
    out_features: int,
    *,
    fourier_features: int | None = None,
    fourier_scale: float = 10.0,
    dropout: float = 0.0,
    channel_dropout: float = 0.0,
    pool: str = "mean",
) -> nn.Module:
    """The model a task names, for networks on ``spec``, with ``out_features`` outputs.

    ``"hnp"``: :class:`~weightspace.models.InvariantNFN` with HNP layers and no IO encoding;
    ``"np"``: NP layers with a sinusoidal IO encoding; ``"statnet"``:
    :class:`~weightspace.models.StatNet`; ``"mlp"``: :class:`~weightspace.models.FlatMLP` on the
    flattened weights. ``fourier_features`` (Gaussian Fourier features of each weight),
    ``fourier_scale`` (their frequency scale) and ``channel_dropout`` (:class:`~weightspace.nn.ChannelDropout` after each NF-Layer) are for the
    NFNs only, as is ``pool`` (their invariant read-out, ``InvariantNFN(pool=...)``);
    ``dropout`` is the head's.
    """
    from weightspace.models import FlatMLP, InvariantNFN, StatNet

    hidden, head = tuple(hidden_channels), tuple(head_hidden)
    if name in ("hnp", "np"):
        encoding = "sinusoidal" if name == "np" else None
        return InvariantNFN(
            spec, name, hidden, head, out_features,
            io_encoding=encoding, fourier_features=fourier_features, dropout=dropout,
            fourier_scale=fourier_scale,
            channel_dropout=channel_dropout, pool=pool,
        )  # fmt: skip
    if pool != "mean":
        raise ValueError(f"pool applies to NFNs ('hnp', 'np'), not {name!r}")
    if fourier_features is not None:
        raise ValueError(f"fourier_features applies to NFNs ('hnp', 'np'), not {name!r}")
    if channel_dropout:
        raise ValueError(f"channel_dropout applies to NFNs ('hnp', 'np'), not {name!r}")
    if name == "statnet":
        return StatNet(spec, head_hidden=head, out_features=out_features, dropout=dropout)
    if name == "mlp":
        return FlatMLP(spec, head_hidden=head, out_features=out_features, dropout=dropout)
    raise ValueError(f"unknown model {name!r}; expected one of ('hnp', 'np', 'statnet', 'mlp')")


class Items(Dataset):
    """``(features[i], targets[i])`` items, or ``(features[i], targets[i], extra[i])`` when
    ``extra`` is given (what a training objective needs beside the input, e.g. which symmetry
    a network has). ``features[i]`` keeps a batch axis of 1 for :func:`weightspace.collate`.
    """

    def __init__(self, features: Any, targets: Tensor, extra: Tensor | None = None) -> None:
        self.features, self.targets, self.extra = features, targets, extra

    def __len__(self) -> int:
        # Targets may be weight-space features (a mask per network): count networks, not layers.
        t = self.targets
        return t.batch_size if isinstance(t, WeightSpaceFeatures) else len(t)

    def __getitem__(self, i: int) -> tuple[Any, ...]:
        if self.extra is None:
            return self.features[i], self.targets[i]
        return self.features[i], self.targets[i], self.extra[i]


class Task:
    """One kind of experiment on network weights. Subclasses set the class attributes and
    override the methods marked *task*; :mod:`weightspace.tasks.runner` does the rest.

    An instance holds ``settings``: the task's config fields as saved in ``RUN/config.json``
    under ``"task"`` (with ``"spec"`` and what :meth:`describe` adds), so that evaluating a run
    builds the same model from the file alone.
    """

    #: Name in ``RUN/config.json`` (``"task"``); ``command``: ``weightspace train COMMAND``.
    name: ClassVar[str]
    command: ClassVar[str]
    help: ClassVar[str] = ""
    config_class: ClassVar[type[TaskConfig]]
    #: The config field naming the data folder; also the CLI flag (``--zoo``) and metrics key.
    data_field: ClassVar[str]
    data_help: ClassVar[str] = ""
    #: How messages name the data and its items: "zoo" / "networks".
    noun: ClassVar[str] = "data"
    unit: ClassVar[str] = "networks"
    #: Config fields offered as ``train`` options, in this order (besides DATA, model, out).
    cli_fields: ClassVar[tuple[str, ...]] = ("seed", "epochs", "batch_size", "lr", "patience")
    #: The validation metric (``metrics.json`` reports ``best_val_<metric>``) and its direction.
    metric: ClassVar[str] = "loss"
    higher_is_better: ClassVar[bool] = False
    #: Settings that ``evaluate`` needs from ``config.json`` besides ``model`` and ``spec``.
    required: ClassVar[tuple[str, ...]] = ()
    #: Settings replaced when loading data to evaluate a run on (e.g. ``{"kind": "auto"}``).
    eval_overrides: ClassVar[dict[str, Any]] = {}
    #: Fewest items each split must hold.
    min_split: ClassVar[int] = 1
    eval_batch_size: ClassVar[int] = 64

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings: dict[str, Any] = dict(settings)

    # ------------------------------------------------------------------ data (task)
    def load(self, source: str, *, progress: bool = False) -> Any:
        """*Task*: the data in folder ``source``, read with ``self.settings``."""
        raise NotImplementedError

    def check(self, data: Any, where: str) -> tuple[Any, dict[str, Any]]:
        """*Task*: validate (or clean) loaded data; returns it and entries for ``metrics.json``."""
        return data, {}

    def summary(self, data: Any, where: str, extra: Mapping[str, Any]) -> str | None:
        """A line printed before training, or ``None``."""
        return None

    def split_hint(self, data: Any, extra: Mapping[str, Any]) -> str:
        """Appended to the error for a split with too few items."""
        return ""

    def describe(self, data: Any, where: str) -> dict[str, Any]:
        """Entries of ``config.json``'s ``"task"`` beyond the config and ``spec`` (e.g. the
        classes); may refuse data that cannot be trained on."""
        return {}

    def check_compatible(self, data: Any, where: str, run: Path) -> None:
        """Refuse data the trained model of ``run`` cannot score (beyond another spec)."""

    def items(self, part: Any, *, train: bool) -> Dataset:
        """*Task*: the dataset :func:`~weightspace.train.fit` reads; augmented when ``train``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ model (task)
    def build(self, spec: NetworkSpec) -> nn.Module:
        """*Task*: a fresh model for networks on ``spec``, from ``self.settings``."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, train: Any) -> None:
        """Set data-dependent state of a fresh model (e.g. input statistics) from the train split."""

    def objective(self) -> Objective:
        """*Task*: what :func:`~weightspace.train.fit` minimises."""
        raise NotImplementedError

    def metric_fn(self, outputs: Any, targets: Any) -> float:
        """The validation metric on the collated outputs of the whole validation split."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring (task)
    def score(self, model: nn.Module, test: Any, title: str, out: Path | None) -> dict[str, Any]:
        """*Task*: test metrics of ``model``; writes its plots and predictions into ``out``
        (``None``: write nothing, as on ranks other than 0)."""
        raise NotImplementedError
