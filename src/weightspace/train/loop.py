"""One training loop for every task: any objective, any optimiser, checkpoints, resume, DDP.

:func:`fit` minimises an *objective* ``objective(model, batch, epoch) -> (loss, logs)`` over a
dataset and keeps everything it needs to continue in a run folder::

    run_dir/config.json      the TrainConfig and the task's own config; a rerun must match it
    run_dir/metrics.jsonl    one JSON line per epoch: epoch, train_loss, val_loss, val_metric,
                             best_metric, time, lr, and the objective's logs averaged over the
                             epoch
    run_dir/checkpoint.pt    after every epoch: model, optimizer, epoch, best metric, RNG states,
                             bad-epochs counter, history (written atomically)
    run_dir/best.pt          the model state with the best validation metric so far

The objective sees the collated batch (on the device) and the 1-based epoch, so a loss may change
with the epoch (a KL weight that warms up, a curriculum). ``TrainConfig.warmup_steps`` ramps every
parameter group's learning rate up linearly over the first optimiser steps; the step count is
derived from the epoch and the batch index, so a resumed run continues the ramp exactly. ``loss_fn(outputs, targets)`` is the
shorthand for the common case of ``(input, target)`` items (:class:`Supervised`). Validation
predictions are collated whatever the model returns (tensors, :class:`WeightSpaceFeatures`,
tuples and dicts of them, see :func:`collate_outputs`) and scored by ``metric_fn``.

Calling :func:`fit` again on the same folder continues from ``checkpoint.pt``; an interrupted run
resumed this way ends with the same weights as one that ran through. Every file is written
through :func:`weightspace.io.atomic_path`, so a run killed at any moment leaves readable files.
Checkpoints hold only tensors, numbers, strings and containers of them, and are read back with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import random
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from weightspace.io import clean_temp_files, jsonable, save_torch, write_json, write_lines
from weightspace.space.features import WeightSpaceFeatures, collate
from weightspace.train import distributed

__all__ = [
    "LR_DECAYS",
    "FitResult",
    "Objective",
    "Supervised",
    "TrainConfig",
    "collate_outputs",
    "fit",
    "load_checkpoint",
    "lr_scale",
    "predict",
    "resolve_device",
    "seed_everything",
    "split_batch",
    "to_device",
]

#: TrainConfig fields that may change between a run and its resumption: they change where and
#: how fast the run goes, not what it computes.
RUNTIME_FIELDS: tuple[str, ...] = ("device", "num_workers", "eval_batch_size", "progress")
#: TrainConfig fields added after runs were first written: config.json holds them only when they
#: differ from their default, so a run folder written before they existed resumes, and a run at
#: the default writes the same config.json as before.
ADDED_FIELDS: tuple[str, ...] = ("warmup_steps", "lr_decay")
#: Learning-rate schedules after the warm-up (:attr:`TrainConfig.lr_decay`).
LR_DECAYS: tuple[str, ...] = ("none", "cosine")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
_CHECKPOINT_FORMAT = 1
#: Columns of metrics.jsonl that the loop writes; an objective's logs may not reuse them.
_RESERVED_LOGS = ("epoch", "train_loss", "val_loss", "val_metric", "best_metric", "time", "lr")

#: ``objective(model, batch, epoch) -> (loss, logs)``: a scalar loss to minimise for one collated
#: batch at a 1-based epoch, and a dict of floats to average over the epoch into metrics.jsonl.
Objective = Callable[[nn.Module, Any, int], tuple[Tensor, Mapping[str, float]]]
#: ``loss_fn(outputs, targets) -> scalar tensor``, averaged over the batch.
LossFn = Callable[[Any, Any], Tensor]
#: ``metric_fn(outputs, targets) -> float`` on the collated outputs of the whole validation set.
MetricFn = Callable[[Any, Any], float | Tensor]
#: ``optimizer(parameters) -> torch.optim.Optimizer``, e.g. ``lambda p: torch.optim.SGD(p, 0.1)``.
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


@dataclass
class TrainConfig:
    """How :func:`fit` trains.

    Attributes
    ----------
    epochs:
        Passes over the training set.
    batch_size:
        Examples per optimisation step, per process under DDP.
    lr, weight_decay:
        Learning rate and (L2) weight decay of the default optimiser (Adam); a task that passes
        its own ``optimizer`` to :func:`fit` decides whether to use them.
    seed:
        Seeds ``torch``, ``numpy`` and ``random`` at the start of :func:`fit`; the training order
        of epoch e is a permutation drawn from ``seed + e``.
    device:
        ``"auto"`` (CUDA when available, else CPU; under ``torchrun`` the process's own GPU),
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    patience:
        Stop after this many epochs without a better validation metric; ``None`` never stops
        early.
    num_workers:
        DataLoader worker processes.
    eval_batch_size:
        Batch size for validation (defaults to ``batch_size``).
    progress:
        Show tqdm progress bars (only ever on rank 0 and on a terminal).
    warmup_steps:
        Linear learning-rate warm-up: at optimiser step ``s`` (0-based, counted over all epochs)
        with ``s < warmup_steps`` every parameter group's learning rate is
        ``base_lr * (s + 1) / warmup_steps``, then ``base_lr``, where ``base_lr`` is the group's
        learning rate as the optimiser was created (``lr``, or a task optimiser's own). ``0``
        leaves the learning rate alone.
    lr_decay:
        ``"none"`` (constant after the warm-up) or ``"cosine"``: after the warm-up the rate
        follows ``base_lr * (1 + cos(π t)) / 2`` with ``t = (s - warmup_steps) / (S -
        warmup_steps)``, ``S`` the steps of all ``epochs``: from ``base_lr`` down to near 0.
    """

    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "auto"
    patience: int | None = None
    num_workers: int = 0
    eval_batch_size: int | None = None
    progress: bool = True
    warmup_steps: int = 0
    lr_decay: str = "none"

    def __post_init__(self) -> None:
        def check(name: str, ok: bool, expected: str) -> None:
            if not ok:
                raise ValueError(
                    f"TrainConfig.{name} must be {expected}, got {getattr(self, name)!r}"
                )

        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        check("epochs", is_int(self.epochs) and self.epochs >= 1, "a positive int")
        check("batch_size", is_int(self.batch_size) and self.batch_size >= 1, "a positive int")
        check("lr", isinstance(self.lr, int | float) and self.lr > 0, "a positive number")
        check(
            "weight_decay",
            isinstance(self.weight_decay, int | float) and self.weight_decay >= 0,
            "a number >= 0",
        )
        check("seed", is_int(self.seed), "an int")
        check(
            "patience",
            self.patience is None or (is_int(self.patience) and self.patience >= 1),
            "None or a positive int",
        )
        check("num_workers", is_int(self.num_workers) and self.num_workers >= 0, "an int >= 0")
        check(
            "eval_batch_size",
            self.eval_batch_size is None
            or (is_int(self.eval_batch_size) and self.eval_batch_size >= 1),
            "None or a positive int",
        )
        check("warmup_steps", is_int(self.warmup_steps) and self.warmup_steps >= 0, "an int >= 0")
        check("lr_decay", self.lr_decay in LR_DECAYS, f"one of {LR_DECAYS}")
        resolve_device(self.device, check_available=False)


def lr_scale(step: int, total: int, warmup: int, decay: str) -> float:
    """The factor on the base learning rate at optimiser step ``step`` (0-based) of ``total``:
    the linear warm-up over ``warmup`` steps, then ``decay`` (see :class:`TrainConfig`)."""
    if step < warmup:
        return (step + 1) / warmup
    if decay == "none" or total <= warmup:
        return 1.0
    t = min(1.0, (step - warmup) / (total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class FitResult:
    """What :func:`fit` reports.

    Attributes
    ----------
    best_metric:
        The best validation metric (``None`` without a validation set or when every epoch's
        metric was undefined).
    best_epoch:
        The epoch (1-based) whose weights are in ``best.pt``.
    epochs_run:
        Epochs completed, counting those of earlier, resumed calls.
    stopped_early:
        Whether ``patience`` ended the run before ``epochs``.
    resumed_from:
        The epoch the run continued from (0 for a fresh run).
    history:
        One dict per epoch, as in ``metrics.jsonl``.
    run_dir:
        The run folder.
    """

    best_metric: float | None
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    resumed_from: int
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path = Path()


# ---------------------------------------------------------------------- small utilities
def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(
    device: str | torch.device, *, check_available: bool = True, who: str = "device"
) -> torch.device:
    """``"auto"`` → CUDA when available (the process's own GPU under ``torchrun``), else CPU.

    Raises ``ValueError`` for an unknown name, or for CUDA on a machine without it; ``who``
    names the setting in the message (e.g. ``"ZooConfig.device"``). With
    ``check_available=False`` only the name is checked: what a config does at construction.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{who} must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if check_available and resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"{who} {device!r} asked for, but CUDA is not available here")
        if resolved.index is None:
            # The current device: under torchrun, init_distributed made it GPU LOCAL_RANK.
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors, :class:`~weightspace.WeightSpaceFeatures` and containers of them."""
    if isinstance(obj, Tensor) or (hasattr(obj, "to") and not isinstance(obj, nn.Module)):
        return obj.to(device)
    if isinstance(obj, tuple | list):
        return type(obj)(to_device(o, device) for o in obj)
    if isinstance(obj, Mapping):
        return {k: to_device(v, device) for k, v in obj.items()}
    return obj


_UNSAFE_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def _refusal(err: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, without PyTorch's advice to load it
    with ``weights_only=False`` (which would run whatever code the file names)."""
    text = str(err)
    found = _UNSAFE_GLOBAL.search(text)
    if found:
        return (
            f"it needs code to unpickle ({found.group(1)}); weightspace reads only tensors and "
            "plain data"
        )
    if "weights_only" in text or "Weights only load failed" in text:
        return "it holds objects other than tensors and plain data"
    first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
    return first


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (``weights_only=True``: no code is unpickled).

    Raises ``ValueError`` naming the file when it is missing, unreadable, needs code to unpickle
    or is not a dict with a ``"model"`` state.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        raise ValueError(
            f"{path}: not a readable weightspace checkpoint ({_refusal(err)}); delete it to "
            "start over"
        ) from None
    if not isinstance(obj, dict) or "model" not in obj:
        raise ValueError(f"{path}: expected a dict with a 'model' state dict")
    return obj


# ------------------------------------------------------------------------- RNG states
def _rng_state() -> dict[str, Any]:
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss_next = random.getstate()
    out: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "random": {
            "version": int(version),
            "state": torch.tensor(state, dtype=torch.int64),
            "gauss_next": gauss_next,
        },
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    r = state["random"]
    random.setstate((r["version"], tuple(r["state"].tolist()), r["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# ---------------------------------------------------------------------- config.json
def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _check_config(path: Path, current: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every field in which ``current`` differs from ``path``."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable run config ({err})") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: expected a JSON object")
    ignore = {f"train.{f}" for f in RUNTIME_FIELDS}
    old, new = _flatten(saved), _flatten(current)
    diffs = [
        f"{key}: {old.get(key, '<missing>')!r} in config.json, {new.get(key, '<missing>')!r} now"
        for key in sorted(set(old) | set(new))
        if key not in ignore and old.get(key, "<missing>") != new.get(key, "<missing>")
    ]
    if diffs:
        raise ValueError(
            f"{path.parent} holds a run with another config ({'; '.join(diffs)}); "
            "choose a new run folder, or delete this one to start over"
        )


# ------------------------------------------------------------------- batches and outputs
def split_batch(batch: Any, where: str = "fit") -> tuple[Any, Any]:
    """``(inputs, targets)`` of a batch of ``(input, target)`` items; ``ValueError`` otherwise."""
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise ValueError(
            f"{where}: expected dataset items (input, target), got a collated batch of "
            f"type {type(batch).__name__}"
            + (f" with {len(batch)} fields" if isinstance(batch, tuple | list) else "")
        )
    return batch[0], batch[1]


class Supervised:
    """The objective of ``(input, target)`` items: ``loss_fn(model(input), target)``, no logs.

    :func:`fit` recognises it and computes the validation loss from the collated validation
    outputs, in the same pass as the metric.
    """

    def __init__(self, loss_fn: LossFn) -> None:
        self.loss_fn = loss_fn

    def __call__(self, model: nn.Module, batch: Any, epoch: int) -> tuple[Tensor, dict[str, float]]:
        x, y = split_batch(batch, "fit")
        return self.loss_fn(model(x), y), {}

    def __repr__(self) -> str:
        return f"Supervised({getattr(self.loss_fn, '__name__', self.loss_fn)!r})"


def collate_outputs(parts: Sequence[Any]) -> Any:
    """Concatenate per-batch model outputs (or targets) along the batch axis.

    Tensors are concatenated, :class:`~weightspace.WeightSpaceFeatures` joined with
    :meth:`~weightspace.WeightSpaceFeatures.cat`, tuples, lists and dicts field by field, and
    ``None`` stays ``None``.

    Shapes
    ------
    - parts: a sequence of outputs with leading batch axes ``B_1, B_2, …``
    - returns: the same structure with leading axis ``B_1 + B_2 + …``

    Raises ``TypeError`` naming the field that is none of these.
    """
    return _collate_outputs(list(parts), "outputs")


def _collate_outputs(parts: list[Any], where: str) -> Any:
    first = parts[0]
    if isinstance(first, Tensor):
        if first.ndim == 0:
            raise TypeError(f"{where}: a 0-d tensor per batch has no batch axis to concatenate")
        return torch.cat(parts)
    if isinstance(first, WeightSpaceFeatures):
        return WeightSpaceFeatures.cat(parts)
    if first is None:
        return None
    if isinstance(first, tuple | list):
        fields = [_collate_outputs(list(f), f"{where}[{i}]") for i, f in enumerate(zip(*parts))]
        return type(first)(fields)
    if isinstance(first, Mapping):
        return {k: _collate_outputs([p[k] for p in parts], f"{where}[{k!r}]") for k in first}
    raise TypeError(
        f"{where}: cannot collate a {type(first).__name__}; expected a Tensor, "
        "WeightSpaceFeatures, or a tuple, list or dict of them"
    )


def _map_tensors(fn: Callable[[Tensor], Tensor], obj: Any) -> Any:
    """Apply ``fn`` to every tensor of a collated structure, keeping its shape."""
    if isinstance(obj, Tensor):
        return fn(obj)
    if isinstance(obj, WeightSpaceFeatures):
        return WeightSpaceFeatures.from_tensors([fn(t) for t in obj.tensors], obj.spec)
    if isinstance(obj, tuple | list):
        return type(obj)(_map_tensors(fn, o) for o in obj)
    if isinstance(obj, Mapping):
        return {k: _map_tensors(fn, v) for k, v in obj.items()}
    return obj


def _batch_len(batch: Any) -> int:
    """Examples in a collated batch: the leading size of its first tensor or features."""
    if isinstance(batch, Tensor):
        return int(batch.shape[0]) if batch.ndim else 1
    if isinstance(batch, WeightSpaceFeatures):
        return batch.batch_size
    if isinstance(batch, tuple | list) and batch:
        return _batch_len(batch[0])
    if isinstance(batch, Mapping) and batch:
        return _batch_len(next(iter(batch.values())))
    return 1


# -------------------------------------------------------------------------- evaluation
def _loader(
    dataset: Dataset,
    batch_size: int,
    sampler: Sampler,
    collate_fn: Callable[[list[Any]], Any],
    num_workers: int,
    generator: torch.Generator | None = None,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        generator=generator,
    )


class _Shard(Sampler[int]):
    """Positions ``rank, rank + world, …`` of a dataset: each once, no padding."""

    def __init__(self, n: int, rank: int, world: int) -> None:
        self.indices = range(rank, n, world)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


@torch.no_grad()
def _predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[Any, Any]:
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    for batch in loader:
        x, y = split_batch(to_device(batch, device), "predict")
        outputs.append(model(x))
        targets.append(y)
    model.train(was_training)
    return collate_outputs(outputs), _collate_outputs(targets, "targets")


def predict(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    collate_fn: Callable[[list[Any]], Any] = collate,
) -> tuple[Any, Any]:
    """Run ``model`` (in eval mode, without gradients) over a dataset of ``(input, target)``.

    Parameters
    ----------
    model:
        Any module; it is moved to ``device``. Its outputs may be tensors,
        :class:`~weightspace.WeightSpaceFeatures`, or tuples/dicts of them.
    dataset:
        Items ``(input, target)``, collated by ``collate_fn``.
    batch_size:
        Examples per forward pass.
    device:
        Defaults to the device of the model's first parameter (CPU for a parameter-free model).

    Returns
    -------
    ``(outputs, targets)``, each concatenated over the dataset in order
    (:func:`collate_outputs`), on ``device``.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = resolve_device(device)
    model.to(device)
    loader = _loader(dataset, batch_size, _Shard(len(dataset), 0, 1), collate_fn, 0)  # type: ignore[arg-type]
    return _predict(model, loader, device)


class _Averages:
    """Batch-size-weighted sums of the loss and the objective's logs, reduced over ranks."""

    def __init__(self, device: torch.device, prefix: str = "") -> None:
        self.device, self.prefix = device, prefix
        self.keys: tuple[str, ...] | None = None
        self.total: Tensor | None = None

    def add(self, loss: Tensor, logs: Mapping[str, float], n: int, where: str) -> None:
        keys = tuple(sorted(logs))
        if self.keys is None:
            bad = [k for k in keys if k in _RESERVED_LOGS]
            if bad:
                raise ValueError(f"{where}: the objective's logs may not be named {bad}")
            self.keys = keys
            self.total = torch.zeros(2 + len(keys), dtype=torch.float64, device=self.device)
        elif keys != self.keys:
            raise ValueError(
                f"{where}: the objective logged {list(keys)}, before {list(self.keys)}"
            )
        assert self.total is not None
        values = [loss.detach().double().reshape(()), *(_as_float(logs[k], k) for k in keys)]
        row = torch.stack(
            [torch.as_tensor(v, dtype=torch.float64, device=self.device) for v in values]
        )
        self.total[0] += n
        self.total[1:] += row * n

    def result(self, world: int) -> tuple[float, dict[str, float]]:
        assert self.total is not None and self.keys is not None
        if world > 1:
            torch.distributed.all_reduce(self.total)
        mean = (self.total[1:] / self.total[0]).tolist()
        return mean[0], {self.prefix + k: v for k, v in zip(self.keys, mean[1:])}


def _as_float(value: Any, key: str) -> Any:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"objective log {key!r}: expected a number, got shape {tuple(value.shape)}"
            )
        return value.detach().double().reshape(())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"objective log {key!r}: expected a number, got {type(value).__name__}")
    return float(value)


@torch.no_grad()
def _objective_on(
    objective: Objective, model: nn.Module, loader: DataLoader, device: torch.device, epoch: int
) -> tuple[float, dict[str, float]]:
    """The objective's loss and logs averaged over a (sharded) validation set, in eval mode."""
    was_training = model.training
    model.eval()
    sums = _Averages(device, prefix="val_")
    for batch in loader:
        batch = to_device(batch, device)
        loss, logs = objective(model, batch, epoch)
        sums.add(loss, logs, _batch_len(batch), "validation")
    model.train(was_training)
    return sums.result(distributed.get_world_size())


def _better(metric: float, best: float | None, higher_is_better: bool) -> bool:
    if not math.isfinite(metric):
        return False
    if best is None:
        return True
    return metric > best if higher_is_better else metric < best


# ------------------------------------------------------------------------------- fit
def fit(
    model: nn.Module,
    train_set: Dataset,
    val_set: Dataset | None,
    *,
    objective: Objective | None = None,
    loss_fn: LossFn | None = None,
    metric_fn: MetricFn | None = None,
    optimizer: OptimizerFactory | None = None,
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    collate_fn: Callable[[list[Any]], Any] = collate,
    higher_is_better: bool = True,
    task_config: Mapping[str, Any] | None = None,
    restore_best: bool = True,
) -> FitResult:
    """Minimise an objective over ``train_set``, checkpointing every epoch into ``run_dir``;
    resume if ``run_dir`` holds this run.

    Under ``torchrun`` (after :func:`~weightspace.train.distributed.init_distributed`) the model
    is wrapped in ``DistributedDataParallel``, each process trains on its shard of
    ``train_set``, validation outputs are gathered from every process so the metric covers the
    whole validation set, and only rank 0 writes files.

    Parameters
    ----------
    model:
        The model; moved to the configured device and trained in place. Build it after seeding
        (:func:`seed_everything`) for reproducible initial weights.
    train_set, val_set:
        Datasets whose items ``collate_fn`` batches. ``val_set=None`` trains without
        validation: ``best.pt`` then holds the last epoch's weights and ``patience`` is ignored.
    objective:
        ``objective(model, batch, epoch) -> (loss, logs)`` (:data:`Objective`): the scalar loss of
        a collated batch (already on the device) at the 1-based ``epoch``, and a dict of numbers
        that is averaged over the epoch (weighted by batch size) into ``metrics.jsonl``; on the
        validation set (eval mode, no gradients) it gives ``val_loss`` and ``val_<log>``.
    loss_fn:
        Instead of ``objective``: ``loss_fn(outputs, targets)`` for ``(input, target)`` items
        (:class:`Supervised`).
    metric_fn:
        ``metric_fn(outputs, targets) -> float`` on the collated outputs of the whole validation
        set (:func:`collate_outputs`; items must then be ``(input, target)``), e.g. Kendall τ.
        ``None`` selects on the validation loss, to be minimised. An undefined (NaN) metric
        never counts as an improvement.
    optimizer:
        ``optimizer(model.parameters()) -> torch.optim.Optimizer``; ``None`` is Adam with
        ``config.lr`` and ``config.weight_decay``. A resume refuses a checkpoint of another
        optimiser class.
    config:
        The :class:`TrainConfig`.
    run_dir:
        Folder for ``config.json``, ``metrics.jsonl``, ``checkpoint.pt`` and ``best.pt``.
    collate_fn:
        Batches items; :func:`weightspace.collate` handles weight-space features.
    higher_is_better:
        Direction of ``metric_fn``.
    task_config:
        The calling task's own configuration (JSON-serialisable), stored in ``config.json``
        under ``"task"`` beside the TrainConfig under ``"train"``.
    restore_best:
        Load ``best.pt`` into ``model`` before returning.

    Returns
    -------
    :class:`FitResult`.

    Raises
    ------
    ValueError
        ``run_dir`` holds a run with another config (the message names the fields), its
        checkpoint is unreadable or for another model or optimiser, a dataset is empty, the
        objective's logs are malformed, or the training loss became NaN/inf.
    """
    if (objective is None) == (loss_fn is None):
        raise TypeError("fit: pass exactly one of objective= and loss_fn=")
    if objective is None:
        objective = Supervised(loss_fn)  # type: ignore[arg-type]
    supervised = isinstance(objective, Supervised)
    if metric_fn is None:
        higher_is_better = False
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise ValueError("fit: train_set is empty")
    if val_set is not None and len(val_set) == 0:  # type: ignore[arg-type]
        raise ValueError("fit: val_set is empty (pass None to train without validation)")
    rank, world = distributed.get_rank(), distributed.get_world_size()
    if val_set is not None and not supervised and len(val_set) < world:  # type: ignore[arg-type]
        raise ValueError(f"fit: val_set has {len(val_set)} items for {world} processes")  # type: ignore[arg-type]
    main = rank == 0
    device = resolve_device(config.device)
    run_dir = Path(run_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Temporary files of a run killed mid-write: the files they were for are intact.
        clean_temp_files(run_dir, (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, BEST_FILE))
    distributed.barrier()

    # config.json: a rerun must describe the same run.
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    train_fields = {
        k: v
        for k, v in dataclasses.asdict(config).items()
        if k not in ADDED_FIELDS or v != defaults[k]
    }
    full_config = json.loads(
        json.dumps(jsonable({"train": train_fields, "task": task_config or {}}))
    )
    config_path = run_dir / CONFIG_FILE
    if config_path.exists():
        _check_config(config_path, full_config)
    elif main:
        write_json(full_config, config_path)

    seed_everything(config.seed)
    model.to(device)
    if optimizer is None:
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = optimizer(model.parameters())
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"fit: optimizer() returned a {type(opt).__name__}, not an Optimizer")
    # Before _resume: a checkpoint's param groups hold the warm-up lr of its last step.
    base_lrs = [group["lr"] for group in opt.param_groups]
    state: dict[str, Any] = {
        "epoch": 0,
        "best_metric": None,
        "best_epoch": 0,
        "bad_epochs": 0,
        "stopped": False,
        "history": [],
    }
    ckpt_path, best_path = run_dir / CHECKPOINT_FILE, run_dir / BEST_FILE
    if ckpt_path.exists():
        _resume(ckpt_path, model, opt, state)
    resumed_from = state["epoch"]
    # Every process has read the checkpoint before rank 0 can overwrite it.
    distributed.barrier()

    net: nn.Module = model
    if world > 1:
        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    train_sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=config.seed
    )
    loader_gen = torch.Generator()
    train_loader = _loader(
        train_set, config.batch_size, train_sampler, collate_fn, config.num_workers, loader_gen
    )
    eval_batch = config.eval_batch_size or config.batch_size
    n_val = 0 if val_set is None else len(val_set)  # type: ignore[arg-type]

    def gather(t: Tensor) -> Tensor:
        return distributed.gather_ordered(t, n_val)

    predict_loader = loss_loader = None
    if val_set is not None:
        if supervised or metric_fn is not None:
            sampler = DistributedSampler(val_set, num_replicas=world, rank=rank, shuffle=False)
            predict_loader = _loader(val_set, eval_batch, sampler, collate_fn, config.num_workers)
        if not supervised:
            shard = _Shard(len(val_set), rank, world)  # type: ignore[arg-type]
            loss_loader = _loader(val_set, eval_batch, shard, collate_fn, config.num_workers)

    show = config.progress and main and sys.stderr.isatty()
    bar = tqdm(
        total=config.epochs, initial=state["epoch"], desc="train", unit="epoch", disable=not show
    )
    try:
        while state["epoch"] < config.epochs and not state["stopped"]:
            epoch = state["epoch"] + 1
            start = time.perf_counter()
            train_sampler.set_epoch(epoch)
            loader_gen.manual_seed(config.seed + epoch)
            net.train()
            sums = _Averages(device)
            for step, batch in enumerate(
                tqdm(train_loader, desc=f"epoch {epoch}", leave=False, disable=not show)
            ):
                batch = to_device(batch, device)
                opt.zero_grad(set_to_none=True)
                loss, logs = objective(net, batch, epoch)
                if not isinstance(loss, Tensor) or loss.numel() != 1:
                    raise ValueError(
                        f"fit: the objective must return a scalar loss tensor, got {loss!r}"
                    )
                if not torch.isfinite(loss):
                    raise ValueError(
                        f"fit: training loss is {loss.item()} at epoch {epoch}, batch {step}; "
                        "lower the learning rate or check the data for NaN/inf"
                    )
                loss.backward()
                if config.warmup_steps or config.lr_decay != "none":
                    # One checkpoint per epoch, so (epoch, batch) gives the global step on resume.
                    scale = lr_scale(
                        (epoch - 1) * len(train_loader) + step,
                        config.epochs * len(train_loader),
                        config.warmup_steps,
                        config.lr_decay,
                    )
                    for group, base in zip(opt.param_groups, base_lrs):
                        group["lr"] = base * scale
                opt.step()
                sums.add(loss, logs, _batch_len(batch), f"fit: epoch {epoch}, batch {step}")
            train_loss, train_logs = sums.result(world)

            val_loss = metric = None
            val_logs: dict[str, float] = {}
            improved = True
            if val_set is not None:
                outputs = targets = None
                if predict_loader is not None:
                    outputs, targets = _predict(model, predict_loader, device)
                    outputs, targets = _map_tensors(gather, outputs), _map_tensors(gather, targets)
                if supervised:
                    val_loss = float(objective.loss_fn(outputs, targets))  # type: ignore[union-attr]
                else:
                    assert loss_loader is not None
                    val_loss, val_logs = _objective_on(objective, model, loss_loader, device, epoch)
                metric = val_loss if metric_fn is None else float(metric_fn(outputs, targets))
                improved = _better(metric, state["best_metric"], higher_is_better)
            first_best = state["best_epoch"] == 0
            if improved or first_best:
                state["best_epoch"] = epoch
                state["best_metric"] = metric if metric is not None and improved else None
            state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
            if val_set is not None and config.patience is not None:
                state["stopped"] = state["bad_epochs"] >= config.patience
            state["epoch"] = epoch
            state["history"].append(
                {
                    "epoch": epoch,
                    "train_loss": train_loss,
                    "val_loss": val_loss,
                    "val_metric": metric,
                    "best_metric": state["best_metric"],
                    "time": time.perf_counter() - start,
                    "lr": opt.param_groups[0]["lr"],
                    **train_logs,
                    **val_logs,
                }
            )
            if main:
                # best.pt before checkpoint.pt: a kill in between redoes this epoch on resume.
                if improved or first_best:
                    save_torch(
                        {"model": model.state_dict(), "epoch": epoch, "metric": metric}, best_path
                    )
                save_torch(
                    {
                        "format": _CHECKPOINT_FORMAT,
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "optimizer_class": type(opt).__name__,
                        "rng": _rng_state(),
                        **state,
                    },
                    ckpt_path,
                )
                write_lines(state["history"], run_dir / METRICS_FILE)
            bar.update(1)
            bar.set_postfix(
                loss=f"{train_loss:.4g}", val="-" if metric is None else f"{metric:.4g}"
            )
    finally:
        bar.close()
    distributed.barrier()
    if restore_best and best_path.exists():
        model.load_state_dict(load_checkpoint(best_path)["model"])
    return FitResult(
        best_metric=state["best_metric"],
        best_epoch=state["best_epoch"],
        epochs_run=state["epoch"],
        stopped_early=state["stopped"],
        resumed_from=resumed_from,
        history=list(state["history"]),
        run_dir=run_dir,
    )


def _resume(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load ``checkpoint.pt`` into the model, the optimiser, the RNGs and ``state``."""
    ckpt = load_checkpoint(path)
    missing = [k for k in ("optimizer", "rng", *state) if k not in ckpt]
    if missing or ckpt.get("format") != _CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path}: missing entries {missing} or unknown format "
            f"{ckpt.get('format')!r} (expected {_CHECKPOINT_FORMAT})"
        )
    saved_class = ckpt.get("optimizer_class", type(optimizer).__name__)
    if saved_class != type(optimizer).__name__:
        raise ValueError(
            f"{path}: holds the state of a {saved_class} optimiser, this run uses "
            f"{type(optimizer).__name__}"
        )
    try:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0]
        raise ValueError(
            f"{path}: holds a state for another model or optimizer ({first})"
        ) from None
    _set_rng_state(ckpt["rng"])
    state.update({k: ckpt[k] for k in state})
