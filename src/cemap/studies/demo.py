"""The full study behind ``cemap demo``: the paper's experiments and cemap's measurements, one run folder, one report.

Stages, each timed:
1. overview - train or load the built-in model and its latent autoencoder, CE maps and clean latent
   CE profiles (``cemap.studies.overview.run_overview``: metrics.json, ce_maps.png, latent_profiles.png);
2. latent_controls - the paper's latent experiments (the finding's box masked, a PGD attack) each
   beside its control (the same box elsewhere in the lung, matched noise), with intervals
   (:mod:`cemap.studies.latent_controls`), and what each latent channel responds to (latent_concepts.json);
3. evaluation - CE maps against every baseline on ground truth (evaluation.json, overlays.png);
4. detection - attacks, CE-signature detector and its baselines (detection.json, ROC, histograms);
5. audit - what the model relies on beyond the findings, by intervention (audit.json, the quick battery of
   :mod:`cemap.studies.audit`; ``cemap audit`` runs the full one);
6. study.json; ``cemap demo`` then renders report.html (:mod:`cemap.report`).

Stages 1-5 are kept in the cache (:mod:`cemap.studies.stage_cache`): rerunning the same study with the same
model and code restores them, and study.json's ``stages`` says which were restored and what they cost.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace

from ..causal.autoencoder import model_fingerprint
from ..errors import CemapError
from ..explain import get_explainer
from ..cache import save_json_atomic
from ..progress import progress_bar
from .audit import AuditConfig, run_audit
from .context import StudyContext
from .detection import DetectionConfig, run_detection
from .evaluation import EvalConfig, run_evaluation
from .latent_controls import LatentControlsConfig, LatentControlsResult, run_latent_controls
from .overview import OverviewConfig, OverviewResult, run_overview
from .results import DemoResult
from .stage_cache import run_cached


@dataclass(frozen=True)
class StudyPlan:
    """How much of each stage to run; ``quick`` is a small subset of the same study."""

    figure_images: int = 8
    profile_images: int = 64
    pgd_steps: int = 20
    placements: int = 4  # control placements of each masked lesion box
    eval_images: int = 64  # `cemap evaluate` runs the full test split; the demo's intervals are wider
    eval_robust: int = 16
    eval_steps: int = 16
    tune_images: int = 40  # train images CE's settings are chosen on
    audit_images: int = 96

    @classmethod
    def for_mode(cls, quick: bool) -> "StudyPlan":
        if quick:
            return cls(
                figure_images=4,
                profile_images=16,
                pgd_steps=5,
                placements=2,
                eval_images=8,
                eval_robust=4,
                eval_steps=8,
                tune_images=12,
                audit_images=24,
            )
        return cls()


# The demo compares CE with the CAM family, Occlusion, IG and the floors; the perturbation peers (RISE, Kernel SHAP)
# and the multi-scale CE map cost minutes per image set on a CPU and run in `cemap evaluate --benchmark`.
DEMO_METHODS = (
    "ce",
    "cam",
    "gradcam",
    "gradcam++",
    "scorecam",
    "occlusion",
    "integrated-gradients",
    "random",
    "centre",
)


def applicable_methods(classifier, methods=DEMO_METHODS) -> tuple[list[str], dict[str, str]]:
    """The ``methods`` that can be built for ``classifier``, and why each other one cannot (e.g. CAM needs global
    pooling).

    A method that does not fit a model refuses at construction, so nothing is run to find out.
    """
    usable, skipped = [], {}
    for name in methods:
        try:
            get_explainer(name, classifier)
            usable.append(name)
        except CemapError as exc:
            skipped[name] = str(exc)
    return usable, skipped


def _stage_key(ctx: StudyContext) -> dict:
    """What every stage's result depends on besides its own settings and the code: the data and the model's weights."""
    return {
        "dataset": ctx.dataset,
        "quick": ctx.quick,
        "seed": ctx.seed,
        "model": ctx.model,
        "weights": model_fingerprint(ctx.classifier),
    }


def _evaluation_stage(ctx: StudyContext, cfg: EvalConfig) -> dict:
    methods, skipped = applicable_methods(ctx.classifier)
    evaluation = run_evaluation(ctx, replace(cfg, methods=tuple(methods)))
    return {
        "n_images": evaluation.n_images,
        "n_pairs": evaluation.n_pairs,
        "methods": methods,
        "methods_not_applicable": skipped,
    }


def _overview_stage(ctx: StudyContext, plan: StudyPlan) -> dict:
    return run_overview(ctx, OverviewConfig(plan.figure_images)).to_json()


def _controls_stage(ctx: StudyContext, plan: StudyPlan) -> dict:
    config = LatentControlsConfig(n_images=plan.profile_images, pgd_steps=plan.pgd_steps, placements=plan.placements)
    return run_latent_controls(ctx, config).to_json()


def _detection_stage(ctx: StudyContext) -> dict:
    return {"layer": run_detection(ctx, DetectionConfig.sized("quick" if ctx.quick else "demo", ctx.seed)).layer}


def _audit_stage(ctx: StudyContext, plan: StudyPlan) -> dict:
    """The quick audit battery without the latent channels (the demo's concepts and profiles show those)."""
    recipients = max(8, plan.audit_images // 3)
    config = AuditConfig.quick_form(n_images=plan.audit_images, recipients=recipients, latent=False, seed=ctx.seed)
    result = run_audit(ctx, config)
    save_json_atomic(result.to_json(), ctx.out / "audit.json")
    return {"n_images": result.n_images, "flagged": result.flagged, "concern": result.concern}


def run_demo(ctx: StudyContext, plan: StudyPlan, reuse: bool = True) -> DemoResult:
    """Run every stage into ``ctx.out`` and write study.json.

    The classifier, data and autoencoder are built once (the context) and handed to each stage. A stage whose inputs
    (settings, model weights, cemap's code) are unchanged since an earlier run is restored from the cache instead of
    recomputed (:mod:`cemap.studies.stage_cache`); ``reuse=False`` recomputes all.
    """
    ctx.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    provenance: dict[str, dict] = {}
    t0 = time.perf_counter()
    bar = progress_bar(6, "demo", unit="stage", leave=False)

    def stage(name: str, fn, key: dict | None = None):
        bar.set_postfix(stage=name)
        t = time.perf_counter()
        value = fn() if key is None else run_cached(name, key, ctx.out, fn, reuse)
        if key is not None:
            value, provenance[name] = value
        timings[name] = time.perf_counter() - t
        bar.update()
        return value

    base = stage("model", lambda: _stage_key(ctx))
    keyed = {**base, "plan": asdict(plan)}
    overview = OverviewResult.from_json(stage("overview", lambda: _overview_stage(ctx, plan), keyed))
    controls = LatentControlsResult.from_json(stage("latent_controls", lambda: _controls_stage(ctx, plan), keyed))
    # CE's fill and cell are chosen on the train split when it has boxes, never on the test images reported
    cfg = EvalConfig(
        n_images=plan.eval_images,
        n_robust=plan.eval_robust,
        steps=plan.eval_steps,
        seed=ctx.seed,
        tune=overview.ce_map_pointing_game is not None,
        tune_images=plan.tune_images,
    )
    evaluation = stage("evaluation", lambda: _evaluation_stage(ctx, cfg), {**base, "config": asdict(cfg)})
    detection = stage("detection", lambda: _detection_stage(ctx), base)
    audit = stage("audit", lambda: _audit_stage(ctx, plan), keyed)
    bar.close()
    result = DemoResult(
        dataset=ctx.dataset,
        model=overview.model,
        layer=overview.layer,
        quick=ctx.quick,
        seed=ctx.seed,
        settings={"plan": asdict(plan)},
        latent_controls={"claims": controls.claims, "files": controls.files},
        profile_images=controls.images,
        evaluation=evaluation,
        detection=detection,
        audit=audit,
        timings_s=timings,
        stages=provenance,
        overview=overview,
    )
    timings["total"] = time.perf_counter() - t0
    result.write(ctx.out)
    return result
