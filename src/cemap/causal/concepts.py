"""What each concept channel Z_j of the latent autoencoder computes: its code maps and the causal effect of switching
it off, per image and class. How well those align with ground truth (AUROCs, energy inside the boxes, with
intervals) is measured by :mod:`cemap.evaluate.concepts`."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import CemapError
from ..models.classifier import Classifier
from .autoencoder import FittedAutoencoder
from .latent import LatentCE


def one_hot_labels(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """N x K {0, 1}: multi-hot labels as given, class indices one-hot."""
    labels = torch.as_tensor(labels)
    if labels.dim() == 2:
        if labels.shape[1] != n_classes:
            raise CemapError(f"labels have {labels.shape[1]} columns for {n_classes} classes")
        return (labels > 0).float()
    return F.one_hot(labels.long().reshape(-1), n_classes).float()


@torch.inference_mode()
def channel_codes(
    classifier: Classifier, fitted: FittedAutoencoder, images: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """N x k x h x w: the code Z = E(g(x)) of every image, on the images' device."""
    images = classifier.check_images(images)
    out = []
    for s in range(0, len(images), batch_size):
        act, _ = fitted.split.activation(images[s : s + batch_size])
        out.append(fitted.autoencoder.encode(act)[0].float().to(images.device))
    return torch.cat(out)


def upsample(codes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Code maps (... x h x w) bilinearly resized to the image (... x H x W), kept non-negative."""
    lead = codes.shape[:-2]
    flat = codes.reshape(-1, 1, *codes.shape[-2:]).float()
    return F.interpolate(flat, size=size, mode="bilinear", align_corners=False).clamp_min(0).reshape(*lead, *size)


@torch.inference_mode()
def latent_class_effects(
    classifier: Classifier,
    fitted: FittedAutoencoder,
    images: torch.Tensor,
    value: str | float = "zero",
    batch_size: int = 32,
) -> torch.Tensor:
    """N x k x K: class CE of do(Z_j = value) on every class, p_AE(c|x) - p_AE(c|x, do(Z_j = value))."""
    latent = LatentCE(classifier, fitted, value=value)
    out = []
    for s in range(0, len(images), batch_size):
        p, p_do = latent.intervened_probs(classifier.check_images(images[s : s + batch_size]))
        out.append((p[:, None] - p_do).float())
    return torch.cat(out)
