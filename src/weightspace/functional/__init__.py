"""Functional use of weight-space features: run the networks they describe."""

from weightspace.functional.forward import forward

__all__ = ["forward"]
