"""The detection study's orchestrator: attacks, detectors on every attack regime, the adaptive sweep, the result."""

from __future__ import annotations

import logging
import time

from ...causal import fidelity
from ..context import StudyContext
from ..results import Claim
from .adaptive import adaptive_attack
from .claims import headline, table
from .config import METHODS, MIX, PREFERRED_SCALE, SCALE_TIE, SINGLE, DetectionConfig
from .figures import figures
from .protocol import SCALE_NAMES, Study, progress, signature_collapse
from ..results import DetectionResult

log = logging.getLogger(__name__)


def run_detection(ctx: StudyContext, config: DetectionConfig | None = None) -> DetectionResult:
    """The whole study (``config``: a size preset, :meth:`DetectionConfig.sized`; default "demo"); writes
    ``detection.json``, ``features.npz``, ``attacks.json``, ``ce_detector.npz`` and (when the context draws) figures."""
    cfg = config or DetectionConfig.sized("demo", ctx.seed)
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    study = Study(ctx, cfg)
    fid = fidelity(ctx.classifier, ctx.autoencoder, study.eval_images)
    timings = {"setup_and_clean_features": time.perf_counter() - t0}
    attacks_json, attack_times = study.attack(out)
    timings.update(attack_times)
    t = time.perf_counter()
    regimes = {"pgd_high": (SINGLE,), "mix": MIX}  # detectors fitted on PGD at the larger budget, and on the mix
    fitted = {name: {m: study.fit(m, sources) for m in METHODS} for name, sources in regimes.items()}
    seen_rows = []
    for key in study.specs if cfg.seen_rows else ():  # one detector per attack, scored on that attack
        per_attack = fitted[SINGLE] if key == SINGLE else {m: study.fit(m, (key,)) for m in METHODS}
        seen_rows.append(study.row(key, key, per_attack, seen=True))
    transfer_rows = {
        name: [study.row(key, name, fitted[name], seen=key in sources) for key in study.specs]
        for name, sources in regimes.items()
    }
    timings["detectors"] = time.perf_counter() - t
    progress(out, f"detectors: {timings['detectors']:.0f}s")
    adaptive, adaptive_errors = adaptive_rows(study, fitted["mix"], timings, out)
    files = drawn(ctx, study, fitted["mix"])
    files.update(save_ce_detector(ctx, cfg, fitted["mix"].get("ce")))
    timings["total"] = time.perf_counter() - t0
    result = DetectionResult(
        dataset=ctx.dataset,
        model=ctx.model,
        layer=ctx.autoencoder.layer,
        size=cfg.size,
        train_seed=ctx.train_seed,
        claims_=[Claim.from_json(c) for c in headline(ctx.dataset, transfer_rows, adaptive)],
        autoencoder_fidelity=fid.as_dict(),
        protocol=protocol(study),
        detectors=detectors(study),
        baselines=baselines(study),
        study_config=cfg.to_json(),
        attacks=attacks_json,
        signature_collapse={
            "what": "share of evaluation images whose CE-map effects are all exactly 0",
            **signature_collapse(study),
        },
        selection={name: {m: (f.validation if f else None) for m, f in by.items()} for name, by in fitted.items()},
        seen=seen_rows,
        transfer=transfer_rows,
        adaptive=adaptive,
        adaptive_errors=adaptive_errors,
        table=table(seen_rows, transfer_rows, adaptive, attacks_json),
        figures=files,
        timings_s=timings,
    )
    result.write(out)
    return result


def adaptive_rows(study: Study, mix: dict, timings: dict, out) -> tuple[dict, dict]:
    """The adaptive sweep against each detector fitted on the mix; one detector's failure is recorded, not fatal."""
    t = time.perf_counter()
    adaptive, errors = {}, {}
    for m in METHODS if study.cfg.adaptive_methods is None else study.cfg.adaptive_methods:
        if mix.get(m) is not None:
            ta = time.perf_counter()
            try:
                adaptive[m] = adaptive_attack(study, m, mix[m])
            except Exception as exc:  # one detector's attack failing must not lose the study: recorded, reported
                log.exception("adaptive attack on %s failed", m)
                errors[m] = repr(exc)
            timings[f"adaptive {m}"] = time.perf_counter() - ta
            progress(out, f"adaptive {m}: {timings[f'adaptive {m}']:.0f}s")
    timings["adaptive"] = time.perf_counter() - t
    return adaptive, errors


def drawn(ctx: StudyContext, study: Study, mix: dict) -> dict:
    try:
        return figures(ctx, study, mix)
    except Exception as exc:  # figures are a convenience; the numbers are in the JSON
        log.exception("detection figures failed")
        return {"error": repr(exc)}


def save_ce_detector(ctx: StudyContext, cfg: DetectionConfig, ce) -> dict:
    """The CE detector fitted on the mix, as ce_detector.npz with its signature's settings (``load_detector`` reads
    it)."""
    if ce is None:
        return {}
    ce.detector.signature_config = {
        **cfg.signature.as_dict(),
        "effect_scale": SCALE_NAMES[ce.variant],
        "model": ctx.model,
        "layer": ctx.autoencoder.layer,
        "dataset": ctx.dataset,
        "fit_on": list(MIX),
    }
    ce.detector.save(ctx.out / "ce_detector.npz")
    return {"detector": "ce_detector.npz"}


def protocol(study: Study) -> dict:
    """The protocol in words, with this run's sizes."""
    return {
        "fit_part": f"{len(study.fit_images)} images of the train split; every supervised detector's C, log unit (and "
        "CE's effect scale) "
        "chosen by grouped 4-fold cross-validation on them",
        "eval_part": f"{len(study.eval_images)} images of the test split, never seen by any detector",
        "reference": f"{len(study.reference)} further clean train images (LID neighbours, Mahalanobis Gaussians), "
        "disjoint from both parts",
        "clean_images": "correctly classified only"
        if not study.clf.multilabel
        else "all (sigmoid head: the most probable finding is attacked)",
        "only_successful_adversarials": True,
        "scores": "higher = more adversarial; supervised: CEDetector.decision_function; unsupervised: the paper's "
        "fixed direction, "
        "'reversed' when its interval lies below 0.5",
        "intervals": f"percentile bootstrap over images, {study.cfg.n_boot} resamples, 95%: an image's clean and "
        "adversarial scores are drawn together (paired); CE minus the best other detector (supervised or "
        "unsupervised, whichever has the higher AUROC) on the same resamples",
        "effect_scale": f"CE's effect scale by validation AUROC; scales within {SCALE_TIE} tie and a tie goes to "
        f"{SCALE_NAMES[PREFERRED_SCALE]} (it does not vanish on saturated outputs); selection records the choice",
        "mix": list(MIX),
        "adaptive": "PGD-Linf at the larger budget on -max(margin, -1) - w * detector logit, against each detector "
        "fitted on the mix; "
        "AUROC / TPR of each successful adversarial against its own clean image; evasion = misclassified and below "
        "the detector's 5%-FPR threshold "
        "(set on fit data), over all attacked images",
    }


def detectors(study: Study) -> dict:
    info = study.features.info
    return {
        m: {"features": list(info[m].feature_names), "unsupervised": info[m].unsupervised_description} for m in info
    }


def baselines(study: Study) -> dict:
    layer = study.ctx.autoencoder.layer
    return {
        "feature_squeezing": study.squeezers,
        "lid": {"k": study.cfg.lid_k, "layers": [layer, "logits"]},
        "mahalanobis": {
            "layers": [f"{layer} (channel means)", "logits"],
            "classes": "predicted class (sigmoid: most probable finding)",
        },
    }
