"""Explanation methods by name: ``list_explainers()`` says what exists, ``get_explainer`` builds one."""

from __future__ import annotations

from typing import Callable

from ..errors import unknown_name
from ..models.classifier import Classifier

_EXPLAINERS: dict[str, Callable] = {}


def register_explainer(name: str, replace: bool = False) -> Callable:
    """Class decorator registering an explanation method under ``name``; ``replace=True`` is required to take over a
    name already registered (``ce`` is: the paper's single grid registers first, the CE map chosen on train replaces it,
    keeping its place in :func:`list_explainers`)."""
    def wrap(cls):
        if name in _EXPLAINERS and not replace:
            raise ValueError(f"explanation method {name!r} is already registered (by {_EXPLAINERS[name].__name__})")
        cls.name = name
        _EXPLAINERS[name] = cls
        return cls

    return wrap


def list_explainers() -> list[str]:
    return list(_EXPLAINERS)


def get_explainer(name: str, classifier: Classifier, **kwargs):
    """Build method ``name`` for ``classifier``; kwargs are the method's options (cell, layer, n_steps, ...)."""
    if name not in _EXPLAINERS:
        raise unknown_name("explanation method", name, list(_EXPLAINERS))
    return _EXPLAINERS[name](classifier, **kwargs)
