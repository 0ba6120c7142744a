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
    TrainConfig,
    atomic_path,
    fit,
    load_checkpoint,
    predict,
    resolve_device,
    save_atomic,
    seed_everything,
    to_device,
    write_json_atomic,
)

__all__ = [
    "FitResult",
    "TrainConfig",
    "atomic_path",
    "cleanup_distributed",
    "fit",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "load_checkpoint",
    "predict",
    "resolve_device",
    "save_atomic",
    "seed_everything",
    "to_device",
    "write_json_atomic",
]
