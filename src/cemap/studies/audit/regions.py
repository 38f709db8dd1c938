"""Region interventions aggregated over the audited images: where, across images, masking changes decisions.

Every cell of a ``grid`` x ``grid`` partition of the image is replaced in every audited image and all findings'
probabilities are read. The default fill, ``swap``, is do(X_R = X'_R): the same cell from another audited image
(drawn at random among those whose cell touches no annotated finding), so the intervention stays in the data's own
distribution - it removes whatever the cell holds and brings in what other images hold there; ``blur``, ``mean``,
``zero`` and numbers are the usual fills. Three summaries:

* per cell, over the images where the cell touches no annotated finding, the mean absolute probability change
  (one Effect per cell, "outside findings"; with no annotations, over all images), and the grid of these means;
* per (image, present finding) pair with boxes, the share of the finding's total masking effect that lies in
  cells outside its boxes, beside the share of the image those cells cover.

These say where the model is *sensitive*; which region *carries* its decisions beyond the findings is
:mod:`.transfer`'s question.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...causal.masks import apply_masks, fill_images, grid_masks, grid_positions
from ...evaluate.bootstrap import Interval, bootstrap_mean
from .effects import Effect, predict, summarise


@dataclass
class RegionSummary:
    effects: list[Effect]
    cell_map: list[list[float]]  # grid x grid mean effect (outside findings), for the figure
    outside_share: Interval | None  # share of each finding's masking effect outside its boxes
    outside_area: float | None  # share of the image those cells cover, on average

    def to_json(self) -> dict:
        return {
            "cell_map": self.cell_map,
            "outside_share": None if self.outside_share is None else self.outside_share.to_json(),
            "outside_area": self.outside_area,
        }


def donors(avoid: np.ndarray, seed: int) -> np.ndarray:
    """N x M: for image i and cell m, another image whose cell m touches no finding (any other image if none does)."""
    rng = np.random.default_rng(seed)
    n, m = avoid.shape
    out = np.empty((n, m), dtype=np.int64)
    for j in range(m):
        pool = np.flatnonzero(avoid[:, j])
        pool = pool if len(pool) > 1 else np.arange(n)
        pick = rng.integers(0, len(pool), size=n)
        same = pool[pick] == np.arange(n)
        pick[same] = (pick[same] + 1) % len(pool)  # never the image itself
        out[:, j] = pool[pick]
    return out


def masked_probabilities(
    classifier, images: torch.Tensor, masks: torch.Tensor, fill: str, donor: np.ndarray | None = None
) -> np.ndarray:
    """N x M x K probabilities of each image with each of the M masks applied (``donor``: N x M source images for
    'swap')."""
    if fill == "swap":
        out = []
        for i, img in enumerate(images):
            out.append(predict(classifier, torch.where(masks[:, None], images[donor[i]], img[None])))
        return np.stack(out)
    fills = fill_images(images, fill)
    return np.stack([predict(classifier, apply_masks(img, f, masks)) for img, f in zip(images, fills)])


def region_effects(
    classifier,
    images: torch.Tensor,
    p0: np.ndarray,
    y: np.ndarray | None,
    boxes_by_finding: list[list[torch.Tensor]] | None,
    grid: int,
    fill: str = "swap",
    seed: int = 0,
) -> RegionSummary:
    """Region effects (see the module docstring). ``boxes_by_finding[i][k]``: image i's boxes of finding k (N x 4), or
    None."""
    n, _, h, w = images.shape
    cell = max(1, min(h, w) // grid)
    masks = grid_masks(h, w, cell)
    touches = _touches(masks, boxes_by_finding, n)  # N x M x K: cell m overlaps a box of finding k in image i
    avoid = ~touches.any(2)  # N x M: the cell touches no finding
    pm = masked_probabilities(
        classifier, images, masks, fill, donors(avoid, seed) if fill == "swap" else None
    )  # N x M x K
    names, head = classifier.class_names, classifier.head
    effects = []
    side = len(grid_positions(w, cell, cell))  # cells per row
    rows_count = len(grid_positions(h, cell, cell))
    scope = "outside findings" if boxes_by_finding else "whole image"
    for m in range(len(masks)):
        r, c = divmod(m, side)
        rows = avoid[:, m] if avoid[:, m].any() else None
        effects.append(
            summarise(
                "region",
                f"cell r{r} c{c} of {rows_count}x{side}",
                scope,
                p0,
                pm[:, m],
                names,
                head,
                y,
                rows=rows,
                seed=seed,
                with_auroc=False,
                footprint=float(masks[m].float().mean()),
            )
        )
    cell_map = np.array([e.effect.estimate for e in effects]).reshape(-1, side)
    share, area = _outside_share(pm, p0, touches)
    return RegionSummary(effects, np.round(cell_map, 4).tolist(), share, area)


def _touches(masks: torch.Tensor, boxes_by_finding, n: int) -> np.ndarray:
    from ...causal.masks import box_mask

    k = len(boxes_by_finding[0]) if boxes_by_finding else 1
    out = np.zeros((n, len(masks), k), dtype=bool)
    if not boxes_by_finding:
        return out
    h, w = masks.shape[1:]
    flat = masks.reshape(len(masks), -1)
    for i, per_finding in enumerate(boxes_by_finding):
        for j, b in enumerate(per_finding):
            if b is not None and b.numel():
                out[i, :, j] = (flat & box_mask(h, w, b).reshape(1, -1)).any(1).numpy()
    return out


def _outside_share(pm: np.ndarray, p0: np.ndarray, touches: np.ndarray) -> tuple[Interval | None, float | None]:
    """Share of each present finding's total masking effect in cells outside its boxes (pairs with boxes only)."""
    shares, areas = [], []
    for i in range(len(p0)):
        for k in range(touches.shape[2]):
            inside = touches[i, :, k]
            if not inside.any():
                continue
            eff = np.abs(pm[i, :, k] - p0[i, k])
            if eff.sum() > 0:
                shares.append(eff[~inside].sum() / eff.sum())
                areas.append((~inside).mean())
    if not shares:
        return None, None
    return bootstrap_mean(np.array(shares)), float(np.mean(areas))
