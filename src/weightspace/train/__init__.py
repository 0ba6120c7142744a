"""Training: one loop for every task (:func:`fit`), with checkpoints, resume and DDP."""

from weightspace.train.distributed import (
    cleanup_distributed,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
)
from weightspace.train.loop import (
    FitResult,
    Objective,
    Supervised,
    TrainConfig,
    collate_outputs,
    fit,
    load_checkpoint,
    predict,
    resolve_device,
    seed_everything,
    split_batch,
    to_device,
)

__all__ = [
    "FitResult",
    "Objective",
    "Supervised",
    "TrainConfig",
    "cleanup_distributed",
    "collate_outputs",
    "fit",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "seed_everything",
    "split_batch",
    "to_device",
]
