"""CE maps (cemap.causal.CEMap) behind the shared explainer signature."""

from __future__ import annotations

import torch

from ..causal.cemap_map import CEMap
from ..models.classifier import Classifier
from .base import Explainer
from .registry import register_explainer


@register_explainer("ce")
class CEExplainer(Explainer):
    """Class causal effect of filling each grid cell with ``fill``: the target's probability drop, painted back."""

    def __init__(
        self,
        classifier: Classifier,
        cell: int | None = None,
        stride: int | None = None,
        fill: str | float = "zero",
        blur_sigma: float | None = None,
        chunk_size: int | None = None,
        precision: str = "fp32",
        batch_size: int = 64,
    ) -> None:
        super().__init__(classifier, batch_size)
        self.cemap = CEMap(classifier, cell=cell, stride=stride, fill=fill, chunk_size=chunk_size, precision=precision, blur_sigma=blur_sigma)

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.cemap.attribute(images, targets)
