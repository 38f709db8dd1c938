"""The audit's result: what carries the model's decisions beyond the findings (ranked), what it is sensitive to
(ranked), the region, latent and known summaries, and the decision rule's verdict."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .effects import Effect
from .latent import LatentSummary
from .regions import RegionSummary
from .transfer import Transfer


def _size(item) -> float:
    x = item.carried.estimate if isinstance(item, Transfer) else item.effect.estimate
    return x if np.isfinite(x) else -np.inf


def _low(item) -> float:
    return item.carried.low if isinstance(item, Transfer) else item.effect.low


def rank(items: list) -> list:
    """Transfers or effects by size. Among those indistinguishable from the largest (estimate at or above its lower
    bound) the most local comes first: the smallest intervention that explains the top effect."""
    order = sorted(items, key=lambda e: -_size(e))
    if not order:
        return []
    lead = _low(order[0])
    tier = [e for e in order if np.isfinite(_size(e)) and _size(e) >= lead]
    rest = [e for e in order if not any(e is t for t in tier)]
    return sorted(tier, key=lambda e: (e.footprint, -_size(e))) + rest


def concern(transfers: list[Transfer]) -> tuple[float, Transfer | None]:
    """The decision rule's statistic: the largest lower bound of a carried decision difference."""
    scored = [t for t in transfers if np.isfinite(t.carried.low)]
    if not scored:
        return float("nan"), None
    best = max(scored, key=lambda t: t.carried.low)
    return float(best.carried.low), best


@dataclass
class AuditResult:
    """What the model relies on (``reliance``: ranked transfers), what it is sensitive to (``sensitivity``: ranked
    effects), the region, latent and known summaries, and the verdict of the rule fixed in advance (``flagged``)."""

    model: str
    dataset: str
    n_images: int
    has_boxes: bool
    reliance: list[Transfer]
    sensitivity: list[Effect]
    regions: RegionSummary | None
    latent: LatentSummary | None
    known: list[Effect]
    concern: float
    concern_transfer: Transfer | None
    threshold: float
    config: dict
    timings_s: dict = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        return bool(np.isfinite(self.concern) and self.concern > self.threshold)

    def headline(self) -> list[dict]:
        """Plain-language claims, each with its numbers."""
        from .claims import claims

        return claims(self)

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "dataset": self.dataset,
            "n_images": self.n_images,
            "has_boxes": self.has_boxes,
            "flagged": self.flagged,
            "concern": self.concern,
            "threshold": self.threshold,
            "concern_transfer": None if self.concern_transfer is None else self.concern_transfer.to_json(),
            "headline": self.headline(),
            "reliance": [t.to_json() for t in self.reliance],
            "sensitivity": [e.to_json() for e in self.sensitivity],
            "regions": None if self.regions is None else self.regions.to_json(),
            "latent": None
            if self.latent is None
            else {**self.latent.to_json(), "channels": [e.to_json() for e in self.latent.effects]},
            "known": [e.to_json() for e in self.known],
            "config": self.config,
            "timings_s": self.timings_s,
        }
