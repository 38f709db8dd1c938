"""What carries the model's decisions beyond the findings: property exchanges between images with the same labels.

Between audited images that have the same labels, the labels explain none of the differences between the model's
outputs. For a recipient image r and a donor d with r's labels, an intervention swaps one property of d into r -
a region (:func:`cemap.causal.regions.region_set`) or a global property (fine or mid spatial-frequency texture,
brightness and contrast; :data:`cemap.causal.global_interventions.SWAPS`) - *outside the annotated findings of both
images* (their boxes keep r's pixels, and a region that touches either image's boxes is not swapped for that pair),
and asks whether r's output moves toward d's. Images with a finding but no box for it (its place unknown) take no
part; in single-label data without boxes the pairs are images of the same class. With t = p_f(d) - p_f(r) and
delta = p_f(r with d's property) - p_f(r) for finding f, over all pairs:

    carried_f = mean(delta * t) / sqrt(mean(t^2))

If the property carries a share beta of the decision difference (delta = beta t + noise), carried = beta rms(t): the
probability the property moves between images of the same labels, in the units of the other effects. A model that
learnt only the findings has little to carry here (its outputs barely differ between finding-free images) and what
it has is not carried by any one swapped property; a model that learnt a signal tied to a finding - a tag, a letter,
a grid, a scanner's blur, contrast or noise - varies with that signal, and the swap carries it. Intervals resample
recipients (percentile bootstrap). The decision rule reads the largest lower bound
(:func:`cemap.studies.audit.result.concern`).
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
        return {
            "family": self.family,
            "name": self.name,
            "finding": self.finding,
            "carried": self.carried.to_json(),
            "slope": round(self.slope, 4),
            "rms_difference": round(self.rms_difference, 4),
            "footprint": round(self.footprint, 4),
            "n_pairs": self.n_pairs,
            "detail": self.detail,
        }

    @property
    def label(self) -> str:
        return self.name


def pair_pool(labels: np.ndarray, has_boxes: np.ndarray, multilabel: bool) -> list[np.ndarray]:
    """Groups of audited images with identical labels whose findings are all located: multi-label images without any
    finding or with boxes; single-label images by class."""
    labels = labels.reshape(len(labels), -1)
    if multilabel:
        located = (labels.sum(1) == 0) | has_boxes
        _, group = np.unique(labels, axis=0, return_inverse=True)
    else:
        located, group = np.ones(len(labels), dtype=bool), labels[:, 0]
    groups = [np.flatnonzero((group.reshape(-1) == g) & located) for g in np.unique(group)]
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


def carried(
    delta: np.ndarray, t: np.ndarray, valid: np.ndarray | None = None, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[Interval, float, float]:
    """(carried with its interval over recipients, slope, rms(t)) for one finding; ``delta``, ``t``, ``valid``: R x D
    (``valid``: the pairs where the swap was made)."""
    w = np.ones_like(t) if valid is None else valid.astype(float)
    a, b, c = (w * delta * t).sum(1), (w * t * t).sum(1), w.sum(1)  # per recipient
    if c.sum() == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0), nan, nan
    est = a.sum() / max(np.sqrt(b.sum() * c.sum()), 1e-12)
    idx = resample_indices(len(a), n_boot, seed)
    draws = a[idx].sum(1) / np.maximum(np.sqrt(b[idx].sum(1) * c[idx].sum(1)), 1e-12)
    slope = a.sum() / max(b.sum(), 1e-12)
    return (
        Interval(float(est), *percentile_interval(draws), int((c > 0).sum())),
        float(slope),
        float(np.sqrt(b.sum() / c.sum())),
    )


def _best(
    family, name, deltas: np.ndarray, t: np.ndarray, valid: np.ndarray, names: list[str], footprint: float, seed: int
) -> Transfer:
    """The Transfer of the finding the swap carries most (``deltas``, ``t``: R x D x K; ``valid``: R x D)."""
    rows = [carried(deltas[..., k], t[..., k], valid, seed=seed) for k in range(t.shape[2])]
    k = int(np.nanargmax([r[0].estimate if np.isfinite(r[0].estimate) else -np.inf for r in rows]))
    per = {c: round(r[0].estimate, 4) for c, r in zip(names, rows)}
    return Transfer(
        family, name, names[k], rows[k][0], rows[k][1], rows[k][2], footprint, int(valid.sum()), {"per_finding": per}
    )


def _swapped(images: torch.Tensor, rec: np.ndarray, don: np.ndarray, keep: torch.Tensor, swap) -> torch.Tensor:
    """R*D images: each recipient with ``swap(recipient, donor)`` applied outside ``keep`` (R x D x H x W)."""
    x = images[torch.from_numpy(rec)]
    out = [torch.where(keep[:, j, None], x, swap(x, images[torch.from_numpy(don[:, j])])) for j in range(don.shape[1])]
    return torch.stack(out, 1).flatten(0, 1)


def transfer_analysis(
    classifier,
    images: torch.Tensor,
    labels: np.ndarray,
    has_boxes: np.ndarray,
    findings_mask: torch.Tensor | None,
    donors: int = 8,
    max_recipients: int = 128,
    scales: tuple[int, ...] = (8, 4, 2),
    seed: int = 0,
) -> list[Transfer]:
    """Transfers of every region and every exchange over same-label pairs (empty when no pair exists).

    ``findings_mask``: N x H x W pixels of each image's annotated findings (None without boxes)."""
    groups = pair_pool(labels, has_boxes, classifier.multilabel)
    if not groups:
        return []
    rec, don = draw_pairs(groups, donors, max_recipients, seed)
    p = predict(classifier, images)
    t, base = p[don] - p[rec][:, None], p[rec][:, None]  # R x D x K
    h, w = images.shape[-2:]
    fm = torch.zeros(len(images), h, w, dtype=torch.bool) if findings_mask is None else findings_mask
    keep = fm[torch.from_numpy(rec)][:, None] | fm[torch.from_numpy(don)]  # R x D x H x W: both images' findings
    names, out, k = classifier.class_names, [], len(rec)

    def deltas(swapped: torch.Tensor) -> np.ndarray:
        return predict(classifier, swapped).reshape(k, donors, -1) - base

    everywhere = np.ones((k, donors), dtype=bool)
    for ex in exchanges():
        out.append(
            _best("exchange", ex.name, deltas(_swapped(images, rec, don, keep, ex)), t, everywhere, names, 1.0, seed)
        )
    regions = region_set(h, w, scales=scales)
    for mask, name, fp in zip(regions.masks, regions.names, regions.footprints):
        valid = ~(keep & mask).flatten(2).any(2).numpy()  # the region touches neither image's findings
        region_swap = lambda x, d, m=mask: torch.where(m, d, x)  # noqa: E731
        out.append(
            _best("region", name, deltas(_swapped(images, rec, don, keep, region_swap)), t, valid, names, fp, seed)
        )
    return out
