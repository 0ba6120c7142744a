"""Elementwise kernels fused by ``torch.compile``, with the eager function as the fallback.

A :class:`FusedKernel` wraps a small function of tensors (elementwise work that torch's eager
operators would run as several passes over memory, or with slow transcendental functions) and
runs it compiled by inductor, one generated kernel per device. The eager function stays the
reference: it is what runs

- when ``WEIGHTSPACE_COMPILE=0`` is set,
- when compiling fails on a device (no C++ compiler for the CPU, no Triton for a GPU): a
  warning names the kernel and the error once, and that device runs eagerly from then on,
- under ``torch.compile`` of a caller (nesting is left to the outer compile).

Compiled and eager results agree to a few units in the last place (inductor's vectorised
``sin`` and ``cos`` are not bit-identical to eager's); tests compare the two.

Compiling takes time on the first call in a process (inductor caches its kernels on disk, so a
later process pays less). Shapes are dynamic, but dynamo guards on sizes that happened to be
equal on the first call ("duck sizing"), so a later call where they differ compiles once more.
BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

__all__ = ["COMPILE_ENV", "FusedKernel", "compile_enabled"]

#: Environment variable that turns compiled kernels off (``0``) or on (anything else; default).
COMPILE_ENV = "WEIGHTSPACE_COMPILE"


def compile_enabled() -> bool:
    """Whether :class:`FusedKernel` may compile (``WEIGHTSPACE_COMPILE`` is not ``0``)."""
    return os.environ.get(COMPILE_ENV, "1") != "0"


class FusedKernel:
    """``fn`` compiled once per device type, falling back to ``fn`` itself where that fails.

    Parameters
    ----------
    fn:
        A function of tensors made of elementwise operations (it may write into its arguments
        with ``copy_``). Its first argument decides the device.
    name:
        What warnings call it.
    eager:
        What runs uncompiled (default ``fn``): the same computation written for eager operators
        (``out=`` and in-place methods), without the temporaries that ``fn``'s
        ``out.copy_(expression)`` style allocates when it runs eagerly.
    """

    def __init__(
        self, fn: Callable[..., Any], name: str, eager: Callable[..., Any] | None = None
    ) -> None:
        self.fn = fn
        self.eager = eager if eager is not None else fn
        self.name = name
        self._compiled: Callable[..., Any] | None = None
        self._failed: set[str] = set()

    def __call__(self, *args: Tensor) -> Any:
        device = args[0].device.type
        if device in self._failed or not compile_enabled() or _is_compiling():
            return self.eager(*args)
        try:
            if self._compiled is None:
                # Raises where torch.compile is unsupported (some Python and torch versions).
                self._compiled = torch.compile(self.fn, dynamic=True)
            return self._compiled(*args)
        except Exception as error:
            # Failures happen while compiling, before the kernel writes anything, so running
            # the eager function on the same arguments is safe.
            self._failed.add(device)
            warnings.warn(
                f"weightspace: compiling the fused kernel {self.name!r} for {device} failed "
                f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                f"running it eagerly (set {COMPILE_ENV}=0 to skip compiling)",
                RuntimeWarning,
                stacklevel=2,
            )
            return self.eager(*args)


def _is_compiling() -> bool:
    """Whether a caller's ``torch.compile`` is tracing (``torch.compiler.is_compiling`` is
    torch >= 2.3; older versions have it under ``torch._dynamo``)."""
    check = getattr(torch.compiler, "is_compiling", None)
    if check is None:
        check = getattr(torch._dynamo, "is_compiling", lambda: False)
    return bool(check())
