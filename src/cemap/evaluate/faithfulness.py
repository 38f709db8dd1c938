"""Deletion and insertion (Petsiuk et al. 2018, RISE): does removing what a map calls important hurt the model?

Deletion replaces pixels with ``deletion_fill`` (black) from the most to the least important and
records the target's score after each step: a faithful map makes it fall fast (low AUC).
Insertion starts from ``insertion_fill`` (a blurred copy) and puts the original pixels back in
the same order: a faithful map makes it rise fast (high AUC). The curve has ``steps + 1``
points over the fraction of pixels changed, 0..1; the AUC is the trapezoid rule over it.

Every (image, step) pair is one masked image; they are evaluated in chunks of ``chunk_size``
across all images, never one forward pass per step.
"""

from __future__ import annotations

import torch

from ..causal.batching import chunks, default_chunk
from ..causal.masks import fill_images
from ..errors import CemapError
from ..models.classifier import Classifier

OUTPUTS = ("probability", "logit")


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """B x H x W: 0 for each map's most important pixel, H*W - 1 for its least (ties in scan order)."""
    flat = maps.reshape(maps.shape[0], -1).float()
    order = torch.argsort(-flat, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks.reshape(maps.shape)


def _scores(classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, output: str) -> torch.Tensor:
    logits = classifier(images)
    values = logits if output == "logit" else classifier.probabilities(logits)
    return values.gather(1, targets.view(-1, 1)).squeeze(1).float()


@torch.inference_mode()
def perturbation_curves(
    classifier: Classifier,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    steps: int = 16,
    output: str = "probability",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """B x (steps + 1) target scores as the map's top pixels move from ``start`` to ``end`` (both B x C x H x W)."""
    if output not in OUTPUTS:
        raise CemapError(f"unknown output {output!r}", f"use one of {', '.join(OUTPUTS)}")
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise CemapError(f"maps of shape {tuple(maps.shape)} do not match images {tuple(images.shape)}", "pass one H x W map per image")
    b, n = images.shape[0], maps[0].numel()
    ranks = pixel_ranks(maps)
    counts = torch.round(torch.linspace(0, n, steps + 1)).long()
    chunk_size = chunk_size or default_chunk(tuple(images.shape[1:]))
    total = b * (steps + 1)
    out = []
    for s in chunks(total, chunk_size):
        idx = torch.arange(s.start, s.stop)
        img, step = idx // (steps + 1), idx % (steps + 1)
        changed = (ranks[img] < counts[step, None, None])[:, None]
        out.append(_scores(classifier, torch.where(changed, end[img], start[img]), targets[img], output))
    return torch.cat(out).reshape(b, steps + 1)


def curve_auc(curves: torch.Tensor) -> torch.Tensor:
    """B areas under curves sampled evenly over [0, 1] (trapezoid rule)."""
    x = torch.linspace(0, 1, curves.shape[1])
    return torch.trapezoid(curves, x, dim=1)


def deletion_auc(
    classifier: Classifier, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, steps: int = 16,
    fill: str | float = "zero", output: str = "probability", chunk_size: int | None = None,
) -> torch.Tensor:
    """B deletion AUCs (lower = more faithful)."""
    curves = perturbation_curves(classifier, images, maps, targets, images, fill_images(images, fill), steps, output, chunk_size)
    return curve_auc(curves)


def insertion_auc(
    classifier: Classifier, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor, steps: int = 16,
    fill: str | float = "blur", output: str = "probability", chunk_size: int | None = None,
) -> torch.Tensor:
    """B insertion AUCs (higher = more faithful)."""
    curves = perturbation_curves(classifier, images, maps, targets, fill_images(images, fill), images, steps, output, chunk_size)
    return curve_auc(curves)
