"""Localisation of heat maps against ground-truth boxes.

Maps are B x H x W (higher = more important); ``boxes`` is one N x 4 (x0, y0, x1, y1) pixel
tensor per map (all boxes of the finding being explained). Every function returns one value
per map so callers can average, bootstrap or split as they like.

**One box geometry everywhere** (the v2 functions below): a box is the set of pixels it
touches, rasterised exactly as :func:`cemap.causal.masks.box_mask` does - pixel (row i, column
j) covers [j, j + 1) x [i, i + 1), and belongs to the box when it overlaps the box's interior
(x0 and y0 floored, x1 and y1 ceiled, clipped to the image). Hits, masses, IoBB and IoU are all
counted on these pixel sets, never on fractional coordinates.

v2 (issue 16; :func:`pointing_game`, :func:`chestxray8_localisation`, :func:`iou_localisation`):

* pointing game (Zhang et al. 2018) with **one maximum per map**: ties at the maximum are broken
  uniformly at random by a seeded generator; a constant or all-NaN map is a miss (it points
  nowhere). ``rule='any'`` (any tied pixel inside, Quantus's ``PointingGame``) and a tolerance
  (15 px at 224, scaled; distance from the chosen pixel's centre to the nearest box pixel's
  centre) are reported beside it.
* energy-based pointing game (Wang et al. 2020, Score-CAM): share of the map's positive mass
  inside the boxes (Quantus's ``AttributionLocalisation`` on non-negative maps).
* T(IoBB) as ChestX-ray8 (Wang et al. 2017) defines it: the map is min-max normalised to [0, 1]
  and thresholded at ``level``; *every* connected region (8-connectivity) becomes a detected
  box; the finding is localised at T when some detected box has IoBB >= T with one of its true
  boxes (IoBB = intersection / detected-box area). Each detected box that reaches T with no
  true box is a false positive; the mean count per map is reported beside the accuracy.
* the same with IoU (intersection / union) instead of IoBB, which does not reward tiny boxes.

The v1 functions (:func:`pointing_game_hits`, :func:`best_iobb`, :func:`iobb_accuracy`) are
kept unchanged for the v1 study until it moves to v2.
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
    return torch.tensor(
        [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in (slices[k - 1] for k in wanted)], dtype=torch.float32
    ).reshape(-1, 4)


def iobb(detected: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """K x N intersection over detected-box area."""
    d, t = detected.reshape(-1, 1, 4), truth.reshape(1, -1, 4)
    w = (torch.minimum(d[..., 2], t[..., 2]) - torch.maximum(d[..., 0], t[..., 0])).clamp_min(0)
    h = (torch.minimum(d[..., 3], t[..., 3]) - torch.maximum(d[..., 1], t[..., 1])).clamp_min(0)
    area = ((d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])).clamp_min(1e-12)
    return w * h / area


def best_iobb(
    maps: torch.Tensor, boxes: Sequence[torch.Tensor], level: float = 0.5, regions: str = "peak"
) -> torch.Tensor:
    """B values: the largest IoBB between a detected box of each map and one of its true boxes (0 if none)."""
    _check(maps, boxes)
    out = torch.zeros(len(boxes))
    for i, (m, bx) in enumerate(zip(maps, boxes)):
        det = detected_boxes(m, level, regions)
        if len(det) and bx.numel():
            out[i] = iobb(det, bx.float()).max()
    return out


def iobb_accuracy(
    maps: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    thresholds: Sequence[float] = IOBB_THRESHOLDS,
    level: float = 0.5,
    regions: str = "peak",
) -> dict[float, torch.Tensor]:
    """{T: B booleans}: is each finding localised with IoBB > T (ChestX-ray8's T(IoBB) accuracy is their mean)?"""
    scores = best_iobb(maps, boxes, level, regions)
    return {float(t): scores > t for t in thresholds}


def _check(maps: torch.Tensor, boxes: Sequence[torch.Tensor]) -> None:
    if maps.dim() != 3:
        raise CemapError(f"maps must be B x H x W, got shape {tuple(maps.shape)}")
    if len(boxes) != maps.shape[0]:
        raise CemapError(
            f"got {len(boxes)} box sets for {maps.shape[0]} maps", "pass one N x 4 tensor of boxes per map"
        )


# ----------------------------------------------------------------------------------------------
# v2: one geometry, single-maximum pointing game, ChestX-ray8 T(IoBB) with false positives, IoU

POINTING_RULES = ("single", "any")
CXR8_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)  # Wang et al. 2017, Table 3
CXR8_LEVEL = 180 / 255  # Wang et al. 2017 threshold their [0, 255]-normalised heat maps at 60 and 180


def raster_boxes(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """N x 4 integer pixel boxes [x0, x1) x [y0, y1) covering exactly the pixels :func:`box_mask` marks."""
    b = boxes.reshape(-1, 4).float()
    x0 = b[:, 0].floor().clamp(0, width)
    y0 = b[:, 1].floor().clamp(0, height)
    x1 = b[:, 2].ceil().clamp(0, width)
    y1 = b[:, 3].ceil().clamp(0, height)
    return torch.stack([x0, y0, x1, y1], 1)


def _finite_maps(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B x N float maps with NaN as -inf, B booleans: the map is informative - finite and not constant)."""
    flat = maps.detach().reshape(maps.shape[0], -1).float()
    finite = torch.isfinite(flat)
    clean = torch.where(finite, flat, torch.full_like(flat, -float("inf")))
    hi = clean.max(1).values
    lo = torch.where(finite, flat, torch.full_like(flat, float("inf"))).min(1).values
    return clean, finite.any(1) & (hi > lo)


def _check_masks(maps: torch.Tensor, masks: torch.Tensor) -> None:
    if maps.dim() != 3:
        raise CemapError(f"maps must be B x H x W, got shape {tuple(maps.shape)}")
    if tuple(masks.shape) != tuple(maps.shape):
        raise CemapError(
            f"box masks of shape {tuple(masks.shape)} do not match maps {tuple(maps.shape)}",
            "pass one H x W mask per map",
        )


def pointing_game(
    maps: torch.Tensor,
    masks: torch.Tensor,
    rule: str = "single",
    tolerance: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """B booleans: does each map point into its box mask (B x H x W, :func:`box_masks`)?

    ``rule='single'``: one maximum per map, ties broken uniformly at random by ``generator``
    (seeded; a fresh ``Generator().manual_seed(0)`` when None). ``rule='any'``: a hit when any
    pixel tied at the maximum is inside. ``tolerance`` (pixels): a hit when the pointed pixel's
    centre lies within that distance of a box pixel's centre. A constant or all-NaN map, or a
    map whose mask is empty, is a miss.
    """
    if rule not in POINTING_RULES:
        raise CemapError(f"unknown pointing rule {rule!r}", f"use one of {', '.join(POINTING_RULES)}")
    _check_masks(maps, masks)
    flat, informative = _finite_maps(maps)
    target = masks.reshape(masks.shape[0], -1).bool()
    if tolerance > 0:
        target = _dilate(masks.bool(), tolerance).reshape(masks.shape[0], -1)
    tied = flat == flat.max(1, keepdim=True).values
    if rule == "any":
        hit = (tied & target).any(1)
    else:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        keys = torch.rand(flat.shape, generator=g)
        pick = torch.where(tied, keys, torch.full_like(keys, -1.0)).argmax(1)
        hit = target.gather(1, pick[:, None]).squeeze(1)
    return hit & informative & masks.reshape(masks.shape[0], -1).any(1)


def _dilate(masks: torch.Tensor, radius: float) -> torch.Tensor:
    """B x H x W: pixels whose centre is within ``radius`` of the centre of a pixel in the mask."""
    out = torch.zeros_like(masks)
    for i, m in enumerate(masks.cpu().numpy()):
        if m.any():
            out[i] = torch.from_numpy(ndimage.distance_transform_edt(~m) <= radius)
    return out


def energy_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """B energy-based pointing scores on box masks: positive mass inside / all positive mass (0 without positive
    mass)."""
    _check_masks(maps, masks)
    return mass_share(torch.nan_to_num(maps.float(), nan=0.0), masks)


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """B x H x W min-max normalised to [0, 1] per map; a constant or all-NaN map becomes all zeros (NaN pixels -> 0)."""
    flat, informative = _finite_maps(maps)
    finite = torch.isfinite(flat)
    lo = torch.where(finite, flat, torch.full_like(flat, float("inf"))).min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    span = torch.where(informative[:, None], hi - lo, torch.ones_like(hi))
    out = torch.where(
        finite & informative[:, None],
        (flat - torch.where(informative[:, None], lo, torch.zeros_like(lo))) / span,
        torch.zeros_like(flat),
    )
    return out.reshape(maps.shape)


def detected_regions(maps: torch.Tensor, level: float = CXR8_LEVEL) -> list[torch.Tensor]:
    """Per map, K x 4 integer boxes [x0, x1) x [y0, y1) around every connected region (8-connectivity)
    where the min-max normalised map is >= ``level`` (ChestX-ray8). A constant map has none."""
    norm = normalise_maps(maps).cpu().numpy()
    _, informative = _finite_maps(maps)
    binary = (norm >= level) & informative.cpu().numpy()[:, None, None]
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True  # connect within a map, never across the batch
    labels, _ = ndimage.label(binary, structure=structure)
    out: list[list[list[int]]] = [[] for _ in range(maps.shape[0])]
    for sl in ndimage.find_objects(labels):
        if sl is not None:
            out[sl[0].start].append([sl[2].start, sl[1].start, sl[2].stop, sl[1].stop])
    return [torch.tensor(b, dtype=torch.float32).reshape(-1, 4) for b in out]


def box_overlaps(detected: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(K x N IoBB = intersection / detected area, K x N IoU) between pixel-aligned boxes."""
    d, t = detected.reshape(-1, 1, 4).float(), truth.reshape(1, -1, 4).float()
    w = (torch.minimum(d[..., 2], t[..., 2]) - torch.maximum(d[..., 0], t[..., 0])).clamp_min(0)
    h = (torch.minimum(d[..., 3], t[..., 3]) - torch.maximum(d[..., 1], t[..., 1])).clamp_min(0)
    inter = w * h
    area_d = ((d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])).clamp_min(1e-12)
    area_t = (t[..., 2] - t[..., 0]) * (t[..., 3] - t[..., 1])
    return inter / area_d, inter / (area_d + area_t - inter).clamp_min(1e-12)


def chestxray8_localisation(
    maps: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    thresholds: Sequence[float] = CXR8_THRESHOLDS,
    level: float = CXR8_LEVEL,
    overlap: str = "iobb",
) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """{T: (B booleans - localised at T, B false-positive counts)} by ChestX-ray8's protocol.

    ``overlap='iobb'`` (Wang et al.) or ``'iou'``. Localised at T: some detected box overlaps a
    true box by more than T (strictly). A detected box counts as a false positive at T when its
    overlap with every true box of the finding is at most T.
    """
    if overlap not in ("iobb", "iou"):
        raise CemapError(f"unknown overlap {overlap!r}", "use 'iobb' or 'iou'")
    _check(maps, boxes)
    h, w = maps.shape[-2:]
    best = []  # per map: K x N overlaps
    for det, bx in zip(detected_regions(maps, level), boxes):
        truth = raster_boxes(bx, h, w)
        truth = truth[(truth[:, 2] > truth[:, 0]) & (truth[:, 3] > truth[:, 1])]
        if len(det) and len(truth):
            iobb_kn, iou_kn = box_overlaps(det, truth)
            best.append(iobb_kn if overlap == "iobb" else iou_kn)
        else:
            best.append(torch.zeros(len(det), 0))
    out = {}
    for t in thresholds:
        hits = torch.tensor([bool((o > t).any()) for o in best])
        fps = torch.tensor([float(((o > t).sum(1) == 0).sum()) if o.shape[1] else float(o.shape[0]) for o in best])
        out[float(t)] = (hits, fps)
    return out


def iou_localisation(
    maps: torch.Tensor,
    boxes: Sequence[torch.Tensor],
    thresholds: Sequence[float] = CXR8_THRESHOLDS,
    level: float = CXR8_LEVEL,
) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`chestxray8_localisation` with IoU instead of IoBB."""
    return chestxray8_localisation(maps, boxes, thresholds, level, overlap="iou")


def scaled_tolerance(size: int, tolerance_224: float = 15.0) -> float:
    """The pointing game's tolerance at this image size (Zhang et al.: 15 px at 224)."""
    return tolerance_224 * size / 224


# ----------------------------------------------------------------------------------------------
# CheXlocalize (Saporta et al., Nature Machine Intelligence 2022): mIoU at a tuned threshold, hit rate

CHEXLOCALIZE_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # their np.arange(0.2, 0.8, 0.1)


def chexlocalize_iou(maps: torch.Tensor, masks: torch.Tensor, thresholds) -> torch.Tensor:
    """B IoUs between each map binarised at its threshold (min-max normalised, strictly above) and its truth mask.

    ``thresholds``: one number, or B of them (one per map, e.g. its finding's tuned threshold).
    NaN where the binarised map or the truth is empty (CheXlocalize's true-positive slice), so a
    constant map is left out, as their code leaves it out.
    """
    _check_masks(maps, masks)
    flat = maps.detach().reshape(maps.shape[0], -1).double()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    with torch.no_grad():
        norm = (flat - lo) / (hi - lo)  # NaN for a constant map: never above a threshold
    t = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1, 1).expand(maps.shape[0], 1)
    pred, truth = norm > t, masks.reshape(masks.shape[0], -1).bool()
    inter, union = (pred & truth).sum(1).double(), (pred | truth).sum(1).double()
    iou = inter / union.clamp_min(1)
    return torch.where(pred.any(1) & truth.any(1), iou, torch.full_like(iou, float("nan"))).float()


def chexlocalize_hits(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """B hits (1.0 / 0.0; NaN for an empty truth): the map's first maximum in scan order lies in the truth mask."""
    _check_masks(maps, masks)
    flat = maps.detach().reshape(maps.shape[0], -1)
    top = torch.nan_to_num(flat.float(), nan=-float("inf")).argmax(1)
    truth = masks.reshape(masks.shape[0], -1).bool()
    hit = truth.gather(1, top[:, None]).squeeze(1).float()
    return torch.where(truth.any(1), hit, torch.full_like(hit, float("nan")))


def tune_chexlocalize_thresholds(
    maps: torch.Tensor, masks: torch.Tensor, findings: torch.Tensor, candidates=CHEXLOCALIZE_THRESHOLDS
) -> dict[int, dict]:
    """Per finding, the candidate threshold with the highest mIoU (NaN-mean; first on ties) on these (validation) maps.

    Returns {finding: {"threshold": t, "miou": {t: mIoU for every candidate}}}.
    """
    out = {}
    for f in torch.unique(findings).tolist():
        sel = findings == f
        scores = {
            float(t): float(np.nanmean(chexlocalize_iou(maps[sel], masks[sel], t).numpy()))
            if bool(sel.any())
            else float("nan")
            for t in candidates
        }
        finite = {t: v for t, v in scores.items() if v == v}
        best = max(finite, key=finite.get) if finite else float(candidates[len(candidates) // 2])
        out[int(f)] = {"threshold": best, "miou": scores}
    return out
