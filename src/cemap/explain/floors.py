"""Floors every method must beat: a random map, a centre prior, and two image-only maps (edges, local contrast); all
ignore model and target."""

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
    """An isotropic Gaussian at the image centre, sigma = ``width`` x the shorter side: what a dataset's centre bias
    alone would score."""

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


@register_explainer("edge")
class EdgeExplainer(Explainer):
    """An image-only floor: the Sobel gradient magnitude of the image (channels summed) after a light blur - where the
    edges are, whatever the model and the target (Adebayo et al. 2018's edge detector). A metric this map wins measures
    the image, not the explanation."""

    def __init__(self, classifier: Classifier, sigma: float | None = None, batch_size: int | None = None) -> None:
        super().__init__(classifier, batch_size)
        self.sigma = sigma if sigma is not None else max(0.5, min(classifier.input_shape[1:]) / 128)

    def resolve_targets(self, images: torch.Tensor, target) -> torch.Tensor:
        return torch.zeros(len(images), dtype=torch.long)  # the map ignores the target; skip the forward pass

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        from ..causal.masks import gaussian_blur

        x = gaussian_blur(images.float().cpu(), self.sigma).sum(1, keepdim=True)
        kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
        padded = F.pad(x, [1, 1, 1, 1], mode="replicate")
        gx, gy = F.conv2d(padded, kx), F.conv2d(padded, kx.transpose(2, 3))
        return (gx**2 + gy**2).sqrt()[:, 0]


@register_explainer("contrast")
class LocalContrastExplainer(Explainer):
    """An image-only floor: how much brighter each pixel is than its neighbourhood (the image minus a Gaussian blur of
    sigma = ``width`` x the side, positive part) - a bright-blob detector. synthcxr's lesions are bright additive
    opacities, so this map localises them without looking at the model: a localisation metric it wins is
    uninformative."""

    def __init__(self, classifier: Classifier, width: float = 1 / 16, batch_size: int | None = None) -> None:
        super().__init__(classifier, batch_size)
        self.sigma = max(1.0, width * min(classifier.input_shape[1:]))

    def resolve_targets(self, images: torch.Tensor, target) -> torch.Tensor:
        return torch.zeros(len(images), dtype=torch.long)  # the map ignores the target; skip the forward pass

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from ..causal.masks import gaussian_blur

        x = images.float().cpu().sum(1, keepdim=True)
        return (x - gaussian_blur(x, self.sigma)).clamp_min(0)[:, 0]
