"""Per-pair scores of one method's maps: localisation, CheXlocalize, causal ground truth, ROAD under three imputers.

Every function returns {metric: B values} (NaN where a pair has no value), so intervals can
resample images later. Metric names:

* ``pointing_game`` (one maximum per map, seeded random ties, constant maps miss), ``energy``
  (positive mass inside the box), ``iobb@T`` / ``fp@T`` (ChestX-ray8, strict, T = 0.1 ... 0.9);
* ``chexlocalize_hit`` (first maximum in scan order inside the box) and ``chexlocalize_iou``
  (binarised at the method's per-finding threshold chosen on validation; NaN when empty);
* ``gt_rank`` and ``gt_top1`` (:mod:`cemap.evaluate.groundtruth`; images with >= 2 lesions);
* ``road@I``, ``morf@I`` (deletion: mean score change with the top fraction imputed; lower is
  better) and ``lerf@I`` for each imputer I (noisy-linear, blur, counterfactual).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ...evaluate.faithfulness import road
from ...evaluate.groundtruth import lesion_shares, rank_agreement, true_effects
from ...evaluate.localisation import (
    chestxray8_localisation,
    chexlocalize_hits,
    chexlocalize_iou,
    energy_share,
    pointing_game,
)
from .config import IOBB_TS
from .data import BenchPairs

LOWER_IS_BETTER = ("morf",)


def higher_is_better(metric: str) -> bool:
    return not (metric.split("@")[0] in LOWER_IS_BETTER or metric.startswith("fp@"))


def generator(seed: int, stream: str) -> torch.Generator:
    """A generator seeded from (seed, stream): each use draws its own numbers, never the global RNG."""
    digest = hashlib.sha256(f"{seed}/{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF)


def localisation(
    maps: torch.Tensor, pairs: BenchPairs, seed: int, thresholds: torch.Tensor | None = None
) -> dict[str, np.ndarray]:
    """Box metrics of one method's maps (``thresholds``: B CheXlocalize thresholds, one per pair's finding; 0.5 when
    None)."""
    masks = pairs.masks
    out = {
        "pointing_game": pointing_game(maps, masks, "single", generator=generator(seed, "ties")).float(),
        "energy": energy_share(maps, masks),
        "chexlocalize_hit": chexlocalize_hits(maps, masks),
        "chexlocalize_iou": chexlocalize_iou(maps, masks, 0.5 if thresholds is None else thresholds),
    }
    for t, (hits, fps) in chestxray8_localisation(maps, pairs.boxes, IOBB_TS).items():
        out[f"iobb@{t:g}"], out[f"fp@{t:g}"] = hits.float(), fps
    return {k: v.float().numpy() for k, v in out.items()}


def effects_of(classifier, pairs: BenchPairs) -> list[torch.Tensor]:
    """Per pair, the true effect of each lesion of its image on its target's probability (one pass for all renders)."""
    return true_effects(classifier, pairs.images, pairs.without_each, pairs.targets)


def ground_truth(
    maps: torch.Tensor, pairs: BenchPairs, effects: list[torch.Tensor], seed: int
) -> dict[str, np.ndarray]:
    """``gt_rank`` and ``gt_top1`` per pair (NaN for images with fewer than two lesions)."""
    agree = rank_agreement(lesion_shares(maps, pairs.lesion_feet), effects, generator(seed, "gt-ties"))
    return {"gt_rank": agree["rank_correlation"], "gt_top1": agree["top1"]}


def faithfulness(
    classifier, maps: torch.Tensor, pairs: BenchPairs, imputers, fractions, seed: int, n_noisy: int | None = None
) -> dict[str, np.ndarray]:
    """ROAD, MoRF (deletion) and LeRF under each imputer; noisy-linear only on the first ``n_noisy`` pairs (its sparse
    solves
    dominate the cost), NaN beyond them."""
    out = {}
    for imputer in imputers:
        n = len(pairs) if imputer != "noisy-linear" or n_noisy is None else min(n_noisy, len(pairs))
        fill = pairs.lesion_free[:n] if imputer == "counterfactual" else imputer
        r = road(
            classifier,
            pairs.images[:n],
            maps[:n].cpu(),
            pairs.targets[:n],
            fractions=fractions,
            generator=generator(seed, f"road-{imputer}"),
            imputer=fill,
        )
        for key, name in (("combined", "road"), ("morf", "morf"), ("lerf", "lerf")):
            v = np.full(len(pairs), np.nan)
            v[:n] = r[key].cpu().numpy()
            out[f"{name}@{imputer}"] = v
    return out
