"""Adaptive CE maps: a coarse grid first, then refine only where the effect is large (a quadtree).

The finest level is the dense map's grid of ``cell``-pixel cells. Level ``levels`` groups
2^levels x 2^levels of them into blocks; every block is masked once, the ``refine`` fraction of
blocks with the largest |effect| is split into its (up to) four children, and so on down to
single cells. A cell that was never evaluated on its own inherits its smallest evaluated
block's effect shared equally, rescaled by how the refined blocks' effects compared with the
sums of their children's (masking is not additive: a large block often does less than its
cells one by one). The result is a map on the dense grid from fewer forward passes;
``forward_passes`` says how many the last call used. ``cemap bench`` reports how its ranking
and pointing game compare with the dense map's (``adaptive_quality``).
"""

from __future__ import annotations

import torch

from ..errors import CemapError
from ..models.classifier import Classifier
from .cemap_map import CEMap, default_cell, paint
from .effects import class_effect, resolve_targets
from .masks import grid_positions


def _ratio(parents: torch.Tensor, sums: torch.Tensor) -> float:
    """Least-squares factor from a block's effect to the sum of its children's (1 when undetermined)."""
    denom = float((parents * parents).sum())
    if denom <= 1e-12:
        return 1.0
    return min(max(float((parents * sums).sum()) / denom, 0.0), 16.0)


class AdaptiveCEMap:
    """``attribute(images, target)`` -> B x H x W CE map on the grid of ``cell``-pixel cells, computed coarse to fine."""

    def __init__(
        self,
        classifier: Classifier,
        cell: int | None = None,
        levels: int = 1,
        refine: float = 0.25,
        fill: str | float = "zero",
        chunk_size: int | None = None,
        precision: str = "fp32",
        blur_sigma: float | None = None,
    ) -> None:
        _, h, w = classifier.input_shape
        cell = cell or default_cell(min(h, w))
        if levels < 0:
            raise CemapError(f"levels must be at least 0, got {levels}", "0 is the dense map; 1-3 coarsen by 2x per level")
        if not 0 < refine <= 1:
            raise CemapError(f"refine fraction {refine} must be in (0, 1]", "e.g. 0.25 refines the quarter of blocks with the largest effect")
        self.engine = CEMap(classifier, cell=cell, stride=cell, fill=fill, chunk_size=chunk_size, precision=precision, blur_sigma=blur_sigma)
        self.classifier = classifier
        self.cell, self.levels, self.refine = cell, levels, refine
        self.ys, self.xs = grid_positions(h, cell, cell), grid_positions(w, cell, cell)
        self.forward_passes = 0
        self.images_seen = 0

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of finest cells: the dense map's grid (the last cell is pinned to the edge)."""
        return len(self.ys), len(self.xs)

    @property
    def dense_passes_per_image(self) -> int:
        """What the dense map on the same grid costs (one pass per cell plus the unmasked image)."""
        ny, nx = self.grid
        return ny * nx + 1

    @property
    def forward_passes_per_image(self) -> float:
        return self.forward_passes / max(self.images_seen, 1)

    def _block_cells(self, level: int, by: int, bx: int) -> tuple[int, int, int, int]:
        """Finest-cell index range (r0, r1, c0, c1) of block (by, bx) at ``level``."""
        ny, nx = self.grid
        s = 1 << level
        return by * s, min((by + 1) * s, ny), bx * s, min((bx + 1) * s, nx)

    def _mask(self, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
        _, h, w = self.classifier.input_shape
        m = torch.zeros(h, w, dtype=torch.bool)
        m[self.ys[r0] : self.ys[r1 - 1] + self.cell, self.xs[c0] : self.xs[c1 - 1] + self.cell] = True
        return m

    def _children(self, level: int, by: int, bx: int) -> list[tuple[int, int, int]]:
        ny, nx = self.grid
        s = 1 << (level - 1)
        return [(level - 1, cy, cx) for cy in (2 * by, 2 * by + 1) for cx in (2 * bx, 2 * bx + 1) if cy * s < ny and cx * s < nx]

    def attribute(self, images: torch.Tensor, target: int | torch.Tensor | None = None) -> torch.Tensor:
        images = self.classifier.check_images(images)
        fine = self._measure(images, target)
        return self._paint(fine).to(images.device)

    @torch.inference_mode()
    def _measure(self, images: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
        """B x ny x nx cell effects from the quadtree."""
        b = images.shape[0]
        ny, nx = self.grid
        top = min(self.levels, max(ny - 1, nx - 1).bit_length())  # no level coarser than one block
        s = 1 << top
        blocks = [(top, by, bx) for by in range(-(-ny // s)) for bx in range(-(-nx // s))]

        # The top level for every image, with the unmasked image riding along as an empty mask.
        empty = torch.zeros(1, *images.shape[2:], dtype=torch.bool)
        first = torch.cat([empty, torch.stack([self._mask(*self._block_cells(*blk)) for blk in blocks])])
        owner = torch.arange(b).repeat_interleave(first.shape[0])
        probs = self.engine.pair_probabilities(images, owner, first, torch.arange(first.shape[0]).repeat(b)).reshape(b, first.shape[0], -1)
        p = probs[:, 0]
        targets = resolve_targets(p, target)
        passes = owner.shape[0]

        leaves = [dict(zip(blocks, row)) for row in class_effect(p, probs[:, 1:], targets).tolist()]
        newest = [list(blocks) for _ in range(b)]
        ratio = torch.ones(b, top + 1)  # ratio[:, l]: summed children's effect per unit of their level-l parent's
        for level in range(top, 0, -1):
            chosen = [self._to_refine({blk: leaves[i][blk] for blk in newest[i]}) for i in range(b)]
            newest = [[c for blk in chosen[i] for c in self._children(*blk)] for i in range(b)]
            flat = [(i, c) for i in range(b) for c in newest[i]]
            owner = torch.tensor([i for i, _ in flat], dtype=torch.long)
            masks = torch.stack([self._mask(*self._block_cells(*c)) for _, c in flat])
            q = self.engine.pair_probabilities(images, owner, masks, torch.arange(len(flat)))
            passes += len(flat)
            for (i, c), e in zip(flat, class_effect(p[owner], q, targets[owner]).tolist()):
                leaves[i][c] = e
            for i in range(b):
                parents = torch.tensor([leaves[i].pop(blk) for blk in chosen[i]])
                sums = torch.tensor([sum(leaves[i][c] for c in self._children(*blk)) for blk in chosen[i]])
                ratio[i, level] = _ratio(parents, sums)
        scale = ratio.cumprod(dim=1)  # a level-l effect in units of summed finest-cell effects
        fine = torch.zeros(b, ny, nx)
        for i in range(b):
            for (lv, by, bx), e in leaves[i].items():
                r0, r1, c0, c1 = self._block_cells(lv, by, bx)
                fine[i, r0:r1, c0:c1] = e * float(scale[i, lv]) / ((r1 - r0) * (c1 - c0))
        self.forward_passes, self.images_seen = passes, b
        return fine

    def _to_refine(self, effects: dict[tuple[int, int, int], float]) -> list[tuple[int, int, int]]:
        """The ``refine`` fraction (at least one) of ``effects``' blocks with the largest |effect|."""
        n = max(1, round(self.refine * len(effects)))
        return sorted(effects, key=lambda blk: -abs(effects[blk]))[:n]

    def _paint(self, fine: torch.Tensor) -> torch.Tensor:
        return paint(fine.flatten(1), self.engine.masks)
