"""Tests of the scripts in benchmarks/, and the one way they load a script as a module."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as the module ``bench_<name>``, registered in
    ``sys.modules`` so that dataclasses defined in the script can resolve their module.
    ``benchmarks/`` goes on ``sys.path`` first, as Python does for a script run directly, so
    that the scripts' shared helpers (``_machine``) import."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
