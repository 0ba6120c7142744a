"""Running a task: train, resume, select, score, evaluate; one implementation for every task.

:func:`run` trains a :class:`~weightspace.tasks.base.Task` on its data's train split, selects
the epoch with the best validation metric and scores it on the test split::

    RUN/config.json       TrainConfig + the task's settings, its NetworkSpec and what it adds
    RUN/metrics.jsonl     per epoch: train loss, validation loss and metric
    RUN/checkpoint.pt     resumable state;  RUN/best.pt: the selected model
    RUN/metrics.json      the task's test metrics and the training-time fields: n_train, n_val,
                          best_epoch, best_val_<metric>, epochs_run, stopped_early, train_time_s
    RUN/...               the task's plots and predictions

Running it again resumes (a finished run is only re-scored). :func:`evaluate` rebuilds the model
from ``config.json`` and ``best.pt`` alone and scores it on the test split of other data of the
same weight space, writing into ``RUN/eval/<data name>/``: never over the run's own results.
Under ``torchrun`` every process trains and scores; only rank 0 writes files.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from weightspace.io import atomic_path, read_json, write_json
from weightspace.space.spec import NetworkSpec
from weightspace.tasks.base import Task, TaskConfig
from weightspace.train import distributed
from weightspace.train.batched import retain_freed_memory
from weightspace.train.loop import (
    BEST_FILE,
    CONFIG_FILE,
    fit,
    load_checkpoint,
    resolve_device,
    seed_everything,
)

__all__ = [
    "EVAL_DIR",
    "METRICS_JSON",
    "eval_folder",
    "evaluate",
    "read_task",
    "run",
    "write_csv",
]

METRICS_JSON = "metrics.json"
#: Where :func:`evaluate` writes: ``RUN/eval/<data name>/``.
EVAL_DIR = "eval"
SPLIT_NAMES = ("train", "val", "test")


# ------------------------------------------------------------------ files
def write_csv(
    header: Sequence[str], rows: Iterable[Sequence[Any]], path: str | os.PathLike[str]
) -> None:
    """A CSV file with one header row, written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def read_task(run: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``"task"`` object of ``RUN/config.json`` (``{}`` if it has none), or ``None`` when
    there is no such file. Raises ``ValueError`` for a file that is not valid JSON."""
    path = Path(run) / CONFIG_FILE
    if not path.is_file():
        return None
    saved = read_json(path)
    task = saved.get("task") if isinstance(saved, dict) else None
    return task if isinstance(task, dict) else {}


def _read_run(task_cls: type[Task], run: Path) -> dict[str, Any]:
    task = read_task(run)
    path = run / CONFIG_FILE
    if task is None:
        raise ValueError(f"{str(run)!r} is not a training run: {CONFIG_FILE} is missing")
    if task.get("task") != task_cls.name:
        article = "an" if task_cls.name[0] in "aeiou" else "a"
        raise ValueError(
            f"{path}: expected {article} {task_cls.name!r} run, found task {task.get('task')!r}"
        )
    for key in ("model", "spec", *task_cls.required):
        if key not in task:
            raise ValueError(f"{path}: 'task' lacks {key!r}")
    return task


def eval_folder(run: Path, label: str) -> Path:
    """``RUN/eval/<name>``: the data folder's name, made safe; a second data folder of the
    same name (another path) gets the name plus a hash of its path."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(label.rstrip("/\\")).name).strip("-.") or "data"
    folder = run / EVAL_DIR / name
    previous = folder / METRICS_JSON
    if previous.is_file():
        try:
            source = read_json(previous).get("source")
        except (ValueError, AttributeError):
            source = None
        if source not in (None, _source(label)):
            digest = hashlib.sha1(_source(label).encode()).hexdigest()[:8]
            folder = run / EVAL_DIR / f"{name}-{digest}"
    return folder


def _source(label: str) -> str:
    return os.path.abspath(label) if not label.startswith("<") else label


# ------------------------------------------------------------------ data
def _label(data: Any, default: str) -> str:
    info = getattr(data, "info", None) or {}
    return str(info.get("root") or info.get("path") or default)


def _check_split(task: Task, part: Any, name: str, where: str, hint: str) -> None:
    if len(part) < task.min_split:
        count = len(part) or "no"
        raise ValueError(
            f"{task.noun} {where!r}: the {name} split holds {count} {task.unit}{hint}; "
            f"need at least {task.min_split}"
        )


def _limit(train: Any, limit: int, seed: int, where: str, task: Task) -> Any:
    """The first ``limit`` items of a seeded permutation of the train split."""
    import torch

    if limit > len(train):
        raise ValueError(
            f"{task.noun} {where!r}: train_limit={limit}, but the train split holds "
            f"{len(train)} {task.unit}"
        )
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train.subset(order[:limit].sort().values)


# ------------------------------------------------------------------ run
def run(
    task_cls: type[Task], config: TaskConfig, *, data: Any = None, progress: bool = True
) -> dict[str, Any]:
    """Train ``task_cls`` as ``config`` says, select on the validation metric, score on test.

    Parameters
    ----------
    task_cls:
        The task.
    config:
        Its config (an instance of ``task_cls.config_class``).
    data:
        In-memory data to use instead of loading the config's data folder (which then only
        labels the run).
    progress:
        Show progress bars.

    Returns
    -------
    The contents of ``RUN/metrics.json``.

    Raises
    ------
    ValueError
        From the task (a missing folder, bad data), a split with too few items, or a run folder
        that holds another config (the fields are named).
    """
    if not isinstance(config, task_cls.config_class):
        raise TypeError(f"run: {task_cls.name} takes a {task_cls.config_class.__name__}")
    # Under torchrun, join (and afterwards leave) the process group, so that fit trains with DDP
    # and only rank 0 writes; without torchrun's variables this does nothing.
    joined = not distributed.is_distributed()
    distributed.init_distributed()
    # Large feature tensors are reused between steps instead of faulted in again (BENCHMARKS.md).
    retain_freed_memory()
    try:
        return _run(task_cls, config, data, progress)
    finally:
        if joined:
            distributed.cleanup_distributed()


def _run(task_cls: type[Task], config: TaskConfig, data: Any, progress: bool) -> dict[str, Any]:
    task = task_cls(config.settings())
    source = getattr(config, task_cls.data_field)
    where = source if data is None else _label(data, source)
    data = task.load(source, progress=progress) if data is None else data
    data, extra = task.check(data, where)
    main = distributed.get_rank() == 0
    line = task.summary(data, source, extra)
    if line and main:
        print(line)
    parts = {name: data.part(name) for name in SPLIT_NAMES}
    limit = getattr(config, "train_limit", None)
    if limit is not None:
        parts["train"] = _limit(parts["train"], limit, config.seed, where, task)
    for name, part in parts.items():
        _check_split(task, part, name, where, task.split_hint(data, extra))
    task.settings.update(spec=data.spec.to_dict(), **task.describe(data, where))
    seed_everything(config.seed)
    model = task.build(data.spec)
    task.prepare(model, parts["train"])
    config.fit_to(len(parts["train"]))
    result = fit(
        model,
        task.items(parts["train"], train=True),
        task.items(parts["val"], train=False),
        objective=task.objective(),
        metric_fn=task.metric_fn,
        higher_is_better=task.higher_is_better,
        config=config.train_config(eval_batch_size=task.eval_batch_size, progress=progress),
        run_dir=config.out,
        task_config={"task": task.name, **task.settings},
    )
    out = Path(config.out)
    title = f"{config.model} on {where}"  # type: ignore[attr-defined]
    metrics = task.score(model, parts["test"], title, out if main else None)
    metrics.update(
        extra,
        model=config.model,  # type: ignore[attr-defined]
        seed=config.seed,
        **{task.data_field: source},
        n_train=len(parts["train"]),
        n_val=len(parts["val"]),
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        stopped_early=result.stopped_early,
        train_time_s=sum(h["time"] for h in result.history),
        **{f"best_val_{task.metric}": result.best_metric},
    )
    if main:
        write_json(metrics, out / METRICS_JSON)
    return metrics


# ------------------------------------------------------------------ evaluate
def load_trained(task_cls: type[Task], run: Path) -> tuple[Task, NetworkSpec, nn.Module]:
    """The task of ``run`` (its saved settings), its weight space and its selected model."""
    task = task_cls(_read_run(task_cls, run))
    spec = NetworkSpec.from_dict(task.settings["spec"], f"{run / CONFIG_FILE}: 'task.spec'")
    model = task.build(spec)
    state = load_checkpoint(run / BEST_FILE)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as err:
        raise ValueError(
            f"{run / BEST_FILE}: does not fit the {task.settings['model']!r} model of "
            f"{run / CONFIG_FILE} ({str(err).splitlines()[0]})"
        ) from None
    return task, spec, model


def evaluate(
    task_cls: type[Task],
    run: str | os.PathLike[str],
    data: Any,
    *,
    device: str = "auto",
    overrides: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a trained run on the test split of ``data``; writes ``RUN/eval/<name>/``.

    Parameters
    ----------
    task_cls:
        The run's task.
    run:
        A run folder (``config.json`` and ``best.pt``).
    data:
        A data folder, or in-memory data, on the run's weight space.
    device:
        Where to run the model.
    overrides:
        Settings that replace the run's own (and the task's ``eval_overrides``) for loading
        ``data``, e.g. another split seed.
    progress:
        Show a progress bar while loading.

    Returns
    -------
    The task's test metrics with ``model``, ``seed``, the data label, ``run``, ``source`` (the
    data's absolute path) and ``out`` (the folder written), also in ``out/metrics.json``.
    ``RUN/metrics.json`` and the run's plots are left as they were.

    Raises
    ------
    ValueError
        Not a run of this task, ``best.pt`` missing, unreadable or of another model, the data
        cannot be loaded, lies on another weight space (both are named) or is refused by the
        task, or its test split is too small.
    """
    run = Path(run)
    retain_freed_memory()
    task, spec, model = load_trained(task_cls, run)
    model.to(resolve_device(device))
    if isinstance(data, str | os.PathLike):
        label = os.fspath(data)
        loader = task_cls({**task.settings, **task.eval_overrides, **(overrides or {})})
        data = loader.load(label, progress=progress)
    else:
        label = _label(data, f"<in-memory {task.noun}>")
    if data.spec != spec:
        raise ValueError(
            f"{task.noun} {label!r} holds networks on {data.spec}, but the model in "
            f"{str(run)!r} was trained on {spec}"
        )
    data, extra = task.check(data, label)
    task.check_compatible(data, label, run)
    test = data.part("test")
    _check_split(task, test, "test", label, "")
    main = distributed.get_rank() == 0
    out = eval_folder(run, label)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    title = f"{task.settings['model']} on {label}"
    metrics = task.score(model, test, title, out if main else None)
    metrics.update(
        extra,
        model=task.settings["model"],
        seed=task.settings.get("seed"),
        **{task.data_field: label},
        run=str(run),
        source=_source(label),
        out=str(out),
    )
    if main:
        write_json(metrics, out / METRICS_JSON)
    return metrics
