"""Helpers shared by the zoo and INR stores."""

from __future__ import annotations

import subprocess
import sys

import pytest

from weightspace.data._store import retain_freed_memory


def test_retain_freed_memory_can_be_switched_off(monkeypatch) -> None:
    monkeypatch.setenv("WEIGHTSPACE_RETAIN_MEMORY", "0")
    assert retain_freed_memory() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc only")
def test_retain_freed_memory_keeps_large_blocks_mapped() -> None:
    """A training step's pattern: many large tensors alive at once, then all freed.

    By default glibc returns the freed heap top to the system (it exceeds the trim threshold),
    so the next step faults every page in again; after the call the pages are reused.
    """
    code = """
import resource, sys, torch
from weightspace.data._store import retain_freed_memory
on = sys.argv[1] == "1"
if on:
    assert retain_freed_memory() is True
def step():
    alive = [torch.ones(4 * 2**20) for _ in range(8)]  # 8 x 16 MB, touched
    del alive
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
    faults = {}
    for on in ("0", "1"):
        run = subprocess.run(
            [sys.executable, "-c", code, on], capture_output=True, text=True, check=True
        )
        faults[on] = int(run.stdout.strip())
    # 5 steps of 8 blocks of 4096 pages. Off, glibc trims the freed top of the heap and about two
    # blocks per step fault in again (~37k pages measured); on, ~4k pages over the 5 steps.
    assert faults["0"] > 5 * 4096
    assert faults["1"] < faults["0"] / 4
