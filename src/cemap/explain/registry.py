"""Explanation methods by name: ``list_explainers()`` says what exists, ``get_explainer`` builds one."""

from __future__ import annotations

from typing import Any, Callable

from ..causal.explainer import Explainer
from ..errors import unknown_name
from ..models.classifier import Classifier

_EXPLAINERS: dict[str, tuple[type[Explainer], dict[str, Any]]] = {}


def register_explainer(name: str, **defaults: Any) -> Callable[[type[Explainer]], type[Explainer]]:
    """Class decorator: make ``cls`` buildable as ``get_explainer(name, classifier, **options)``; ``defaults`` are
    options the registered method gets unless the caller gives them."""

    def wrap(cls: type[Explainer]) -> type[Explainer]:
        cls.name = name
        _EXPLAINERS[name] = (cls, defaults)
        return cls

    return wrap


def list_explainers() -> list[str]:
    return list(_EXPLAINERS)


def get_explainer(name: str, classifier: Classifier, **options: Any) -> Explainer:
    """Build method ``name`` for ``classifier``; ``options`` are the method's own (cell, layer, n_steps, ...)."""
    if name not in _EXPLAINERS:
        raise unknown_name("explanation method", name, list(_EXPLAINERS))
    cls, defaults = _EXPLAINERS[name]
    return cls(classifier, **{**defaults, **options})
