"""Fixtures the task tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from weightspace.data.inr import InrConfig, fit_inrs


@pytest.fixture(scope="module")
def digits_inrs(tmp_path_factory) -> Path:
    """20 train (2 of them validation) and 20 test digits, one rough SIREN each."""
    out = tmp_path_factory.mktemp("inrs") / "digits"
    config = InrConfig(dataset="digits", out=str(out), limit=20, steps=20, chunk_size=16)
    return fit_inrs(config, progress=False)
