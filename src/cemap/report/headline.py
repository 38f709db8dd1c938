"""What a run found, in sentences: the report's first screen.

Every claim is a study's own (``headline()`` of its typed result, :mod:`cemap.studies.results`); the
report orders them, adds the one sentence on autoencoder fidelity and says which questions the run
does not answer. Nothing here computes a metric.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..causal.fidelity import MAX_MEAN_KL, MIN_AGREEMENT
from ..numbers import number, show
from ..studies.results import Claim
from .run_folder import RunFolder, WrittenResult

# The order of the questions on the first screen: localisation, the latent experiments, detection, concepts.
SOURCE_ORDER = (
    "evaluation.json",
    "metrics.json",
    "latent_controls.json",
    "study.json",
    "detection.json",
    "latent_concepts.json",
    "manifest.json",
    "explain.json",
)


@dataclass
class ShownClaim:
    """A claim with the file it comes from; ``rank`` 0 is a verdict, shown before the study's other claims."""

    claim: Claim
    source: str
    rank: int = 1

    @property
    def text(self) -> str:
        return self.claim.text

    @property
    def table(self) -> list[dict]:
        return self.claim.table


def headlines(run: RunFolder) -> list[ShownClaim]:
    """Every study's claims, in :data:`SOURCE_ORDER`, each study's verdicts first; an empty list when nothing was
    measured."""
    claims: list[ShownClaim] = []
    if run.evaluation is not None:
        claims += [ShownClaim(c, "evaluation.json") for c in run.evaluation.headline()]
    elif run.overview is not None:  # without an evaluation, the CE map's own pointing game
        claims += [ShownClaim(c, "metrics.json") for c in run.overview.headline()]
    if run.latent_controls is not None:
        claims += [ShownClaim(c, "latent_controls.json", rank=0) for c in run.latent_controls.verdicts()]
        claims += [ShownClaim(c, "latent_controls.json") for c in run.latent_controls.headline()]
    for kind, result in (
        ("detection", run.detection),
        ("latent_concepts", run.concepts),
        ("manifest", run.dataset_run),
    ):
        if result is not None:
            claims += [ShownClaim(c, f"{kind}.json") for c in result.headline()]
    for result in run.results.values():
        if isinstance(result, WrittenResult):
            claims += [ShownClaim(c, result.file) for c in result.headline()]
    order = {s: i for i, s in enumerate(SOURCE_ORDER)}
    return sorted(
        claims, key=lambda c: (order.get(c.source, len(order)), c.rank)
    )  # stable: each study's own order is kept


def fidelity_of(run: RunFolder) -> dict | None:
    """The autoencoder's fidelity, from whichever result recorded it."""
    for autoencoder in (
        run.overview and run.overview.autoencoder,
        run.explain and run.explain.autoencoder,
        run.dataset_run and run.dataset_run.autoencoder,
    ):
        if isinstance(autoencoder, dict) and isinstance(autoencoder.get("fidelity"), dict):
            return autoencoder["fidelity"]
    return None


def fidelity_sentence(run: RunFolder) -> tuple[str, str]:
    """(sentence, css class): whether latent CEs can be trusted to describe the original model. The verdict follows the
    JSON's ``ok``, and a low fidelity names the gates that failed - never a low agreement that is not low."""
    fid = fidelity_of(run)
    if fid is None:
        return (
            "Autoencoder fidelity: not computed (no latent autoencoder in this run, so no latent CE profiles).",
            "missing",
        )
    agreement, kl = fid.get("agreement"), show(fid.get("mean_kl"))
    share = f"{100 * agreement:.3g}%" if isinstance(agreement, (int, float)) else show(agreement)
    n = fid.get("n")
    where = f" on {number(n)} images" if isinstance(n, int) else ""
    outputs = f"with it inserted, the classifier takes the same decision {share} of the time{where} (mean KL {kl})"
    if fid.get("ok"):
        return f"The autoencoder is faithful: {outputs}, so the latent CE profiles describe the original model.", "ok"
    reasons = "; ".join(failed_gates(fid)) or "its fidelity check failed"
    return (
        f"The autoencoder is NOT faithful: {reasons}. {outputs[0].upper()}{outputs[1:]}; read the latent CE profiles "
        "with caution."
    ), "warn"


def failed_gates(fid: dict) -> list[str]:
    """The gates a fidelity record failed, in words: its own list, or for a record written before it kept one, the
    output gates worked out from its numbers and the autoencoder's problems."""
    if isinstance(fid.get("failed"), list):
        return [str(f) for f in fid["failed"]]
    out = []
    agreement, kl = fid.get("agreement"), fid.get("mean_kl")
    if isinstance(agreement, (int, float)) and not agreement >= MIN_AGREEMENT:
        out.append(f"decision agreement {show(agreement)} is below {MIN_AGREEMENT}")
    if isinstance(kl, (int, float)) and not kl <= MAX_MEAN_KL:
        out.append(f"mean KL {show(kl)} is above {MAX_MEAN_KL}")
    return out + [str(p) for p in fid.get("problems") or []]


def not_computed(run: RunFolder) -> list[str]:
    """The questions of the headline that this run does not answer."""
    missing = []
    if run.evaluation is None and not (run.overview and run.overview.ce_map_pointing_game):
        missing.append("which method localises best (no evaluation in this run)")
    if run.latent_controls is None:
        missing.append("how the latent profile shifts under masking and attack")
    if run.detection is None:
        missing.append("how well adversarial images are detected")
    return missing


def concept_labels(run: RunFolder) -> dict[int, str]:
    """Channel -> its best-aligned concept in words (``"Effusion, AUROC 0.93"``), for profile charts and the
    explorer."""
    return run.concepts.channel_labels() if run.concepts is not None else {}
