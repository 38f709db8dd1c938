"""A model built with the inputs it expects: explicit options beat the checkpoint's sidecar, which beats the
model's defaults.

Every source is named in the record (``LoadedModel.preprocessing``), so an output says where its
input size and normalisation came from; an option that overrides the sidecar is kept, with a note
the command prints as a warning.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import CemapError, check_options
from .classifier import Classifier
from .preprocessing import NORMALIZATIONS, describe, probe, same_values, set_normalization
from .registry import model_factory
from .sidecar import Sidecar, read_sidecar


@dataclass(frozen=True)
class ModelInputs:
    """The command line's say on a model's inputs; None: not given."""

    size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    normalize: str | None = None  # a key of NORMALIZATIONS
    class_names: tuple[str, ...] | None = None

    def check(self) -> "ModelInputs":
        """Refuse impossible or contradictory values before any work."""
        if self.size is not None and self.size < 1:
            raise CemapError(
                f"--size {self.size} must be positive", "the model's input side in pixels, e.g. --size 224"
            )
        if self.normalize is not None and self.normalize not in NORMALIZATIONS:
            raise CemapError(f"unknown --normalize {self.normalize!r}", f"use one of {', '.join(NORMALIZATIONS)}")
        if self.normalize is not None and (self.mean is not None or self.std is not None):
            raise CemapError(
                f"--normalize {self.normalize} and --mean/--std both given", "give either --normalize or --mean/--std"
            )
        if (self.mean is None) != (self.std is None):
            raise CemapError("--mean and --std go together", "give both, e.g. --mean 0.5 --std 0.25")
        if self.class_names is not None and len(set(self.class_names)) != len(self.class_names):
            raise CemapError("--class-names repeats a name", "give each class once, in the model's output order")
        return self

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        if self.normalize is not None:
            return NORMALIZATIONS[self.normalize]
        return (self.mean, self.std) if self.mean is not None and self.std is not None else None

    def as_dict(self) -> dict[str, Any]:
        """The options given (for a run's config.json), lists instead of tuples."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "ModelInputs":
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in (d or {}).items()})


@dataclass
class LoadedModel:
    """A ready classifier, the preprocessing it applies (with the source of each part) and notes to show."""

    classifier: Classifier
    name: str
    options: dict  # what the factory was given (weights, size, ...)
    preprocessing: dict
    notes: list[str] = field(default_factory=list)


def model_name(name: str | None, weights: Any) -> str:
    """``name``, or the architecture the weights' sidecar names; a sidecar of another architecture is refused."""
    found = read_sidecar(weights) if isinstance(weights, str) and weights != "random" else None
    if found is not None and name is not None and found[0].architecture != name:
        raise CemapError(
            f"--model {name} but {found[1]} says the weights are a {found[0].architecture}",
            f"pass --model {found[0].architecture}, or leave --model out",
        )
    if name is None:
        if found is None:
            raise CemapError("no --model given", "pass --model NAME (cemap models lists them)")
        return found[0].architecture
    return name


def expected_size(name: str, options: dict, inputs: ModelInputs) -> int | None:
    """The input side the model will have, without building it (building may train it): the options', the
    sidecar's or the factory's default ``size``; None when only the built model knows."""
    size, _, _ = _size(options, inputs, _sidecar(options))
    if size is None:
        default = _params(model_factory(name)).get("size")
        size = default.default if default is not None and isinstance(default.default, int) else None
    return size


def load_model(name: str | None, options: dict, inputs: ModelInputs = ModelInputs()) -> LoadedModel:
    """Build model ``name`` (or the sidecar's architecture) with ``options`` (weights=FILE, size=N, ...), its inputs
    set from ``inputs``, the sidecar and its defaults, and run it once (``probe``) so a model that cannot take those
    inputs, returns NaN or has another number of outputs than class names is refused before any work."""
    inputs.check()
    options = dict(options)
    name = model_name(name, options.get("weights"))
    factory = model_factory(name)
    params = _params(factory)
    if "weights" in options and "weights" not in params:
        raise CemapError(
            f"model {name!r} does not take a weights file",
            "drop --weights (torchxrayvision models read theirs from ~/.torchxrayvision/models_data/)",
        )
    found = _sidecar(options)
    sidecar, path = found if found is not None else (None, None)
    if sidecar is not None:
        options = {**sidecar.model_options, **options}
    check_options("model", name, factory, options)
    size, size_from, notes = _size(options, inputs, found)
    if size is not None and "size" in params:
        options["size"] = size
    clf = factory(**options)
    sources = {"size": size_from if size is not None else "model default"}
    if size is not None and tuple(clf.input_shape[1:]) != (size, size):
        clf.input_shape = (clf.input_shape[0], size, size)
    if sidecar is not None and sidecar.input_shape[0] != clf.input_shape[0]:
        raise CemapError(
            f"{path} says {sidecar.input_shape[0]} channel(s) but model {name} takes {clf.input_shape[0]}",
            "re-create the sidecar with cemap export for this model",
        )
    sources["normalize"] = _normalization(clf, inputs, sidecar, path, notes)
    sources["class_names"] = _class_names(clf, inputs, sidecar, path, notes)
    outputs = probe(clf)
    if outputs != clf.num_classes:
        given = {"--class-names": "--class-names gives", "sidecar": f"{path} lists"}.get(sources["class_names"])
        raise CemapError(
            f"{given or f'model {name} has'} {clf.num_classes} class names but the network has {outputs} outputs",
            "give one class name per output, in the model's output order",
        )
    return LoadedModel(clf, name, options, {**describe(clf), "sources": sources}, notes)


def _params(factory) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(factory).parameters)
    except (TypeError, ValueError):
        return {}


def _sidecar(options: dict) -> tuple[Sidecar, Any] | None:
    weights = options.get("weights")
    return read_sidecar(weights) if isinstance(weights, str) and weights != "random" else None


def _size(options: dict, inputs: ModelInputs, found) -> tuple[int | None, str, list[str]]:
    """(size, where it came from, notes): --size and --model-opt size must agree; either beats the sidecar."""
    opt = options.get("size")
    if inputs.size is not None and opt is not None and int(opt) != inputs.size:
        raise CemapError(f"--size {inputs.size} but --model-opt size={opt}", "give the size once")
    explicit, source = (inputs.size, "--size") if inputs.size is not None else (opt, "--model-opt size")
    if explicit is None:
        return (found[0].size, "sidecar", []) if found is not None else (None, "", [])
    notes = []
    if found is not None and found[0].size != int(explicit):
        notes.append(f"{source} {explicit} overrides the {found[0].size} px in {found[1]}")
    return int(explicit), source, notes


def _normalization(clf: Classifier, inputs: ModelInputs, sidecar: Sidecar | None, path, notes: list[str]) -> str:
    given = inputs.normalization()
    if given is not None:
        if (
            sidecar is not None
            and sidecar.mean is not None
            and not (same_values(given[0], sidecar.mean) and same_values(given[1], sidecar.std))
        ):
            notes.append(f"--normalize/--mean/--std override the normalisation in {path}")
        set_normalization(clf, *given)
        return "--normalize" if inputs.normalize is not None else "--mean/--std"
    if sidecar is not None and sidecar.mean is not None:
        set_normalization(clf, sidecar.mean, sidecar.std)
        return "sidecar"
    return "model default"


def _class_names(clf: Classifier, inputs: ModelInputs, sidecar: Sidecar | None, path, notes: list[str]) -> str:
    if inputs.class_names is not None:
        if sidecar is not None and tuple(sidecar.class_names) != inputs.class_names:
            notes.append(f"--class-names override the class names in {path}")
        clf.class_names = list(inputs.class_names)
        return "--class-names"
    if sidecar is not None:
        clf.class_names = list(sidecar.class_names)
        return "sidecar"
    return "model default"
