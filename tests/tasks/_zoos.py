"""A tiny zoo of digits CNNs, generated for the task tests that need one on disk."""

from __future__ import annotations

from pathlib import Path

from weightspace.data.zoo import ZooConfig, generate_zoo


def digits_zoo(
    out: Path, networks: int, chunk_size: int, *, limit_train: int, limit_test: int
) -> Path:
    """``networks`` CNNs trained one epoch on scikit-learn's 8×8 digits; returns the folder."""
    config = ZooConfig(
        dataset="digits",
        networks=networks,
        out=str(out),
        epochs=1,
        chunk_size=chunk_size,
        limit_train=limit_train,
        limit_test=limit_test,
    )
    return generate_zoo(config, progress=False)
