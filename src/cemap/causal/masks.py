"""Pixel interventions do(X_R = c): which regions R, and what fill c.

Regions are boolean masks (M x H x W): grid cells, boxes or any user mask. Fills are whole
images (B x C x H x W) computed once per input, so applying M masks is a single ``where``.
"""

from __future__ import annotations

import math

import torch

from ..data.filters import gaussian_blur
from ..errors import CemapError

FILLS = ("zero", "max", "mean", "blur")


def grid_positions(size: int, cell: int, stride: int) -> list[int]:
    """Start offsets along one axis; the last cell is pinned to the edge so every pixel is covered."""
    starts = list(range(0, size - cell + 1, stride))
    if starts[-1] + cell < size:
        starts.append(size - cell)
    return starts


def grid_masks(height: int, width: int, cell: int, stride: int | None = None) -> torch.Tensor:
    """M x H x W boolean masks of square cells of side ``cell`` every ``stride`` pixels."""
    stride = cell if stride is None else stride
    if cell < 1 or stride < 1:
        raise CemapError(f"cell size {cell} and stride {stride} must be positive")
    if cell > min(height, width):
        raise CemapError(
            f"cell size {cell} is larger than the image ({height} x {width})",
            f"use a cell of at most {min(height, width)} pixels",
        )
    if stride > cell:
        raise CemapError(
            f"stride {stride} is larger than the cell size {cell}",
            "a stride above the cell size leaves pixels untested",
        )
    ys, xs = grid_positions(height, cell, stride), grid_positions(width, cell, stride)
    masks = torch.zeros(len(ys) * len(xs), height, width, dtype=torch.bool)
    for i, (y, x) in enumerate((y, x) for y in ys for x in xs):
        masks[i, y : y + cell, x : x + cell] = True
    return masks


def box_mask(height: int, width: int, boxes: torch.Tensor) -> torch.Tensor:
    """H x W mask that is True inside any of the N x 4 (x0, y0, x1, y1) pixel boxes."""
    mask = torch.zeros(height, width, dtype=torch.bool)
    for x0, y0, x1, y1 in boxes.reshape(-1, 4).tolist():
        x0, y0 = max(0, math.floor(x0)), max(0, math.floor(y0))
        x1, y1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
        mask[y0:y1, x0:x1] = True
    return mask


def check_fill(fill: str | float) -> str | float:
    """``fill`` when it names a fill or is a number in [0, 1] (the images' range); a CemapError otherwise - checked when
    a map is built, so a run refuses a bad fill before it trains anything."""
    number = isinstance(fill, (int, float)) and not isinstance(fill, bool)
    if (number and not 0.0 <= float(fill) <= 1.0) or (not number and fill not in FILLS):
        raise CemapError(f"unknown fill {fill!r}", f"use one of {', '.join(FILLS)} or a number in [0, 1]")
    return fill


def fill_images(images: torch.Tensor, fill: str | float, blur_sigma: float | None = None) -> torch.Tensor:
    """The replacement image c for each input: 'zero', 'max' (1.0), 'mean' (per-image channel mean), 'blur', or a
    constant."""
    check_fill(fill)
    if isinstance(fill, (int, float)):
        return torch.full_like(images, float(fill))
    if fill == "zero":
        return torch.zeros_like(images)
    if fill == "max":
        return torch.ones_like(images)
    if fill == "mean":
        return images.mean(dim=(2, 3), keepdim=True).expand_as(images)
    return gaussian_blur(images, blur_sigma or max(1.0, images.shape[-1] / 16))


def apply_masks(image: torch.Tensor, fill: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """M x C x H x W: ``image`` with region m replaced by ``fill`` (both C x H x W)."""
    return torch.where(masks[:, None], fill[None], image[None])
