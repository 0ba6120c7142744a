"""One training loop for every task: Adam, checkpoints, resume, early stopping, DDP.

:func:`fit` trains a model on a dataset of ``(input, target)`` pairs and keeps everything it
needs to continue in a run folder::

    run_dir/config.json      the TrainConfig and the task's own config; a rerun must match it
    run_dir/metrics.jsonl    one JSON line per epoch: epoch, train_loss, val_loss, val_metric, time
    run_dir/checkpoint.pt    after every epoch: model, optimizer, epoch, best metric, RNG states,
                             bad-epochs counter, history (written atomically)
    run_dir/best.pt          the model state with the best validation metric so far

Calling :func:`fit` again on the same folder continues from ``checkpoint.pt``; an interrupted run
resumed this way ends with the same weights as one that ran through. Every file is written to a
temporary name and moved into place, so a run killed at any moment leaves readable files.
Checkpoints hold only tensors, numbers, strings and containers of them, and are read back with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import random
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from weightspace.space.features import collate
from weightspace.train import distributed

__all__ = [
    "FitResult",
    "TrainConfig",
    "atomic_path",
    "fit",
    "jsonable",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "save_atomic",
    "seed_everything",
    "to_device",
    "write_json_atomic",
]

#: TrainConfig fields that may change between a run and its resumption: they change where and
#: how fast the run goes, not what it computes.
RUNTIME_FIELDS: tuple[str, ...] = ("device", "num_workers", "eval_batch_size", "progress")

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
BEST_FILE = "best.pt"
_CHECKPOINT_FORMAT = 1

LossFn = Callable[[Tensor, Tensor], Tensor]
MetricFn = Callable[[Tensor, Tensor], float | Tensor]


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
        Adam's learning rate and (L2) weight decay.
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
        resolve_device(self.device, check_available=False)


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


def resolve_device(device: str | torch.device, *, check_available: bool = True) -> torch.device:
    """``"auto"`` → CUDA when available (the process's own GPU under ``torchrun``), else CPU.

    Raises ``ValueError`` for an unknown name, or for CUDA on a machine without it.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from None
    if check_available and resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
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


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path`` in one step.

    A process killed while writing leaves the old file (or none), never a half-written one.

    Examples
    --------
    >>> with atomic_path("run/scatter.png") as tmp:  # doctest: +SKIP
    ...     fig.savefig(tmp, format="png")
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)`` through a temporary file (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def jsonable(obj: Any) -> Any:
    """``obj`` made JSON-safe: non-finite floats become ``None`` (JSON has no NaN), tuples lists,
    paths strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, tuple | list):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write ``obj`` as indented JSON through a temporary file; NaN and ±inf become ``null``."""
    text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _write_lines_atomic(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    text = "".join(json.dumps(jsonable(r), allow_nan=False) + "\n" for r in rows)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`fit` (``weights_only=True``: no code is unpickled).

    Raises ``ValueError`` naming the file when it is missing, unreadable or not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path}: not a readable weightspace checkpoint ({first}); delete it to start over"
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


# -------------------------------------------------------------------------- evaluation
def _loader(
    dataset: Dataset,
    batch_size: int,
    sampler: DistributedSampler,
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


def _split_batch(batch: Any, where: str) -> tuple[Any, Tensor]:
    if not isinstance(batch, tuple | list) or len(batch) != 2:
        raise ValueError(
            f"{where}: expected dataset items (input, target), got a collated batch of "
            f"type {type(batch).__name__}"
            + (f" with {len(batch)} fields" if isinstance(batch, tuple | list) else "")
        )
    return batch[0], batch[1]


@torch.no_grad()
def _predict(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[Tensor, Tensor]:
    was_training = model.training
    model.eval()
    outputs, targets = [], []
    for batch in loader:
        x, y = _split_batch(to_device(batch, device), "predict")
        outputs.append(model(x))
        targets.append(y)
    model.train(was_training)
    return torch.cat(outputs), torch.cat(targets)


def predict(
    model: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    collate_fn: Callable[[list[Any]], Any] = collate,
) -> tuple[Tensor, Tensor]:
    """Run ``model`` (in eval mode, without gradients) over a dataset of ``(input, target)``.

    Parameters
    ----------
    model:
        Any module; it is moved to ``device``.
    dataset:
        Items ``(input, target)``, collated by ``collate_fn``.
    batch_size:
        Examples per forward pass.
    device:
        Defaults to the device of the model's first parameter (CPU for a parameter-free model).

    Returns
    -------
    ``(outputs, targets)``, concatenated over the dataset in order, on ``device``.
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = resolve_device(device)
    model.to(device)
    sampler = DistributedSampler(dataset, num_replicas=1, rank=0, shuffle=False)
    return _predict(model, _loader(dataset, batch_size, sampler, collate_fn, 0), device)


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
    loss_fn: LossFn,
    metric_fn: MetricFn | None = None,
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    collate_fn: Callable[[list[Any]], Any] = collate,
    higher_is_better: bool = True,
    task_config: Mapping[str, Any] | None = None,
    restore_best: bool = True,
) -> FitResult:
    """Train ``model`` with Adam, checkpointing every epoch into ``run_dir``; resume if possible.

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
        Datasets of ``(input, target)`` items. ``val_set=None`` trains without validation:
        ``best.pt`` then holds the last epoch's weights and ``patience`` is ignored.
    loss_fn:
        ``loss_fn(outputs, targets) -> scalar tensor``, averaged over the batch.
    metric_fn:
        ``metric_fn(outputs, targets) -> float`` on the whole validation set (e.g. Kendall τ on
        sigmoid outputs). ``None`` uses the validation loss, to be minimised. An undefined
        (NaN) metric never counts as an improvement.
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
        checkpoint is unreadable or for another model, a dataset is empty, or the training loss
        became NaN/inf.
    """
    if metric_fn is None:
        metric_fn, higher_is_better = loss_fn, False
    if len(train_set) == 0:  # type: ignore[arg-type]
        raise ValueError("fit: train_set is empty")
    if val_set is not None and len(val_set) == 0:  # type: ignore[arg-type]
        raise ValueError("fit: val_set is empty (pass None to train without validation)")
    rank, world = distributed.get_rank(), distributed.get_world_size()
    main = rank == 0
    device = resolve_device(config.device)
    run_dir = Path(run_dir)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # Temporary files of a run killed mid-write: the files they were for are intact.
        for name in (CONFIG_FILE, METRICS_FILE, CHECKPOINT_FILE, BEST_FILE):
            for tmp in run_dir.glob(f".{name}.*.tmp"):
                tmp.unlink(missing_ok=True)
    distributed.barrier()

    # config.json: a rerun must describe the same run.
    full_config = json.loads(
        json.dumps(jsonable({"train": dataclasses.asdict(config), "task": task_config or {}}))
    )
    config_path = run_dir / CONFIG_FILE
    if config_path.exists():
        _check_config(config_path, full_config)
    elif main:
        write_json_atomic(full_config, config_path)

    seed_everything(config.seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
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
        ckpt = load_checkpoint(ckpt_path)
        missing = [k for k in ("optimizer", "rng", *state) if k not in ckpt]
        if missing or ckpt.get("format") != _CHECKPOINT_FORMAT:
            raise ValueError(
                f"{ckpt_path}: missing entries {missing} or unknown format "
                f"{ckpt.get('format')!r} (expected {_CHECKPOINT_FORMAT})"
            )
        try:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            first = str(err).strip().splitlines()[0]
            raise ValueError(
                f"{ckpt_path}: holds a state for another model or optimizer ({first})"
            ) from None
        _set_rng_state(ckpt["rng"])
        state = {k: ckpt[k] for k in state}
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
    val_loader = None
    if val_set is not None:
        val_sampler = DistributedSampler(val_set, num_replicas=world, rank=rank, shuffle=False)
        val_loader = _loader(
            val_set,
            config.eval_batch_size or config.batch_size,
            val_sampler,
            collate_fn,
            config.num_workers,
        )

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
            total = torch.zeros(2, dtype=torch.float64, device=device)
            for step, batch in enumerate(
                tqdm(train_loader, desc=f"epoch {epoch}", leave=False, disable=not show)
            ):
                x, y = _split_batch(to_device(batch, device), "fit")
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(net(x), y)
                if not torch.isfinite(loss):
                    raise ValueError(
                        f"fit: training loss is {loss.item()} at epoch {epoch}, batch {step}; "
                        "lower the learning rate or check the data for NaN/inf"
                    )
                loss.backward()
                optimizer.step()
                total[0] += loss.detach().double() * len(y)
                total[1] += len(y)
            if world > 1:
                torch.distributed.all_reduce(total)
            train_loss = float(total[0] / total[1])

            val_loss = metric = None
            if val_loader is not None and val_set is not None:
                outputs, targets = _predict(model, val_loader, device)
                outputs = distributed.gather_ordered(outputs, len(val_set))  # type: ignore[arg-type]
                targets = distributed.gather_ordered(targets, len(val_set))  # type: ignore[arg-type]
                val_loss = float(loss_fn(outputs, targets))
                metric = float(metric_fn(outputs, targets))
                improved = _better(metric, state["best_metric"], higher_is_better)
            else:
                improved = True
            first_best = state["best_epoch"] == 0
            if improved or first_best:
                state["best_epoch"] = epoch
                state["best_metric"] = metric if metric is not None and improved else None
            state["bad_epochs"] = 0 if improved else state["bad_epochs"] + 1
            if val_loader is not None and config.patience is not None:
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
                }
            )
            if main:
                # best.pt before checkpoint.pt: a kill in between redoes this epoch on resume.
                if improved or first_best:
                    save_atomic(
                        {"model": model.state_dict(), "epoch": epoch, "metric": metric},
                        best_path,
                    )
                save_atomic(
                    {
                        "format": _CHECKPOINT_FORMAT,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "rng": _rng_state(),
                        **state,
                    },
                    ckpt_path,
                )
                _write_lines_atomic(state["history"], run_dir / METRICS_FILE)
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
