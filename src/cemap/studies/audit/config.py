"""The audit's settings: a quick form for the demo (seconds to a minute) and a full form (the benchmark's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The decision rule: the audit flags a model as relying on something other than the findings when the lower bound
# of the largest finding-preserving effect exceeds this. Chosen on calibration models only (training seeds that the
# benchmark never reports; docs/reliance.md, "calibration" in docs/results/reliance_benchmark.json).
RULE_THRESHOLD = 0.1


@dataclass
class AuditConfig:
    """Everything that fixes an audit's numbers.

    Args:
        n_images: audited held-out images (a seeded random subset of the test split).
        grid: cells per side of the region grid.
        fill: fill of replaced regions: swap (the same cell of another audited image), blur, mean, zero or a number.
        latent: run the latent channel interventions (fits the autoencoder on first use, then cached).
        ae_steps: optimiser steps of that autoencoder.
        known: known-artifact candidates (transforms such as "blur 0.7", mask files, or "planted").
        threshold: the decision rule's threshold on the largest finding-preserving effect's lower bound.
        quick: the quick form's battery (fewer strengths) - set by :meth:`quick_form`.
    """

    n_images: int = 300
    grid: int = 8
    fill: str = "swap"
    latent: bool = True
    ae_steps: int = 800
    known: tuple[str, ...] = ()
    threshold: float = RULE_THRESHOLD
    quick: bool = False
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick_form(cls, **overrides) -> "AuditConfig":
        """About 100 images, one or two strengths per transform and a short autoencoder fit."""
        return cls(**{"n_images": 96, "ae_steps": 200, "quick": True, **overrides})

    def to_json(self) -> dict:
        return asdict(self)
