"""The typed results of the latent controls study: latent_controls.json and latent_concepts.json."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results import Claim, StudyResult, json_field
from .measures import MEASURES

WHAT = ("the paper's latent experiments (mask the finding, attack the image) beside matched controls on the same "
        "held-out test images; per-image paired bootstrap intervals; per-channel Wilcoxon tests, Holm-corrected")


@dataclass
class LatentControlsResult(StudyResult):
    """latent_controls.json: each of the paper's latent experiments beside its control, and the verdict on each claim."""

    FILE = "latent_controls.json"

    what: str = json_field(WHAT)
    claims_: list[Claim] = json_field(key="headline", claims=True, default_factory=list)
    claims: dict = field(default_factory=dict)  # lesion_specific / adversarial_specific: the claim, its forms, the verdict
    dataset: str = ""
    model: str = ""
    layer: str = ""
    n_images: int = 0
    images: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    measures: dict = field(default_factory=lambda: dict(MEASURES))
    masking: dict = field(default_factory=dict)
    adversarial: dict = field(default_factory=dict)
    concepts: dict = field(default_factory=dict)  # the concept table's file, coverage and channel labels
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    files: dict = field(default_factory=dict)

    def headline(self) -> list[Claim]:
        return list(self.claims_)

    def verdicts(self) -> list[Claim]:
        """The verdict on each of the paper's latent claims, once controlled: what a reader should know first."""
        return [Claim(f"The paper's claim that {c['claim']}: {str(c['verdict']).rstrip('.')}.")
                for c in self.claims.values() if isinstance(c, dict) and c.get("claim") and c.get("verdict")]


@dataclass
class ConceptsResult(StudyResult):
    """latent_concepts.json: what each latent channel Z_j responds to (:class:`cemap.evaluate.concepts.ConceptTable`)."""

    FILE = "latent_concepts.json"

    dataset: str
    model: str
    images: list
    what: str
    layer: str
    n_images: int
    concepts: list
    positives: dict
    box_area: dict
    labels: list  # per channel: "Z2 - Effusion, AUROC 0.93", or "Z5" where no concept aligns
    coverage: dict
    rows: list

    def headline(self) -> list[Claim]:
        """How many concepts have a channel aligned with them."""
        yes, no, t = self.coverage["aligned"], self.coverage["not_aligned"], self.coverage["threshold"]
        text = f"{len(yes)} of {len(yes) + len(no)} concepts have a latent channel aligned with AUROC >= {t}"
        text += (f" ({', '.join(map(str, yes))})" if yes else "") + (f"; none for {', '.join(map(str, no))}" if no else "") + "."
        return [Claim(text)]

    def channel_labels(self) -> dict[int, str]:
        """Channel -> its best-aligned concept in words (``"Effusion, AUROC 0.93"``), for the aligned channels."""
        out = {}
        for j, text in enumerate(self.labels):
            _, sep, words = str(text).partition(" - ")
            if sep:
                out[j] = words.strip()
        return out
