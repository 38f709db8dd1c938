"""Placing lesion boxes: size, aspect and position drawn from ChestX-ray14's radiologist boxes, kept in the lung
field."""

from __future__ import annotations

import numpy as np

from .synthcxr_anatomy import NIH_BOX_SCALE

MIN_LUNG_COVER = 0.5  # at least this fraction of a box lies in the lung field (and its centre does)
MAX_OVERLAP = 0.2  # boxes of one image overlap by at most this fraction of either box
CANDIDATES = 48  # random positions tried per drawn box before another box is drawn
DRAWS = 12


def integral(mask: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero row and column in front, for O(1) box sums."""
    s = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    s[1:, 1:] = mask.astype(np.int64).cumsum(0).cumsum(1)
    return s


def pixel_extent(boxes: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """Integer pixel footprint (x0, y0, x1, y1) of float boxes, clipped to the image."""
    x0 = np.floor(boxes[..., 0]).clip(0, size).astype(np.int64)
    y0 = np.floor(boxes[..., 1]).clip(0, size).astype(np.int64)
    x1 = np.ceil(boxes[..., 2]).clip(0, size).astype(np.int64)
    y1 = np.ceil(boxes[..., 3]).clip(0, size).astype(np.int64)
    return x0, y0, x1, y1


def lung_cover(table: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """Fraction of each box's pixel footprint that is lung."""
    x0, y0, x1, y1 = pixel_extent(boxes, size)
    inside = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
    return inside / np.maximum((x1 - x0) * (y1 - y0), 1)


def _overlap_ok(boxes: np.ndarray, placed: list[np.ndarray]) -> np.ndarray:
    ok = np.ones(len(boxes), dtype=bool)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for p in placed:
        iw = (np.minimum(boxes[:, 2], p[2]) - np.maximum(boxes[:, 0], p[0])).clip(0)
        ih = (np.minimum(boxes[:, 3], p[3]) - np.maximum(boxes[:, 1], p[1])).clip(0)
        inter = iw * ih
        p_area = (p[2] - p[0]) * (p[3] - p[1])
        ok &= (inter <= MAX_OVERLAP * area) & (inter <= MAX_OVERLAP * p_area)
    return ok


def valid(boxes: np.ndarray, lung: np.ndarray, table: np.ndarray, placed: list[np.ndarray]) -> np.ndarray:
    """Which candidate boxes (N x 4 xyxy) lie in the image, centre on lung, mostly cover lung, and avoid ``placed``."""
    size = lung.shape[-1]
    inside = (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0) & (boxes[:, 2] <= size) & (boxes[:, 3] <= size)
    cx = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(np.int64).clip(0, size - 1)
    cy = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(np.int64).clip(0, size - 1)
    return inside & lung[cy, cx] & (lung_cover(table, boxes, size) >= MIN_LUNG_COVER) & _overlap_ok(boxes, placed)


def place_box(
    nih: np.ndarray, lung: np.ndarray, table: np.ndarray, placed: list[np.ndarray], rng: np.random.Generator
) -> np.ndarray | None:
    """One xyxy box for a finding whose NIH boxes (x, y, w, h at 1024 px) are ``nih``, or None if none fits.

    The size is an NIH box's, scaled. Its NIH position is tried first (so basal effusions stay
    basal); otherwise random lung positions are tried, then another NIH box is drawn.
    """
    size = lung.shape[-1]
    scale = size / NIH_BOX_SCALE
    lung_y, lung_x = np.nonzero(lung)
    for _ in range(DRAWS):
        x, y, w, h = nih[rng.integers(len(nih))] * scale
        pick = rng.integers(len(lung_x), size=CANDIDATES)
        centres = np.concatenate([[[x + w / 2, y + h / 2]], np.stack([lung_x[pick] + 0.5, lung_y[pick] + 0.5], 1)])
        boxes = np.concatenate([centres - [w / 2, h / 2], centres + [w / 2, h / 2]], axis=1)
        ok = np.flatnonzero(valid(boxes, lung, table, placed))
        if len(ok):
            return boxes[ok[0]]
    return None
