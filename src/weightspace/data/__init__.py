"""Data: images from offline sources, model zoos (generated or loaded), INR datasets."""

from weightspace.data.container import SPLITS, Zoo

__all__ = ["SPLITS", "Zoo"]
