"""Localisation of heat maps against ground-truth boxes."""

from __future__ import annotations

from typing import Sequence

import torch


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
