"""Datasets behind one registry. Importing this package registers the built-in ones."""

from .base import AttackBudgets, Batch, ImageDataset, Sample, collate
from .registry import get_dataset, list_datasets, register_dataset
from . import mnist  # noqa: F401  (registers mnist5k)
from . import imagefolder, nih, synthcxr  # noqa: F401  (registers imagefolder, nih, synthcxr)
from . import planted  # noqa: F401  (registers synthcxr-planted, mnist5k-planted)

__all__ = [
    "AttackBudgets",
    "Batch",
    "ImageDataset",
    "Sample",
    "collate",
    "get_dataset",
    "list_datasets",
    "register_dataset",
]
