"""The audit's settings: a quick form for the demo (seconds to a minute) and a full form (the benchmark's)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# The decision rule: the audit flags a model as relying on something other than the findings when some swapped
# property carries more than this of the decision differences between images with the same labels (lower bound of
# the largest carried difference, :mod:`cemap.studies.audit.transfer`). Chosen on calibration models only - the 24
# cxr-cnn models of training seeds 0 and 1, which the benchmark never reports: 0.0689, halfway between the largest
# normal
# model's statistic (0.045) and the smallest spurious model's (0.093); "calibration" in
# docs/results/reliance_benchmark.json.
RULE_THRESHOLD = 0.069


@dataclass
class AuditConfig:
    """Everything that fixes an audit's numbers.

    Args:
        n_images: audited held-out images (a seeded random subset of the test split).
        grid: cells per side of the region grid (the sensitivity map).
        donors: donors per recipient in the transfer analysis.
        recipients: at most this many recipients (images without findings, or of one class) in the transfer analysis.
        scales: grids of the transfer analysis's regions (besides the border band).
        fill: fill of replaced regions: swap (the same cell of another audited image), blur, mean, zero or a number.
        sensitivity: run the sensitivity battery (global transforms and exchanges on all images, the region map); the
            decision rule does not read it, so the benchmark turns it off.
        latent: run the latent channel interventions (fits the autoencoder on first use, then cached).
        ae_steps: optimiser steps of that autoencoder.
        known: known-artifact candidates (transforms such as "blur 0.7", mask files, or "planted").
        threshold: the decision rule's threshold on the largest finding-preserving effect's lower bound.
        quick: the quick form's battery (fewer strengths) - set by :meth:`quick_form`.
    """

    n_images: int = 400
    grid: int = 8
    donors: int = 8
    recipients: int = 128
    scales: tuple[int, ...] = (8, 4, 2)
    fill: str = "swap"
    sensitivity: bool = True
    latent: bool = True
    ae_steps: int = 800
    known: tuple[str, ...] = ()
    threshold: float = RULE_THRESHOLD
    quick: bool = False
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def quick_form(cls, **overrides) -> "AuditConfig":
        """About 150 images, fewer pairs, one or two strengths per transform and a short autoencoder fit."""
        return cls(**{"n_images": 160, "donors": 4, "recipients": 48, "ae_steps": 200, "quick": True, **overrides})

    def to_json(self) -> dict:
        return asdict(self)
