"""What a study returns: a typed result with its numbers, its headline claims and its JSON file.

Every study is ``run_<study>(ctx, config) -> <Study>Result``. A result is a dataclass built once from the study's own
state; ``to_json()`` is exactly the file the study writes, ``from_json()`` reads that file back (the report reads run
folders this way, so study and report share one contract), and ``headline()`` gives the claims the report shows first.
The result types live here, together and light (no torch, no explainers), so that the report can read a folder without
importing the studies' machinery.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..jsonio import write_json
from ..numbers import estimate, is_interval, number, show

R = TypeVar("R", bound="StudyResult")


@dataclass
class Claim:
    """One finding in words, with the table of numbers behind it."""

    text: str
    table: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"claim": self.text, "table": self.table}

    @classmethod
    def from_json(cls, entry: dict) -> "Claim":
        return cls(str(entry["claim"]), list(entry.get("table") or []))


def json_field(
    default: Any = MISSING, *, key: str | None = None, omit_none: bool = False, claims: bool = False, **kw: Any
) -> Any:
    """A field written as a key of the result's JSON file.

    Args:
        key: the JSON key (default: the field's name).
        omit_none: leave the key out while the value is None.
        claims: the value is a list of :class:`Claim` (written as ``{"claim", "table"}`` objects).
    """
    if default is not MISSING:
        kw["default"] = default
    return field(metadata={"json": True, "key": key, "omit_none": omit_none, "claims": claims}, **kw)


def state(**kw: Any) -> Any:
    """A field kept in memory only (arrays, images for figures, fitted objects): never written."""
    return field(repr=False, compare=False, metadata={"json": False}, **kw)


class StudyResult:
    """Base of the typed results (each a dataclass): the JSON file is every field not marked :func:`state`, in order."""

    FILE: ClassVar[str] = ""  # the file in the run folder (``evaluation.json``, ...)

    @classmethod
    def _json_fields(cls) -> list:
        return [f for f in fields(cls) if f.metadata.get("json", True)]

    def to_json(self) -> dict:
        out = {}
        for f in self._json_fields():
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.metadata.get("key") or f.name] = [c.to_json() for c in value] if f.metadata.get("claims") else value
        return out

    @classmethod
    def from_json(cls: type[R], doc: Any) -> R:
        """The result as a study wrote it; a document without this result's keys is a ValueError naming them."""
        if not isinstance(doc, dict):
            raise ValueError(f"{cls.FILE} holds a JSON {type(doc).__name__}, not an object")
        values, absent = {}, []
        for f in cls._json_fields():
            key = f.metadata.get("key") or f.name
            if key in doc:
                value = doc[key]
                values[f.name] = (
                    [Claim.from_json(c) for c in value if isinstance(c, dict) and "claim" in c]
                    if f.metadata.get("claims")
                    else value
                )
            elif f.default is MISSING and f.default_factory is MISSING:
                absent.append(key)
        if absent:
            raise ValueError(f"{cls.FILE} lacks {', '.join(absent)}: not a result of this version of cemap")
        return cls(**values)

    def headline(self) -> list[Claim]:
        """The study's claims, most important first."""
        return []

    def write(self, folder: Path, indent: int | None = 2, compact: bool = False) -> Path:
        """``folder/FILE`` holding :meth:`to_json` (strict JSON: NaN as null)."""
        return write_json(Path(folder) / self.FILE, self.to_json(), indent=indent, compact=compact)


# ---------------------------------------------------------------- the studies' results


@dataclass
class OverviewResult(StudyResult):
    """metrics.json: the classifier, its autoencoder, the CE map's settings and the shown images' latent profiles."""

    FILE = "metrics.json"

    dataset: str
    model: str
    layer: str
    split_method: str
    classifier: dict  # macro_auroc and per-finding auroc (sigmoid) or accuracy (softmax), on the test split
    autoencoder: dict  # code_channels, fidelity, per_finding_agreement (sigmoid)
    ce_map_pointing_game: dict | None = json_field(None, omit_none=True)  # data with boxes only
    ce_map: dict = field(default_factory=dict)
    images: list = field(default_factory=list)
    latent_profiles: list = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)

    @property
    def fidelity(self) -> dict:
        return self.autoencoder["fidelity"]

    def headline(self) -> list[Claim]:
        pg = self.ce_map_pointing_game
        if not pg or pg.get("hit_rate") is None:
            return []
        return [
            Claim(
                f"The CE map hits the true box in {show(pg['hit_rate'])} of {number(pg.get('n'))} image-finding pairs "
                "(pointing game); "
                "no baselines were compared in this run."
            )
        ]


@dataclass
class EvaluationResult(StudyResult):
    """evaluation.json: one row per method, every metric over the same (image, finding) pairs."""

    FILE = "evaluation.json"

    dataset: str
    dataset_options: dict
    model: str
    model_fingerprint: str
    n_images: int
    n_pairs: int
    config: dict
    ce_tuning: dict | None
    rows: list[dict]
    seconds: float
    figures: dict = json_field(default_factory=dict)
    train_seed: int = 0  # the built-in model's training seed (another seed, another model)

    def headline(self) -> list[Claim]:
        """Which method localises best, by how much, where CE ranks and what the floors score (from the rows)."""
        return localisation_claims(self.rows, self.n_pairs)


# evaluation rows in the headline's table: (key, words)
HEADLINE_METRICS = [
    ("pointing_game", "pointing game"),
    ("energy_pointing", "energy inside the box"),
    ("deletion_auc", "deletion AUC"),
    ("insertion_auc", "insertion AUC"),
]
FLOORS = ("random", "centre", "center")


def localisation_claims(rows: list[dict], n_pairs: int | None) -> list[Claim]:
    """The method that localises best (pointing game), its lead, the CE map's rank and the floors, with a small
    table."""
    scored = [r for r in rows if estimate(r.get("pointing_game")) is not None]
    if not scored:
        return [Claim("Localisation: not computed (the evaluation recorded no pointing game).")]
    real = [r for r in scored if r["method"].lower() not in FLOORS] or scored
    score = lambda r: estimate(r["pointing_game"])  # noqa: E731
    ranked = sorted(real, key=score, reverse=True)
    best = ranked[0]
    tied = [r for r in ranked[1:] if abs(score(r) - score(best)) < 1e-9]
    text = (
        f"{best['method']} and {', '.join(r['method'] for r in tied)} localise best, tied: pointing game "
        f"{show(best['pointing_game'])}"
        if tied
        else f"{best['method']} localises best: pointing game {show(best['pointing_game'])}"
    )
    rest = [r for r in ranked[1:] if r not in tied]
    if rest:
        text += (
            f", {number(score(best) - score(rest[0]), 2)} above the next, {rest[0]['method']} "
            f"({show(rest[0]['pointing_game'])})"
        )
    ce = next((r for r in ranked if r["method"].lower() == "ce"), None)
    if ce is not None and ce is not best and ce not in tied:
        text += f"; the CE map scores {show(ce['pointing_game'])} (rank {ranked.index(ce) + 1} of {len(ranked)})"
    floors = [r for r in scored if r["method"].lower() in FLOORS]
    if floors:
        text += "; floors: " + ", ".join(f"{r['method']} {show(r['pointing_game'])}" for r in floors)
    text += f" (over {number(n_pairs)} image-finding pairs)" if isinstance(n_pairs, int) else ""
    if not is_interval(best["pointing_game"]) and isinstance(n_pairs, int) and n_pairs > 0:
        text += (
            f". No intervals were recorded; one pair moves a score by {number(1 / n_pairs, 2)}, so small gaps "
            "decide nothing"
        )
    keys = [(k, words) for k, words in HEADLINE_METRICS if any(k in r for r in rows)]
    picked = (
        ranked[:3] + ([ce] if ce is not None and ce not in ranked[:3] else []) + floors
    )  # every row is in the evaluation section
    return [Claim(text + ".", [{"method": r["method"], **{words: r.get(k) for k, words in keys}} for r in picked])]


MEASURES = {
    "ece_l1": "L1 shift of the latent ECE profile",
    "finding_l1": "L1 shift of the finding's own latent class-CE profile",
    "finding_drop": "drop of the finding's probability p_AE(f|x) - p_AE(f|x_do)",
    "aligned_minus_other": "mean |shift| of channels aligned with the finding minus mean |shift| of the others (ECE "
    "profile)",
    "ece_l1_per_pixel_l2": "L1 shift of the latent ECE profile per unit of pixel change (divided by the L2 norm of "
    "x_do - x)",
}


WHAT = (
    "the paper's latent experiments (mask the finding, attack the image) beside matched controls on the same "
    "held-out test images; per-image paired bootstrap intervals; per-channel Wilcoxon tests, Holm-corrected"
)


@dataclass
class LatentControlsResult(StudyResult):
    """latent_controls.json: each of the paper's latent experiments beside its control, and the verdict on each
    claim."""

    FILE = "latent_controls.json"

    what: str = json_field(WHAT)
    claims_: list[Claim] = json_field(key="headline", claims=True, default_factory=list)
    claims: dict = field(
        default_factory=dict
    )  # lesion_specific / adversarial_specific: the claim, its forms, the verdict
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
        return [
            Claim(f"The paper's claim that {c['claim']}: {str(c['verdict']).rstrip('.')}.")
            for c in self.claims.values()
            if isinstance(c, dict) and c.get("claim") and c.get("verdict")
        ]


@dataclass
class ConceptsResult(StudyResult):
    """latent_concepts.json: what each latent channel Z_j responds to
    (:class:`cemap.evaluate.concepts.ConceptTable`)."""

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
        text += (
            (f" ({', '.join(map(str, yes))})" if yes else "")
            + (f"; none for {', '.join(map(str, no))}" if no else "")
            + "."
        )
        return [Claim(text)]

    def channel_labels(self) -> dict[int, str]:
        """Channel -> its best-aligned concept in words (``"Effusion, AUROC 0.93"``), for the aligned channels."""
        out = {}
        for j, text in enumerate(self.labels):
            _, sep, words = str(text).partition(" - ")
            if sep:
                out[j] = words.strip()
        return out


@dataclass
class DetectionResult(StudyResult):
    """detection.json: every detector on the same held-out images, per attack; transfer, adaptive rows, the table."""

    FILE = "detection.json"

    dataset: str
    model: str
    layer: str
    size: str  # "quick", "demo", "full" or "custom"
    claims_: list[Claim] = json_field(key="headline", claims=True, default_factory=list)
    train_seed: int = 0  # the classifier's training seed (0: the built-in model)
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
    table: list = field(
        default_factory=list
    )  # flat rows: AUROC [95% CI] of every detector per attack, then the adaptive worst cases
    figures: dict = field(default_factory=dict)
    features_file: str = "features.npz"
    timings_s: dict = field(default_factory=dict)

    def headline(self) -> list[Claim]:
        return list(self.claims_)


@dataclass
class DemoResult(StudyResult):
    """study.json: what the demo ran, each stage's summary, its timings and which stages were restored from the
    cache."""

    FILE = "study.json"

    dataset: str
    model: str
    layer: str
    quick: bool
    seed: int
    settings: dict
    latent_controls: dict  # the verdicts on the paper's latent claims and the files
    profile_images: list
    evaluation: dict  # images, pairs, the methods compared and those that do not apply to the model
    detection: dict
    audit: dict = field(default_factory=dict)  # the reliance audit's verdict (audit.json holds the rest)
    timings_s: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)  # per cached stage: computed_s and, when restored, restored_from
    overview: OverviewResult | None = state(default=None)


@dataclass
class ExplainResult(StudyResult):
    """explain.json: the model, the methods and, per image, the explained class, its probability and its files."""

    FILE = "explain.json"

    model: str
    layer: str | None
    methods: list
    n_images: int
    images: list  # per file: file, target, probability, overlay, json
    figures: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)
    autoencoder: dict | None = json_field(
        None, omit_none=True
    )  # fit_on, fit_images, fit_skipped, code_channels, fidelity (with --fit-on)
    preprocessing: dict = field(default_factory=dict)  # input shape, resize, normalisation and where each came from
    skipped: list = field(default_factory=list)  # files that could not be read: file, error


@dataclass
class BenchResult(StudyResult):
    """bench.json: every figure of ``cemap bench``, each a ratio from one run on the same inputs."""

    FILE = "bench.json"

    config: dict
    environment: dict
    model: dict
    ce_map: dict
    latent_sweep: dict
    pgd: dict
    incremental: dict = field(default_factory=dict)
    efficiency: dict = field(default_factory=dict)
    adaptive_quality: dict | None = json_field(None, omit_none=True)
    pgd_quality: dict | None = json_field(None, omit_none=True)

    def headline(self) -> list[Claim]:
        """The speed-ups against the anchors, measured in this run."""
        c, lat = self.ce_map, self.latent_sweep
        text = (
            f"{self.model['name']}: the dense CE map runs {c['speedup_vs_best_captum']['dense_fp32']:.2f}x as fast as "
            "Captum's best setting "
            f"({c['best_captum']}), the latent sweep {lat['speedup_vs_reference']['cemap_fp32']:.2f}x as fast as one "
            "forward pass per intervention"
        )
        if "speedup_vs_torchattacks_fp32" in self.pgd:
            text += f", PGD {self.pgd['speedup_vs_torchattacks_fp32']['fp32']:.2f}x as fast as torchattacks"
        return [Claim(text + " (fp32, medians of the repeats).")]
