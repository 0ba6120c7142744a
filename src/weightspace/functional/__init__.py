"""Functional use of weight-space features: run the networks they describe, and compose them
with affine maps of their inputs."""

from weightspace.functional.affine import precompose_affine, random_similarities
from weightspace.functional.forward import forward

__all__ = ["forward", "precompose_affine", "random_similarities"]
