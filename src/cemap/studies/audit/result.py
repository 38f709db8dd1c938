"""The audit's result: every effect ranked, the decision rule's verdict, and its claims in words."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .effects import Effect
from .latent import LatentSummary
from .regions import RegionSummary


def rank(effects: list[Effect]) -> list[Effect]:
    """Effects by size (mean absolute probability change). Among those indistinguishable from the largest (estimate
    at or above its lower bound) the most local comes first: the smallest intervention that explains the top effect."""
    order = sorted(effects, key=lambda e: -e.effect.estimate if np.isfinite(e.effect.estimate) else np.inf)
    if not order:
        return []
    lead = order[0].effect.low
    tier = [e for e in order if np.isfinite(e.effect.estimate) and e.effect.estimate >= lead]
    rest = [e for e in order if not any(e is t for t in tier)]
    return sorted(tier, key=lambda e: (e.footprint, -e.effect.estimate)) + rest


def concern(effects: list[Effect]) -> tuple[float, Effect | None]:
    """The decision rule's statistic: the largest lower bound among finding-preserving effects."""
    preserving = [e for e in effects if e.preserves_findings and np.isfinite(e.effect.low)]
    if not preserving:
        return float("nan"), None
    best = max(preserving, key=lambda e: e.effect.low)
    return float(best.effect.low), best


@dataclass
class AuditResult:
    """What the model relies on: every effect (ranked), the region, latent and known summaries and the verdict."""

    model: str
    dataset: str
    n_images: int
    has_boxes: bool
    ranking: list[Effect]
    region_summary: Effect | None
    regions: RegionSummary | None
    latent: LatentSummary | None
    known: list[Effect]
    concern: float
    concern_effect: Effect | None
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
            "model": self.model, "dataset": self.dataset, "n_images": self.n_images, "has_boxes": self.has_boxes,
            "flagged": self.flagged, "concern": self.concern, "threshold": self.threshold,
            "concern_effect": None if self.concern_effect is None else self.concern_effect.to_json(),
            "headline": self.headline(),
            "ranking": [e.to_json() for e in self.ranking],
            "region_summary": None if self.region_summary is None else self.region_summary.to_json(),
            "regions": None if self.regions is None else self.regions.to_json(),
            "latent": None if self.latent is None else {**self.latent.to_json(), "channels": [e.to_json() for e in self.latent.effects]},
            "known": [e.to_json() for e in self.known],
            "config": self.config, "timings_s": self.timings_s,
        }
