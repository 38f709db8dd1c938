"""The causal reliance audit (issue 25): what does the model rely on, beyond the findings?

``run_audit(ctx, config) -> AuditResult``: a battery of interventions on held-out images - global transforms
(:mod:`.global_effects`), regions (:mod:`.regions`), latent channels (:mod:`.latent`) and the user's known
candidates (:mod:`.known`) - each effect with an interval, ranked (:mod:`.result`), and one verdict from a rule
fixed in advance: flag the model when an intervention that leaves the annotated findings intact moves a finding.
"""

from __future__ import annotations

import time

from .config import RULE_THRESHOLD, AuditConfig
from .effects import Effect
from .result import AuditResult, concern, rank

__all__ = ["RULE_THRESHOLD", "AuditConfig", "AuditResult", "Effect", "run_audit"]


def run_audit(ctx, config: AuditConfig | None = None) -> AuditResult:
    """Audit ``ctx.classifier`` on ``ctx.test`` (see the package docstring); ``config`` defaults to the full form."""
    from .global_effects import global_effects
    from .inputs import audit_autoencoder, audited_inputs
    from .known import candidate, known_effects
    from .latent import latent_effects
    from .regions import region_effects

    cfg, clf, times, t = config or AuditConfig(), ctx.classifier, {}, time.perf_counter()
    inp = audited_inputs(ctx, cfg.n_images)
    times["inputs"], t = time.perf_counter() - t, time.perf_counter()
    glob = global_effects(clf, inp.images, inp.p0, inp.y, inp.findings_mask, cfg.quick, ctx.generator("audit-global"), cfg.seed)
    times["global"], t = time.perf_counter() - t, time.perf_counter()
    regions = region_effects(clf, inp.images, inp.p0, inp.y, inp.boxes_by_finding, cfg.grid, cfg.fill, cfg.seed)
    times["regions"], t = time.perf_counter() - t, time.perf_counter()
    latent = latent_effects(clf, audit_autoencoder(ctx, cfg.ae_steps), inp.images, inp.y, cfg.seed) if cfg.latent else None
    times["latent"], t = time.perf_counter() - t, time.perf_counter()
    size = tuple(inp.images.shape[-2:])
    known = known_effects(clf, inp.images, inp.indices, inp.y, [candidate(s, ctx.test, size, cfg.fill, cfg.seed) for s in cfg.known], cfg.seed)
    times["known"] = time.perf_counter() - t
    cells, per_image = regions.effects[:-1], regions.effects[-1]
    score, worst = concern(glob + regions.effects)
    return AuditResult(
        model=clf.name, dataset=getattr(ctx.test, "name", ctx.dataset), n_images=len(inp.indices), has_boxes=inp.has_boxes,
        ranking=rank(glob + cells + known), region_summary=per_image, regions=regions, latent=latent, known=known,
        concern=score, concern_effect=worst, threshold=cfg.threshold, config=cfg.to_json(), timings_s={k: round(v, 2) for k, v in times.items()},
    )
