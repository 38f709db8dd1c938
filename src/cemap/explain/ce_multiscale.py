"""``ce-ms``: the CE map with issue 16's options - several cell sizes and offsets averaged, log-odds effects.

Registered beside ``ce`` (whose defaults stay the paper's single grid on the probability scale).
Options: ``cells`` (cell sizes, each with a half-cell stride), ``effect_scale`` ('log_odds' or
'probability'), ``fill`` (zero, mean, blur, max or a number, e.g. the train set's mean grey
level), ``precision``, ``chunk_size``. Defaults are the settings chosen on synthcxr's *train*
split for the issue-16 benchmark (see :mod:`cemap.studies.evaluation`).
"""

from __future__ import annotations

import torch

from ..causal.cemap_map import CEMap
from ..models.classifier import Classifier
from ..causal.explainer import Explainer
from .registry import register_explainer


def default_cells(size: int) -> tuple[int, ...]:
    """About 1/10, 1/7 and 1/5 of the image side (6, 9 and 12 px at 64; 12, 18 and 25 at 128)."""
    return tuple(sorted({max(2, round(size / d)) for d in (10, 7, 5)}))


@register_explainer("ce-ms")
class MultiScaleCEExplainer(Explainer):
    """CE map averaged over ``cells`` (half-cell strides), effects on ``effect_scale``, masked with ``fill``."""

    def __init__(
        self,
        classifier: Classifier,
        cells: tuple[int, ...] | None = None,
        effect_scale: str = "log_odds",
        fill: str | float = "blur",
        blur_sigma: float | None = None,
        chunk_size: int | None = None,
        precision: str = "fp32",
        batch_size: int = 64,
    ) -> None:
        super().__init__(classifier, batch_size)
        cells = tuple(cells) if cells else default_cells(min(classifier.input_shape[1:]))
        self.cemap = CEMap(
            classifier,
            fill=fill,
            chunk_size=chunk_size,
            precision=precision,
            blur_sigma=blur_sigma,
            cells=cells,
            effect_scale=effect_scale,
        )

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.cemap.attribute(images, targets)
