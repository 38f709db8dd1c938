"""Localisation of heat maps against ground-truth boxes.

Maps are B x H x W (higher = more important); ``boxes`` is one N x 4 (x0, y0, x1, y1) pixel
tensor per map (all boxes of the finding being explained). Every function returns one value
per map so callers can average, bootstrap or split as they like.

* pointing game (Zhang et al. 2018): is the map's maximum inside a box, within ``tolerance`` px;
* energy-based pointing game (Wang et al. 2020, Score-CAM): share of the map's positive mass inside the boxes;
* T(IoBB) accuracy (Wang et al. 2017, ChestX-ray8): threshold the map, take the bounding box of
  a connected region, and call the finding localised when intersection / detected-box area > T.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from ..causal.masks import box_mask
from ..errors import CemapError

IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)
REGIONS = ("peak", "all")


def pointing_game_hits(maps: torch.Tensor, boxes: Sequence[torch.Tensor], tolerance: float = 0.0) -> torch.Tensor:
    """B booleans: does each map's maximum fall inside (or within ``tolerance`` px of) one of its boxes?

    Ties at the maximum count as a hit when any tied pixel is inside (Zhang et al. 2018 take
    the first; a flat map would otherwise score by scan order).
    """
    hits = torch.zeros(len(boxes), dtype=torch.bool)
    for i, (m, bx) in enumerate(zip(maps, boxes)):
        if bx.numel() == 0:
            continue
        ys, xs = torch.nonzero(m == m.max(), as_tuple=True)
        px, py = xs.float() + 0.5, ys.float() + 0.5
        for x0, y0, x1, y1 in bx.reshape(-1, 4).tolist():
            dx = torch.clamp(torch.maximum(x0 - px, px - x1), min=0)
            dy = torch.clamp(torch.maximum(y0 - py, py - y1), min=0)
            if bool(((dx**2 + dy**2).sqrt() <= tolerance).any()):
                hits[i] = True
                break
    return hits


def box_masks(shape: tuple[int, int], boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """B x H x W: True inside any box of each map."""
    return torch.stack([box_mask(shape[0], shape[1], b) for b in boxes])


def mass_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """B shares of each map's positive mass that lies inside its mask (0 for a map with no positive mass)."""
    pos = maps.float().clamp_min(0)
    total = pos.sum(dim=(1, 2))
    inside = (pos * masks.float()).sum(dim=(1, 2))
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.zeros_like(total))


def energy_pointing(maps: torch.Tensor, boxes: Sequence[torch.Tensor]) -> torch.Tensor:
    """B energy-based pointing-game scores: positive mass inside the boxes / all positive mass."""
    _check(maps, boxes)
    return mass_share(maps, box_masks(tuple(maps.shape[1:]), boxes))


def detected_boxes(heat: torch.Tensor, level: float = 0.5, regions: str = "peak") -> torch.Tensor:
    """K x 4 boxes (x0, y0, x1, y1) around connected regions where the map reaches ``level`` x its maximum.

    ``regions='peak'`` keeps only the region holding the maximum (one box); ``'all'`` keeps every
    region, as ChestX-ray8 did. 'all' rewards speckled maps: any stray pixel inside the true box
    is a perfect detection, so a random map scores near 1 - use it only for comparison with Wang et al.
    """
    if regions not in REGIONS:
        raise CemapError(f"unknown regions rule {regions!r}", f"use one of {', '.join(REGIONS)}")
    m = heat.detach().float().cpu().numpy()
    peak = m.max()
    if not np.isfinite(peak) or peak <= 0:
        return torch.zeros(0, 4)
    labels, _ = ndimage.label(m >= level * peak, structure=np.ones((3, 3)))
    if regions == "peak":
        wanted = [int(labels[np.unravel_index(np.argmax(m), m.shape)])]
    else:
        wanted = list(range(1, labels.max() + 1))
    slices = ndimage.find_objects(labels)
    return torch.tensor([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in (slices[k - 1] for k in wanted)], dtype=torch.float32).reshape(-1, 4)


def iobb(detected: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """K x N intersection over detected-box area."""
    d, t = detected.reshape(-1, 1, 4), truth.reshape(1, -1, 4)
    w = (torch.minimum(d[..., 2], t[..., 2]) - torch.maximum(d[..., 0], t[..., 0])).clamp_min(0)
    h = (torch.minimum(d[..., 3], t[..., 3]) - torch.maximum(d[..., 1], t[..., 1])).clamp_min(0)
    area = ((d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])).clamp_min(1e-12)
    return w * h / area


def best_iobb(maps: torch.Tensor, boxes: Sequence[torch.Tensor], level: float = 0.5, regions: str = "peak") -> torch.Tensor:
    """B values: the largest IoBB between a detected box of each map and one of its true boxes (0 if none)."""
    _check(maps, boxes)
    out = torch.zeros(len(boxes))
    for i, (m, bx) in enumerate(zip(maps, boxes)):
        det = detected_boxes(m, level, regions)
        if len(det) and bx.numel():
            out[i] = iobb(det, bx.float()).max()
    return out


def iobb_accuracy(
    maps: torch.Tensor, boxes: Sequence[torch.Tensor], thresholds: Sequence[float] = IOBB_THRESHOLDS, level: float = 0.5, regions: str = "peak"
) -> dict[float, torch.Tensor]:
    """{T: B booleans}: is each finding localised with IoBB > T (ChestX-ray8's T(IoBB) accuracy is their mean)?"""
    scores = best_iobb(maps, boxes, level, regions)
    return {float(t): scores > t for t in thresholds}


def _check(maps: torch.Tensor, boxes: Sequence[torch.Tensor]) -> None:
    if maps.dim() != 3:
        raise CemapError(f"maps must be B x H x W, got shape {tuple(maps.shape)}")
    if len(boxes) != maps.shape[0]:
        raise CemapError(f"got {len(boxes)} box sets for {maps.shape[0]} maps", "pass one N x 4 tensor of boxes per map")
