"""Floors every method must beat: a random map and a centre prior (both ignore model and target)."""

from __future__ import annotations

import torch

from ..models.classifier import Classifier
from ..causal.explainer import Explainer
from .registry import register_explainer


@register_explainer("random")
class RandomExplainer(Explainer):
    """I.i.d. uniform noise per pixel; a fresh draw on every call, reproducible from ``seed``."""

    def __init__(self, classifier: Classifier, seed: int = 0, batch_size: int | None = None) -> None:
        super().__init__(classifier, batch_size)
        self.generator = torch.Generator().manual_seed(seed)

    def resolve_targets(self, images: torch.Tensor, target) -> torch.Tensor:
        return torch.zeros(len(images), dtype=torch.long)  # the map ignores the target; skip the forward pass

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.rand(len(images), *images.shape[2:], generator=self.generator)


@register_explainer("centre")
class CentreExplainer(Explainer):
    """An isotropic Gaussian at the image centre, sigma = ``width`` x the shorter side: what a dataset's centre bias alone would score."""

    def __init__(self, classifier: Classifier, width: float = 0.25, batch_size: int | None = None) -> None:
        super().__init__(classifier, batch_size)
        _, h, w = classifier.input_shape
        ys = torch.arange(h, dtype=torch.float32) + 0.5 - h / 2
        xs = torch.arange(w, dtype=torch.float32) + 0.5 - w / 2
        sigma = width * min(h, w)
        self.prior = torch.exp(-(ys[:, None] ** 2 + xs[None, :] ** 2) / (2 * sigma**2))

    def resolve_targets(self, images: torch.Tensor, target) -> torch.Tensor:
        return torch.zeros(len(images), dtype=torch.long)  # the map ignores the target; skip the forward pass

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.prior.expand(len(images), -1, -1).clone()
