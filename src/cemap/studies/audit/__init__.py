"""The causal reliance audit (issue 25): what does the model rely on, beyond the findings?

``run_audit(ctx, config) -> AuditResult`` intervenes on held-out images: what carries the model's decisions between
images with the same labels (:mod:`.transfer`, the decision rule's evidence), and what it is sensitive to - global
transforms and exchanges (:mod:`.global_effects`), regions (:mod:`.regions`), latent channels (:mod:`.latent`) and
the user's known candidates (:mod:`.known`) - each effect with an interval, ranked (:mod:`.result`), with one verdict
from a rule fixed in advance (:data:`RULE_THRESHOLD`).
"""

from __future__ import annotations

import time

from .config import RULE_THRESHOLD, AuditConfig
from .effects import Effect
from .result import AuditResult, concern, rank
from .transfer import Transfer

__all__ = ["RULE_THRESHOLD", "AuditConfig", "AuditResult", "Effect", "Transfer", "run_audit"]


def run_audit(ctx, config: AuditConfig | None = None) -> AuditResult:
    """Audit ``ctx.classifier`` on ``ctx.test`` (see the package docstring); ``config`` defaults to the full form."""
    from .inputs import audit_autoencoder, audited_inputs
    from .known import candidate, known_effects
    from .latent import latent_effects
    from .transfer import transfer_analysis

    cfg, clf, times = config or AuditConfig(), ctx.classifier, {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        times[name], t = round(time.perf_counter() - t, 2), time.perf_counter()

    inp = audited_inputs(ctx, cfg.n_images)
    transfers = transfer_analysis(
        clf,
        inp.images,
        inp.labels,
        inp.image_has_boxes,
        inp.findings_mask,
        cfg.donors,
        cfg.recipients,
        cfg.scales,
        cfg.seed,
    )
    lap("transfer")
    glob, regions = _sensitivity(ctx, cfg, inp) if cfg.sensitivity else ([], None)
    lap("sensitivity")
    latent = (
        latent_effects(clf, audit_autoencoder(ctx, cfg.ae_steps), inp.images, inp.y, cfg.seed) if cfg.latent else None
    )
    lap("latent")
    size = tuple(inp.images.shape[-2:])
    candidates = [candidate(s, ctx.test, size, cfg.fill, cfg.seed) for s in cfg.known]
    known = known_effects(clf, inp.images, inp.indices, inp.y, candidates, cfg.seed)
    lap("known")
    score, worst = concern(transfers)
    return AuditResult(
        model=clf.name,
        dataset=getattr(ctx.test, "name", "") or ctx.dataset,
        n_images=len(inp.indices),
        has_boxes=inp.has_boxes,
        reliance=rank(transfers),
        sensitivity=rank(glob + (regions.effects if regions else [])),
        regions=regions,
        latent=latent,
        known=known,
        concern=score,
        concern_transfer=worst,
        threshold=cfg.threshold,
        config=cfg.to_json(),
        timings_s=times,
    )


def _sensitivity(ctx, cfg: AuditConfig, inp) -> tuple[list, object]:
    """The global transforms and the region interventions on the audited images (what the model is sensitive to)."""
    from .global_effects import global_effects
    from .regions import region_effects

    clf = ctx.classifier
    glob = global_effects(
        clf, inp.images, inp.p0, inp.y, inp.findings_mask, cfg.quick, ctx.generator("audit-global"), cfg.seed
    )
    regions = region_effects(clf, inp.images, inp.p0, inp.y, inp.boxes_by_finding, cfg.grid, cfg.fill, cfg.seed)
    return glob, regions
