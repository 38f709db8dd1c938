"""Faithfulness against causal ground truth: does a map rank an image's lesions as their true effects on the model do?

On a generated image with several lesions, the true effect of lesion k on the target's
probability is ``p(x) - p(x without lesion k)``, with ``x without lesion k`` the exact
counterfactual the generator renders (:meth:`cemap.data.synthcxr.SynthCXR.without`) - no imputer,
no approximation. A map's *share* of lesion k is the sum of the map over the lesion's pixel
footprint divided by the sum of |map| over the image (signed: a map that calls a lesion
counter-evidence ranks it low). Per (image, target) pair with K >= 2 lesions:

* ``rank_correlation``: Spearman's rho between the K shares and the K true effects (average ranks
  for ties; 0 when the shares are all equal - the map does not rank the lesions);
* ``top1``: 1 when the lesion with the largest share (ties broken uniformly at random by a seeded
  generator) has the largest true effect, else 0. Chance level is 1/K.

Both are per pair; average them over pairs and resample images (:mod:`.bootstrap`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from scipy.stats import rankdata

from ..causal.masks import box_mask


def footprints(boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """K x H x W: the pixel footprint of each of K lesion boxes (the pixels it touches, as :func:`box_mask`
    rasterises)."""
    return (
        torch.stack([box_mask(height, width, b) for b in boxes.reshape(-1, 4)])
        if len(boxes)
        else torch.zeros(0, height, width, dtype=torch.bool)
    )


def lesion_shares(maps: torch.Tensor, feet: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per map, K shares: the map summed over each footprint, divided by the map's total |mass| (0 for a zero map; NaN
    -> 0)."""
    out = []
    for m, f in zip(maps, feet):
        m = torch.nan_to_num(m.double(), nan=0.0)
        total = m.abs().sum()
        inside = (m[None] * f.double()).sum(dim=(1, 2))
        out.append(inside / total if total > 0 else torch.zeros_like(inside))
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    ra, rb = rankdata(a), rankdata(b)
    return float(np.corrcoef(ra, rb)[0, 1])


def rank_agreement(
    shares: Sequence[torch.Tensor], effects: Sequence[torch.Tensor], generator: torch.Generator | None = None
) -> dict[str, np.ndarray]:
    """Per pair: {"rank_correlation": rho, "top1": 0/1, "n_lesions": K}; NaN for pairs with fewer than 2 lesions."""
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    rho, top1, k = [], [], []
    for s, e in zip(shares, effects):
        s, e = s.double().numpy(), e.double().numpy()
        k.append(len(s))
        if len(s) < 2:
            rho.append(np.nan), top1.append(np.nan)
            continue
        rho.append(_spearman(s, e))
        tied = np.flatnonzero(s == s.max())
        pick = tied[int(torch.randint(len(tied), (1,), generator=g))]
        top1.append(float(e[pick] == e.max()))
    return {"rank_correlation": np.array(rho), "top1": np.array(top1), "n_lesions": np.array(k)}


@torch.inference_mode()
def true_effects(
    classifier,
    images: torch.Tensor,
    without: Sequence[torch.Tensor],
    targets: torch.Tensor,
    output: str = "probability",
    chunk: int = 256,
) -> list[torch.Tensor]:
    """Per pair, K true effects p_t(x) - p_t(x without lesion k): ``without[i]`` is K x C x H x W (one render per
    lesion).

    ``output='probability'`` (the model's probability or per-finding sigmoid) or 'logit'.
    """
    sizes = [len(w) for w in without]
    batch = torch.cat([images] + [w for w in without if len(w)]) if any(sizes) else images
    scores = []
    for start in range(0, len(batch), chunk):
        logits = classifier(batch[start : start + chunk])
        scores.append((logits if output == "logit" else classifier.probabilities(logits)).float().cpu())
    scores = torch.cat(scores)
    base = scores[: len(images)].gather(1, targets.view(-1, 1).cpu()).squeeze(1)
    out, at = [], len(images)
    for i, k in enumerate(sizes):
        out.append(base[i] - scores[at : at + k, int(targets[i])])
        at += k
    return out
