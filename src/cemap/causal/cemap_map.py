"""CE maps: the class causal effect of masking each cell of a grid, painted back onto the image.

All (image, cell) pairs are evaluated in chunks of a few dozen masked images; overlapping
cells are averaged per pixel. With zero fill and non-overlapping cells this is exactly
Captum's ``Occlusion`` on the predicted probability (same sign: higher = matters more).
"""

from __future__ import annotations

import torch

from ..models.classifier import Classifier
from .batching import autocast, chunks, default_chunk
from .effects import class_effect, resolve_targets
from .masks import fill_images, grid_masks


def default_cell(size: int) -> int:
    """About a 7 x 7 grid (the notebooks' 32-pixel cells on 224-pixel images)."""
    return max(2, size // 7)


def paint(effects: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """B x M effects onto M x H x W masks -> B x H x W, each pixel the mean over the cells covering it."""
    flat = masks.reshape(masks.shape[0], -1).float()
    total = effects.float() @ flat
    count = flat.sum(0).clamp_min(1)
    return (total / count).reshape(effects.shape[0], *masks.shape[1:])


class CEMap:
    """``attribute(images, target)`` -> B x H x W CE map."""

    def __init__(
        self,
        classifier: Classifier,
        cell: int | None = None,
        stride: int | None = None,
        fill: str | float = "zero",
        chunk_size: int | None = None,
        precision: str = "fp32",
        blur_sigma: float | None = None,
    ) -> None:
        _, h, w = classifier.input_shape
        self.classifier = classifier
        self.cell = cell or default_cell(min(h, w))
        self.stride = stride or self.cell
        self.masks = grid_masks(h, w, self.cell, self.stride)
        self.fill = fill
        self.blur_sigma = blur_sigma
        self.chunk_size = chunk_size or default_chunk(classifier.input_shape)
        self.precision = precision

    @property
    def forward_passes_per_image(self) -> int:
        return self.masks.shape[0] + 1

    @torch.inference_mode()
    def effects_for_masks(self, images: torch.Tensor, masks: torch.Tensor, target: int | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x M class CEs of masking each of ``masks`` in each image, the B targets used)."""
        images = self.classifier.check_images(images)
        b, m = images.shape[0], masks.shape[0]
        fills = fill_images(images, self.fill, self.blur_sigma)
        with autocast(self.precision):
            p = self.classifier.predict_proba(images).float()
            targets = resolve_targets(p, target)
            out = []
            for s in chunks(b * m, self.chunk_size):
                idx = torch.arange(s.start, s.stop)
                img, cell = idx // m, idx % m
                batch = torch.where(masks[cell, None], fills[img], images[img])
                out.append(self.classifier.predict_proba(batch).float())
        p_do = torch.cat(out).reshape(b, m, -1)
        return class_effect(p, p_do, targets), targets

    def attribute(self, images: torch.Tensor, target: int | torch.Tensor | None = None) -> torch.Tensor:
        effects, _ = self.effects_for_masks(images, self.masks, target)
        return paint(effects, self.masks)
