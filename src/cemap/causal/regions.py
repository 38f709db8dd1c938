"""Named regions for region interventions: grid cells at several scales and the image's border bands.

A signal can sit in one small place (a tag), move from image to image within a corner or along the edge (a
laterality letter, a hospital token), or cover a quadrant; one grid cannot see all three. ``region_set`` returns
cells of ``scales`` grids (e.g. 8 x 8, 4 x 4 and 2 x 2) and the border band (the outer eighth of the side, where
acquisition marks usually sit; 44% of the image), each with a name and its share of the image. No region covers
more than half the image: beyond that a swap exchanges the image rather than a region of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .masks import grid_masks, grid_positions


@dataclass
class RegionSet:
    masks: torch.Tensor  # M x H x W booleans
    names: list[str]

    @property
    def footprints(self) -> list[float]:
        return self.masks.float().mean(dim=(1, 2)).tolist()

    def __len__(self) -> int:
        return len(self.names)


def band(height: int, width: int, fraction: float) -> torch.Tensor:
    """H x W: the frame of the outer ``fraction`` of the shorter side."""
    w = max(1, round(min(height, width) * fraction))
    mask = torch.ones(height, width, dtype=torch.bool)
    mask[w:-w, w:-w] = False
    return mask


def region_set(
    height: int, width: int, scales: tuple[int, ...] = (8, 4, 2), bands: tuple[float, ...] = (0.125,)
) -> RegionSet:
    """Cells of a ``g`` x ``g`` grid for each g in ``scales`` (named "cell r2 c5 of 8x8"; where the side is not a
    multiple
    of g the last cells are pinned to the edge and the name gives the real count), then the border bands."""
    masks, names = [], []
    for g in scales:
        cell = max(1, min(height, width) // g)
        rows, cols = len(grid_positions(height, cell, cell)), len(grid_positions(width, cell, cell))
        for m, mask in enumerate(grid_masks(height, width, cell)):
            r, c = divmod(m, cols)
            masks.append(mask)
            names.append(f"cell r{r} c{c} of {rows}x{cols}")
    for f in bands:
        masks.append(band(height, width, f))
        names.append(f"border band {f:g} of the side")
    return RegionSet(torch.stack(masks), names)
