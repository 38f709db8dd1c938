"""What carries the model's decisions beyond the findings: property exchanges between images with the same labels.

Among audited images that have the same labels and no annotated finding (in multi-label data: the images with no
finding at all; in single-label data: pairs of the same class), the labels explain none of the differences between
the model's outputs. For a recipient image r and a donor d from that pool, an intervention swaps one property of d
into r - a region (:func:`cemap.causal.regions.region_set`) or a global property (fine or mid spatial-frequency
texture, brightness and contrast; :data:`cemap.causal.global_interventions.SWAPS`) - and asks whether r's output moves
toward d's. With t = p_f(d) - p_f(r) and delta = p_f(r with d's property) - p_f(r) for finding f, over all pairs:

    carried_f = mean(delta * t) / sqrt(mean(t^2))

If the property carries a share beta of the decision difference (delta = beta t + noise), carried = beta rms(t): the
probability the property moves between images of the same labels, in the units of the other effects. A model that
learnt only the findings has little to carry here (its outputs barely differ between finding-free images) and what
it has is not carried by any one swapped property; a model that learnt a signal tied to a finding - a tag, a letter,
a grid, a scanner's blur, contrast or noise - varies with that signal, and the swap carries it. Intervals resample
recipients (percentile bootstrap). The decision rule reads the largest lower bound (:func:`cemap.studies.audit.result.concern`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...causal.global_interventions import exchanges
from ...causal.regions import region_set
from ...evaluate.bootstrap import Interval, N_BOOT, percentile_interval, resample_indices
from .effects import predict


@dataclass
class Transfer:
    """How much of the decision difference between same-label images one swapped property carries."""

    family: str  # "region" or "exchange"
    name: str
    finding: str
    carried: Interval
    slope: float
    rms_difference: float
    footprint: float = 1.0
    n_pairs: int = 0
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"family": self.family, "name": self.name, "finding": self.finding, "carried": self.carried.to_json(),
                "slope": round(self.slope, 4), "rms_difference": round(self.rms_difference, 4), "footprint": round(self.footprint, 4),
                "n_pairs": self.n_pairs, "detail": self.detail}

    @property
    def label(self) -> str:
        return self.name


def pair_pool(labels: np.ndarray, has_boxes: np.ndarray, multilabel: bool) -> list[np.ndarray]:
    """Groups of audited images whose labels say nothing about their differences: finding-free images (multi-label),
    or each class's images (single-label), never an image with annotated boxes."""
    if multilabel:
        free = np.flatnonzero((labels.reshape(len(labels), -1).sum(1) == 0) & ~has_boxes)
        return [free] if len(free) > 1 else []
    groups = [np.flatnonzero((labels == c) & ~has_boxes) for c in np.unique(labels)]
    return [g for g in groups if len(g) > 1]


def draw_pairs(groups: list[np.ndarray], donors: int, max_recipients: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(R recipients, R x D donors from the same group, never the recipient itself)."""
    rng = np.random.default_rng(seed)
    recipients, chosen = [], []
    for g in groups:
        for r in g:
            others = g[g != r]
            recipients.append(r)
            chosen.append(rng.choice(others, size=donors, replace=len(others) < donors))
    recipients, chosen = np.array(recipients, dtype=np.int64), np.array(chosen, dtype=np.int64).reshape(-1, donors)
    if len(recipients) > max_recipients:
        keep = np.sort(rng.choice(len(recipients), size=max_recipients, replace=False))
        recipients, chosen = recipients[keep], chosen[keep]
    return recipients, chosen


def carried(delta: np.ndarray, t: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[Interval, float, float]:
    """(carried with its interval over recipients, slope, rms(t)) for one finding; ``delta``, ``t``: R x D."""
    a, b = (delta * t).sum(1), (t * t).sum(1)  # per recipient
    d = delta.shape[1]

    def stat(sa, sb, n):
        return sa / max(np.sqrt(sb * n * d), 1e-12)

    n = len(a)
    est = stat(a.sum(), b.sum(), n)
    idx = resample_indices(n, n_boot, seed)
    draws = a[idx].sum(1) / np.maximum(np.sqrt(b[idx].sum(1) * n * d), 1e-12)
    slope = a.sum() / max(b.sum(), 1e-12)
    return Interval(float(est), *percentile_interval(draws), n), float(slope), float(np.sqrt(b.sum() / (n * d)))


def _best(family, name, deltas: np.ndarray, t: np.ndarray, names: list[str], footprint: float, seed: int) -> Transfer:
    """The Transfer of the finding the swap carries most (``deltas``, ``t``: R x D x K)."""
    rows = [carried(deltas[..., k], t[..., k], seed=seed) for k in range(t.shape[2])]
    k = int(np.argmax([r[0].estimate for r in rows]))
    per = {c: round(r[0].estimate, 4) for c, r in zip(names, rows)}
    return Transfer(family, name, names[k], rows[k][0], rows[k][1], rows[k][2], footprint, int(t.shape[0] * t.shape[1]), {"per_finding": per})


def transfer_analysis(classifier, images: torch.Tensor, labels: np.ndarray, has_boxes: np.ndarray, donors: int = 8,
                      max_recipients: int = 128, scales: tuple[int, ...] = (8, 4, 2), seed: int = 0) -> list[Transfer]:
    """Transfers of every region and every exchange over same-label pairs (empty when no pair exists)."""
    groups = pair_pool(labels, has_boxes, classifier.multilabel)
    if not groups:
        return []
    rec, don = draw_pairs(groups, donors, max_recipients, seed)
    p = predict(classifier, images)
    t = p[don] - p[rec][:, None]  # R x D x K
    x, names, out = images[torch.from_numpy(rec)], classifier.class_names, []
    base = p[rec][:, None]
    for ex in exchanges():
        swapped = torch.stack([ex(x, images[torch.from_numpy(don[:, j])]) for j in range(donors)], 1)
        deltas = predict(classifier, swapped.flatten(0, 1)).reshape(len(rec), donors, -1) - base
        out.append(_best("exchange", ex.name, deltas, t, names, 1.0, seed))
    regions = region_set(*images.shape[-2:], scales=scales)
    for mask, name, fp in zip(regions.masks, regions.names, regions.footprints):
        swapped = torch.stack([torch.where(mask[None, None], images[torch.from_numpy(don[:, j])], x) for j in range(donors)], 1)
        deltas = predict(classifier, swapped.flatten(0, 1)).reshape(len(rec), donors, -1) - base
        out.append(_best("region", name, deltas, t, names, fp, seed))
    return out
