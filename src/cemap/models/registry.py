"""Models by name: ``list_models()`` says what exists, ``get_model`` builds a ready Classifier."""

from __future__ import annotations

import inspect
from typing import Callable

from ..errors import CemapError, unknown_name
from .classifier import Classifier

_MODELS: dict[str, Callable[..., Classifier]] = {}
_DEFAULT_DATASET: dict[str, str] = {}
_FAMILIES: list[
    Callable[[], dict[str, Callable[..., Classifier]]]
] = []  # named on first use (their library imports lazily)


def register_model(
    name: str, dataset: str | None = None
) -> Callable[[Callable[..., Classifier]], Callable[..., Classifier]]:
    """Register a factory ``(**kwargs) -> Classifier``; ``dataset`` names the built-in data it is trained on."""

    def wrap(factory: Callable[..., Classifier]) -> Callable[..., Classifier]:
        _MODELS[name] = factory
        if dataset:
            _DEFAULT_DATASET[dataset] = name
        return factory

    return wrap


def register_model_family(names: Callable[[], dict[str, Callable[..., Classifier]]]) -> None:
    """Register models whose names come from a library that is only imported when a model list is needed."""
    _FAMILIES.append(names)


def _named_families() -> None:
    while _FAMILIES:
        _MODELS.update(_FAMILIES.pop(0)())


def list_models() -> list[str]:
    _named_families()
    return sorted(_MODELS)


def model_factory(name: str) -> Callable[..., Classifier]:
    """The factory registered as ``name`` (its parameters are the model's options); an unknown name lists the valid
    ones."""
    if name not in _MODELS:
        _named_families()
    if name not in _MODELS:
        raise unknown_name("model", name, list_models())
    return _MODELS[name]


def get_model(name: str, train_seed: int = 0, **kwargs) -> Classifier:
    """The model ``name`` built with ``kwargs``; ``train_seed`` > 0 trains (and caches) another copy of a model cemap
    trains, from that seed - a study repeated over trainings; 0 is the model itself."""
    factory = model_factory(name)
    if train_seed:
        if "train_config" not in inspect.signature(factory).parameters:
            raise CemapError(
                f"model {name} is not trained by cemap, so it has no training seed",
                "drop --train-seed, or use a built-in model (cemap models)",
            )
        kwargs["train_config"] = {**(kwargs.get("train_config") or {}), "seed": train_seed}
    return factory(**kwargs)


def builtin_models() -> dict[str, str]:
    """Built-in dataset -> the model trained on it (mnist5k -> mnist-cnn, ...)."""
    return dict(_DEFAULT_DATASET)


def default_model_for(dataset: str) -> str:
    """The built-in model that goes with a built-in dataset (mnist5k -> mnist-cnn, ...)."""
    if dataset not in _DEFAULT_DATASET:
        raise unknown_name("built-in dataset", dataset, list(_DEFAULT_DATASET))
    return _DEFAULT_DATASET[dataset]
