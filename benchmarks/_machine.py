"""What every benchmark records about the machine it ran on, built in one place, and how the
scripts wait for a device's queued work before reading a clock.

The scripts in this folder import it as ``_machine`` (Python puts a script's own folder first on
``sys.path``; ``tests/benchmarks.load_script`` does the same).
"""

from __future__ import annotations

import platform
from typing import Any

import torch


def machine_info(device: str | torch.device | None = None, **extra: Any) -> dict[str, Any]:
    """Platform, processor, Python, torch, torch's thread count and, when given, the device
    (with the GPU's name on CUDA); ``extra`` entries (versions of a peer, memory settings) are
    added as they are."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if device is not None:
        dev = torch.device(device)
        name = str(dev)
        if dev.type == "cuda":
            name += f" ({torch.cuda.get_device_name(dev)})"
        info["device"] = name
    info.update(extra)
    return info


def machine_line(info: dict[str, Any]) -> str:
    """The one-line summary the scripts print: processor, threads, torch and the device."""
    line = f"{info['processor']}, {info['threads']} thread(s), torch {info['torch']}"
    if "device" in info:
        line += f", {info['device']}"
    return line


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously; the CPU needs nothing), so
    that a time read after it is the work's, not the launch's."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
