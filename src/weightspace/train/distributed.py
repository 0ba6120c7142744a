"""Data-parallel training under ``torchrun``: process-group set-up and collectives.

``torchrun --nproc_per_node N script.py`` starts N processes and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each. A script calls
:func:`init_distributed` once, builds its model and data, and calls
:func:`weightspace.train.fit`, which notices the process group and wraps the model in
``DistributedDataParallel``. Without those variables everything runs in one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = [
    "barrier",
    "cleanup_distributed",
    "gather_ordered",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "rank_and_world",
]


def _env_int(name: str) -> int:
    value = os.environ[name]
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def init_distributed(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. On a machine with CUDA each process takes
    GPU ``LOCAL_RANK`` and the ``nccl`` backend; on CPU the backend is ``gloo``. Without
    ``RANK``/``WORLD_SIZE`` (a plain ``python script.py``) nothing is initialised and the
    process is rank 0 of 1. Calling it again after the group exists is harmless.

    Parameters
    ----------
    backend:
        Overrides the backend chosen from the device.

    Returns
    -------
    ``(rank, world_size, device)``.
    """
    cuda = torch.cuda.is_available()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cuda" if cuda else "cpu")
    rank, world_size = _env_int("RANK"), _env_int("WORLD_SIZE")
    local_rank = _env_int("LOCAL_RANK") if "LOCAL_RANK" in os.environ else rank
    if not 0 <= rank < world_size:
        raise ValueError(f"environment: RANK={rank} must lie in [0, WORLD_SIZE={world_size})")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise ValueError(
                f"environment: LOCAL_RANK={local_rank}, but only "
                f"{torch.cuda.device_count()} CUDA devices are visible"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(
            backend or ("nccl" if cuda else "gloo"), rank=rank, world_size=world_size
        )
    return rank, world_size, device


def cleanup_distributed() -> None:
    """Leave the process group, if there is one (call at the end of a ``torchrun`` script)."""
    if is_distributed():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group with more than zero peers is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: the process group's when one is initialised,
    else ``torchrun``'s ``RANK``/``WORLD_SIZE`` variables, else ``(0, 1)``.

    Jobs that split work by rank without a process group (zoo and INR generation) and the
    training loop all read it here. Raises ``ValueError`` for variables that are not integers
    or a rank outside ``[0, WORLD_SIZE)``.
    """
    if is_distributed():
        return dist.get_rank(), dist.get_world_size()
    if "RANK" not in os.environ and "WORLD_SIZE" not in os.environ:
        return 0, 1
    rank = _env_int("RANK") if "RANK" in os.environ else 0
    world = _env_int("WORLD_SIZE") if "WORLD_SIZE" in os.environ else 1
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"environment: RANK={rank} must lie in [0, WORLD_SIZE={world})")
    return rank, world


def get_rank() -> int:
    """This process's rank in the process group (0 without one)."""
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    """The number of processes in the process group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0: the process that writes files and shows progress bars."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (a no-op in one process)."""
    if is_distributed() and get_world_size() > 1:
        dist.barrier()


def gather_ordered(local: Tensor, total: int) -> Tensor:
    """Reassemble a tensor sharded by a non-shuffling ``DistributedSampler``, in dataset order.

    Rank r of W holds the rows at positions ``r, r + W, r + 2W, …`` of the dataset, padded by
    repeating the first rows until every rank has the same count. This gathers every rank's
    rows, interleaves them back and drops the padding.

    Parameters
    ----------
    local:
        ``(n_local, *rest)``: this rank's rows; the same ``n_local`` and ``rest`` on every rank.
    total:
        Length of the dataset.

    Returns
    -------
    ``(total, *rest)`` on every rank.
    """
    world = get_world_size()
    if world == 1:
        return local[:total]
    parts = [torch.empty_like(local) for _ in range(world)]
    dist.all_gather(parts, local.contiguous())
    # (W, n_local, *rest) → (n_local, W, *rest): row k of rank r is dataset position k·W + r.
    stacked = torch.stack(parts).transpose(0, 1)
    return stacked.reshape(-1, *local.shape[1:])[:total]
