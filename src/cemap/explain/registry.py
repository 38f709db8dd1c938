"""Explanation methods by name: ``list_explainers()`` says what exists, ``get_explainer`` builds one."""

from __future__ import annotations

from typing import Callable

from ..errors import unknown_name
from ..models.classifier import Classifier

_EXPLAINERS: dict[str, Callable] = {}


def register_explainer(name: str) -> Callable:
    def wrap(cls):
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
