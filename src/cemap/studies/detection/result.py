"""The typed result of the detection study: detection.json."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results import Claim, StudyResult, json_field


@dataclass
class DetectionResult(StudyResult):
    """detection.json: every detector on the same held-out images, per attack; transfer, adaptive rows, the table."""

    FILE = "detection.json"

    dataset: str
    model: str
    layer: str
    size: str  # "quick", "demo", "full" or "custom"
    claims_: list[Claim] = json_field(key="headline", claims=True, default_factory=list)
    autoencoder_fidelity: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    detectors: dict = field(default_factory=dict)
    baselines: dict = field(default_factory=dict)
    study_config: dict = field(default_factory=dict)
    attacks: dict = field(default_factory=dict)
    signature_collapse: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    seen: list = field(default_factory=list)
    transfer: dict = field(default_factory=dict)
    adaptive: dict = field(default_factory=dict)
    adaptive_errors: dict = field(default_factory=dict)
    table: list = field(default_factory=list)  # flat rows: AUROC [95% CI] of every detector per attack, then the adaptive worst cases
    figures: dict = field(default_factory=dict)
    features_file: str = "features.npz"
    timings_s: dict = field(default_factory=dict)

    def headline(self) -> list[Claim]:
        return list(self.claims_)
