"""Tests that run the scripts of ``examples/`` as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run_example(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Run ``examples/NAME`` in a fresh interpreter (the package on ``PYTHONPATH``, one torch
    thread) and assert that it exits 0, showing the end of its stderr otherwise."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc
