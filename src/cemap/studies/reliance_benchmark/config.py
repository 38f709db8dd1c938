"""The reliance benchmark's settings: everything that fixes its numbers, written into the result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

ARTIFACTS = ("tag", "letter", "grid", "blur", "contrast", "noise")
METHODS = ("integrated-gradients", "gradcam", "rise", "kernelshap", "ce-ms")
HELDOUT_SEED = 20261130  # synthcxr generator seed of the held-out test images: used for no choice
TEST_ARTIFACT_SEED = 7  # who carries the artifact among the held-out images (independent of the labels)


@dataclass
class RelianceBenchmarkConfig:
    """Args:
    artifacts: planted artifact kinds.
    reported_seeds: training seeds whose models are reported.
    calibration_seeds: training seeds whose models only choose thresholds (never reported).
    size: synthcxr side in pixels.
    n_verify: held-out images of the reliance verification.
    n_attr: held-out images with findings explained by every attribution method (per model).
    audit_images: held-out images the audit sees; audit_donors, audit_recipients: its pairs (see AuditConfig).
    method_options: keyword options per attribution method.
    max_false_alarm: the false-alarm rate every threshold must keep on calibration normal models.
    """

    artifacts: tuple[str, ...] = ARTIFACTS
    reported_seeds: tuple[int, ...] = (2, 3, 4, 5, 6)
    calibration_seeds: tuple[int, ...] = (0, 1)
    size: int = 64
    heldout_seed: int = HELDOUT_SEED
    test_artifact_seed: int = TEST_ARTIFACT_SEED
    n_verify: int = 600
    n_attr: int = 16
    audit_images: int = 400
    audit_donors: int = 6
    audit_recipients: int = 64
    methods: tuple[str, ...] = METHODS
    method_options: dict = field(default_factory=lambda: {"kernelshap": {"n_samples": 128}, "rise": {"n_masks": 500}})
    tcav_concept_images: int = 48
    max_false_alarm: float = 0.1
    seed: int = 0

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.calibration_seeds) + tuple(self.reported_seeds)

    def role(self, seed: int) -> str:
        return "calibration" if seed in self.calibration_seeds else "reported"

    def to_json(self) -> dict:
        return asdict(self)
