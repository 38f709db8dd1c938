"""The masked regions of the latent controls study and their controls: the same area, elsewhere, changing the same
pixels.

* synthcxr (boxes): the finding's box, against the same box shape at random places inside the lung field that
  touch no lesion;
* MNIST (strokes): the digit's strokes erased, against contiguous background regions of the same area grown at
  random away from the strokes and filled with the strokes' own intensities.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...causal.masks import box_mask
from ..context import StudyContext

STROKE = 0.5  # MNIST pixels above this are strokes


def box_regions(ctx: StudyContext, batch, indices, findings, placements):
    """(lesion masks N x H x W, control masks N x P x H x W, fills, control fills, (lung share, squeezed)).

    The finding's box(es), and the same box shape at ``placements`` random places that touch no lesion, chosen among
    those most inside the lung field (entirely inside it wherever such a place exists); ``lung share`` is each
    control's share inside the lung; ``squeezed`` counts the images where every place touches a lesion (the control
    then loses those pixels)."""
    images = batch.images
    n, _, h, w = images.shape
    gen = ctx.generator("latent_controls/placements")
    lesion = torch.zeros(n, h, w, dtype=torch.bool)
    ctrl = torch.zeros(n, placements, h, w, dtype=torch.bool)
    share = torch.ones(n)
    squeezed = 0
    for i, (bx, bl, f) in enumerate(zip(batch.boxes, batch.box_labels, findings.tolist())):
        lesion[i] = box_mask(h, w, bx[bl == f])
        anything = box_mask(h, w, bx)
        lung = ctx.test.lung_mask(indices[i]) if hasattr(ctx.test, "lung_mask") else torch.ones(h, w, dtype=torch.bool)
        for x0, y0, x1, y1 in int_boxes(bx[bl == f], h, w)[:1]:
            bh, bw = y1 - y0, x1 - x0
            clear = window_sums(anything.float(), bh, bw) == 0  # places that touch no lesion
            inside = window_sums((lung & ~anything).float(), bh, bw) / max(bh * bw, 1)
            score = torch.where(clear, inside, inside - 2) if clear.any() else inside
            squeezed += int(not clear.any())
            best = score.max()
            share[i] = float(best)
            ys, xs = torch.nonzero(score >= best - 1e-6, as_tuple=True)
            pick = torch.randint(0, len(ys), (placements,), generator=gen)
            for p, c in enumerate(pick.tolist()):
                ctrl[i, p, ys[c] : ys[c] + bh, xs[c] : xs[c] + bw] = True
        ctrl[i] &= ~anything  # only where every place touches a lesion: never mask one
    zeros = torch.zeros_like(images)
    return lesion, ctrl, zeros, zeros[:, None].expand(n, placements, *images.shape[1:]), (share, squeezed)


def int_boxes(boxes: torch.Tensor, h: int, w: int) -> list[tuple[int, int, int, int]]:
    return [
        (max(0, math.floor(a)), max(0, math.floor(b)), min(w, math.ceil(c)), min(h, math.ceil(d)))
        for a, b, c, d in boxes.reshape(-1, 4).tolist()
    ]


def window_sums(m: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
    s = torch.nn.functional.pad(m.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    return (s[bh:, bw:] - s[:-bh, bw:] - s[bh:, :-bw] + s[:-bh, :-bw]).float()


def stroke_regions(ctx: StudyContext, images: torch.Tensor, placements: int):
    """MNIST: stroke masks (pixels > STROKE), and per image ``placements`` contiguous background regions of the same
    area, grown at random from a random seed at least 2 px away from every stroke, filled with the stroke
    intensities."""
    n, c, h, w = images.shape
    gen = ctx.generator("latent_controls/background")
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    gray = images.mean(1)
    strokes = gray > STROKE
    near = torch.nn.functional.max_pool2d(strokes[:, None].float(), 5, 1, 2)[:, 0] > 0
    ctrl = torch.zeros(n, placements, h, w, dtype=torch.bool)
    ctrl_fill = torch.zeros(n, placements, c, h, w)
    for i in range(n):
        area = int(strokes[i].sum())
        allowed = (~near[i]).numpy()
        values = images[i][:, strokes[i]]  # c x area
        for p in range(placements):
            grown = grow(allowed, area, rng)
            ctrl[i, p] = torch.from_numpy(grown)
            perm = torch.from_numpy(rng.permutation(area))[: int(grown.sum())]
            ctrl_fill[i, p][:, ctrl[i, p]] = values[:, perm]
    return strokes, ctrl, torch.zeros_like(images), ctrl_fill


def grow(allowed: np.ndarray, area: int, rng: np.random.Generator) -> np.ndarray:
    """A 4-connected region of ``area`` allowed pixels grown from a random seed, one random frontier pixel at a time."""
    h, w = allowed.shape
    region = np.zeros_like(allowed, dtype=bool)
    cells = np.argwhere(allowed)
    if not len(cells) or area == 0:
        return region
    frontier = [tuple(cells[rng.integers(len(cells))])]
    seen = {frontier[0]}
    count = 0
    while frontier and count < area:
        y, x = frontier.pop(int(rng.integers(len(frontier))))
        region[y, x] = True
        count += 1
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            q = (y + dy, x + dx)
            if 0 <= q[0] < h and 0 <= q[1] < w and allowed[q] and q not in seen:
                seen.add(q)
                frontier.append(q)
    return region
