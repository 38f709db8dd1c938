"""The sidecar of a checkpoint: ``<weights>.cemap.json``, the inputs and classes the weights were trained with.

A state dict holds tensors only; the input size, channels, normalisation and class names that make
its outputs right live nowhere. ``cemap export`` writes them next to the weights file, and every
command that loads those weights reads them back, so the user gives them once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CemapError
from .classifier import Classifier
from .preprocessing import describe

SUFFIX = ".cemap.json"


@dataclass(frozen=True)
class Sidecar:
    """What a sidecar records; ``mean``/``std`` None: the architecture's own preprocessing."""

    architecture: str
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    model_options: dict = field(default_factory=dict)  # e.g. head=sigmoid

    @property
    def size(self) -> int:
        return self.input_shape[1]


def sidecar_path(weights: str | Path) -> Path:
    return Path(str(weights) + SUFFIX)


def write_sidecar(weights: str | Path, classifier: Classifier, architecture: str, model_options: dict) -> Path:
    """Write ``<weights>.cemap.json`` for ``classifier`` as built from ``architecture`` and ``model_options``."""
    pre = describe(classifier)
    record = Sidecar(
        architecture=architecture,
        input_shape=tuple(classifier.input_shape),
        class_names=tuple(classifier.class_names),
        mean=None if pre["mean"] is None else tuple(pre["mean"]),
        std=None if pre["std"] is None else tuple(pre["std"]),
        model_options={k: v for k, v in model_options.items() if k not in ("weights", "size", "class_names")},
    )
    path = sidecar_path(weights)
    path.write_text(json.dumps(asdict(record), indent=2) + "\n")
    return path


def read_sidecar(weights: str | Path | None) -> tuple[Sidecar, Path] | None:
    """The sidecar of ``weights`` and its path, or None when there is none; a damaged one is a CemapError."""
    if weights is None:
        return None
    path = sidecar_path(weights)
    if not path.is_file():
        return None
    hint = f"re-create it with cemap export, or delete {path}"
    try:
        raw = json.loads(path.read_text())
        shape = tuple(int(v) for v in raw["input_shape"])
        record = Sidecar(
            architecture=str(raw["architecture"]),
            input_shape=shape,  # type: ignore[arg-type]
            class_names=tuple(str(n) for n in raw["class_names"]),
            mean=None if raw.get("mean") is None else tuple(float(v) for v in raw["mean"]),
            std=None if raw.get("std") is None else tuple(float(v) for v in raw["std"]),
            model_options=dict(raw.get("model_options") or {}),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CemapError(f"cannot read {path} ({type(exc).__name__}: {exc})", hint) from exc
    if len(shape) != 3 or min(shape) < 1 or (record.mean is None) != (record.std is None):
        raise CemapError(f"{path} is not a valid sidecar (input_shape {list(shape)}, mean and std)", hint)
    return record, path
