"""Robustness of explanations: a map should barely move when the image barely moves.

Score = Spearman rank correlation between the map of an image and the map of the same image
under a small perturbation (Gaussian noise, or an FGSM step that attacks the model), for the
same target. Higher = more stable. Ranks are average ranks, so the flat zero regions of a
ReLU'd CAM tie instead of being ordered arbitrarily.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import rankdata

from ..models.classifier import Classifier


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """B rank correlations between paired maps (NaN where a map is constant)."""
    ra = rankdata(a.reshape(a.shape[0], -1).double().numpy(), axis=1)
    rb = rankdata(b.reshape(b.shape[0], -1).double().numpy(), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(1) / denom
    return torch.from_numpy(np.where(denom > 0, rho, np.nan)).float()


def gaussian_noise(images: torch.Tensor, sigma: float, seed: int = 0) -> torch.Tensor:
    """``images`` + N(0, sigma^2) per pixel, clipped to [0, 1]; reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return (images + sigma * torch.randn(images.shape, generator=g)).clamp(0, 1)


def noise_stability(
    explainer,
    images: torch.Tensor,
    targets: torch.Tensor,
    maps: torch.Tensor | None = None,
    sigma: float = 0.02,
    seed: int = 0,
) -> torch.Tensor:
    """B rank correlations between maps of clean and noisy images (``maps``: the clean ones, if already computed)."""
    clean = maps if maps is not None else explainer.attribute(images, targets)
    return spearman(clean, explainer.attribute(gaussian_noise(images, sigma, seed), targets))


def fgsm_images(classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    """One untargeted FGSM step of size ``eps`` (cemap.attacks) against each image's explained class or finding."""
    from ..attacks import FGSM  # lazy: attacks sit beside explain, not below it

    return FGSM(classifier, eps=eps)(images, labels=targets).adversarial.detach()


def fgsm_stability(
    explainer, images: torch.Tensor, targets: torch.Tensor, maps: torch.Tensor | None = None, eps: float = 2 / 255
) -> torch.Tensor:
    """B rank correlations between maps of clean images and of their FGSM(eps) versions."""
    clean = maps if maps is not None else explainer.attribute(images, targets)
    return spearman(clean, explainer.attribute(fgsm_images(explainer.classifier, images, targets, eps), targets))
