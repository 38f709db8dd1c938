"""RISE (Petsiuk et al., BMVC 2018): randomised input sampling for explanation.

``n_masks`` random binary ``grid`` x ``grid`` masks (each cell kept with probability ``p``) are
upsampled bilinearly to (grid + 1) cells of ceil(H / grid) px, shifted by a random offset of up
to one cell and cropped to H x W, giving smooth masks in [0, 1]. The map is the
probability-weighted sum of the masks, sum_n P(target | image * mask_n) mask_n / (n_masks * p):
pixels that are kept when the target stays probable score high. Masked pixels go to 0
(multiplicative masking, as the paper does).

Masks come from a seeded ``torch.Generator`` (``seed``), are drawn once per explainer and shared
by every image (a sanity check must give the randomised model's explainer another ``seed``, or the
two maps share their masks by construction); (image, mask) pairs are evaluated in chunks of
``chunk_size`` images per forward pass, every class at once, each distinct image once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..causal.batching import default_chunk
from ..models.classifier import Classifier
from ..causal.explainer import Explainer
from .registry import register_explainer


def rise_masks(
    n: int, height: int, width: int, grid: int = 8, p: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """n x H x W smooth RISE masks in [0, 1] (Petsiuk et al.'s generator, with a seeded ``generator``)."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    cell_h, cell_w = math.ceil(height / grid), math.ceil(width / grid)
    binary = (torch.rand(n, 1, grid, grid, generator=g) < p).float()
    up = F.interpolate(binary, size=((grid + 1) * cell_h, (grid + 1) * cell_w), mode="bilinear", align_corners=False)[
        :, 0
    ]
    dy = torch.randint(0, cell_h, (n,), generator=g)
    dx = torch.randint(0, cell_w, (n,), generator=g)
    rows = (dy[:, None] + torch.arange(height)[None])[:, :, None].expand(n, height, width)
    cols = (dx[:, None] + torch.arange(width)[None])[:, None, :].expand(n, height, width)
    return up[torch.arange(n)[:, None, None], rows, cols].clamp(0, 1)


@register_explainer("rise")
class RISEExplainer(Explainer):
    """RISE with ``n_masks`` masks of a ``grid`` x ``grid`` grid, keep probability ``p``, drawn from ``seed``."""

    def __init__(
        self,
        classifier: Classifier,
        n_masks: int = 1000,
        grid: int = 8,
        p: float = 0.5,
        seed: int = 0,
        batch_size: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(classifier, batch_size)
        _, h, w = classifier.input_shape
        self.n_masks, self.grid, self.p = n_masks, grid, p
        self.masks = rise_masks(n_masks, h, w, grid, p, torch.Generator().manual_seed(seed))
        self.chunk_size = chunk_size or default_chunk(classifier.input_shape)

    @torch.inference_mode()
    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from ..causal.cemap_map import distinct_images

        distinct, inverse = distinct_images(
            images
        )  # an image asked for several targets is masked once, all classes at once
        b = len(distinct)
        probs = torch.zeros(b, self.n_masks, self.classifier.num_classes)
        per = max(1, self.chunk_size // b)  # masks per forward pass: ~chunk_size masked images
        for start in range(0, self.n_masks, per):
            m = self.masks[start : start + per].to(distinct.device)
            batch = (distinct[:, None] * m[None, :, None]).reshape(-1, *distinct.shape[1:])
            probs[:, start : start + len(m)] = self.classifier.predict_proba(batch).float().reshape(b, len(m), -1).cpu()
        scores = probs[inverse.cpu(), :, targets.cpu()]  # B x n_masks: each input's target
        return (scores @ self.masks.reshape(self.n_masks, -1)).reshape(len(images), *self.masks.shape[1:]) / (
            self.n_masks * self.p
        )
