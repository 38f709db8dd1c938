"""Datasets by name, timm-style: ``list_datasets()`` says what exists, ``get_dataset`` builds one."""

from __future__ import annotations

from typing import Callable

from ..errors import unknown_name
from .base import ImageDataset

_DATASETS: dict[str, Callable[..., ImageDataset]] = {}


def register_dataset(name: str) -> Callable[[Callable[..., ImageDataset]], Callable[..., ImageDataset]]:
    def wrap(factory: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        _DATASETS[name] = factory
        return factory

    return wrap


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def dataset_factory(name: str) -> Callable[..., ImageDataset]:
    """The factory registered as ``name`` (its parameters are the dataset's options); an unknown name lists the valid
    ones."""
    if name not in _DATASETS:
        raise unknown_name("dataset", name, list_datasets())
    return _DATASETS[name]


def get_dataset(name: str, split: str = "test", **kwargs) -> ImageDataset:
    """Build dataset ``name`` for ``split`` ('train' or 'test'); extra kwargs go to its factory."""
    return dataset_factory(name)(split=split, **kwargs)
