"""The detection study for one dataset and model (``cemap detect``): every detector on equal terms.

Protocol, so that no reported number comes from images a detector was fitted on or chosen with:

* fitting part: images of the *train* split. Every supervised detector - CE and each baseline - is the same
  ``CEDetector`` (signed log, standardisation, logistic regression) on its own features, its hyper-parameters
  (C, log unit; for CE also the effect scale, probability or log-odds) chosen by the same grouped 4-fold
  cross-validation on these images, then refitted on all of them. LID's neighbours and Mahalanobis' Gaussians
  come from further clean train images, disjoint from the fitting part.
* evaluation part: images of the *test* split, never seen by any detector.
* Only correctly classified clean images are attacked (softmax heads); only *successful* adversarials and their
  own clean counterparts enter a detection row. Adaptive rows compare with every clean evaluation image.
* Unsupervised baselines are scored with the fixed direction of their paper (higher = more adversarial). An
  unsupervised AUROC below 0.5 is a *reversed* score, flagged as such: the supervised fit learns the direction.
* Every AUROC and TPR at 5% FPR comes with a stratified bootstrap 95% interval; CE minus the best supervised
  baseline on the same inputs with a paired one, and its verdict is read from that interval.

The headline is transfer: detectors fitted on one attack (PGD at the larger budget) and on a mix (FGSM and PGD
at the standard budgets), scored on attacks they have not seen - minimal (first-flip), confidence-matched and
converged C&W adversarials among them - and the worst case of an adaptive attack (Tramer et al. 2020) against
each supervised detector, over a sweep of detector-loss weights, steps and restarts.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..attacks import FGSM, PGD, Attack, CarliniWagnerL2, ConfidenceMatchedPGD, MinimalPGD
from ..causal import fidelity
from ..errors import CemapError
from ..detect import BASELINE_METHODS, AdaptivePGD, CEDetector, DetectorFeatures, SignatureConfig, select_detector
from ..evaluate.bootstrap import bootstrap_auroc, bootstrap_tpr_at_fpr, paired_auroc_difference
from ..evaluate.detection import auroc, roc_points
from ..report.detection_figures import roc_panels, signature_histograms
from .context import StudyContext

log = logging.getLogger(__name__)

# Linf budgets: MNIST's customary 0.1 / 0.3; for 8-bit radiographs the customary 2/255 and 8/255.
LINF_BUDGETS = {"mnist5k": (0.1, 0.3)}
DEFAULT_LINF = (2 / 255, 8 / 255)
# Feature-squeezing settings of Xu et al.: 1 bit + 2x2 median for MNIST, 5 bits + 2x2 median otherwise.
SQUEEZERS = {"mnist5k": {"bits": (1,), "median_sizes": (2,)}}
DEFAULT_SQUEEZERS = {"bits": (5,), "median_sizes": (2,)}
# C&W's first c, Adam step and (where given) step counts. cxr-cnn: c = 1 and lr 0.05 stop at a median margin of -2.8
# logits and 10x the L2 of c = 0.1, lr 0.02, 30 steps x 4 searches (margin -0.26: converged). mnist-cnn: c = 1 reaches the
# boundary for a quarter of the digits in 3 x 20 steps; c = 10 and lr 0.1 for 92% (margin -0.18 on 24 digits).
CW_START = {"mnist5k": {"c": 10.0, "lr": 0.1, "steps": 20, "search_steps": 3}}
DEFAULT_CW_START = {"c": 0.1, "lr": 0.02}
METHODS = ("ce",) + BASELINE_METHODS  # "ce" = the CE detector with its effect scale chosen on fit data
LOG_SCALES = (None, 1e-4, 1e-3, 1e-2, 1.0)  # candidate units of the signed-log transform, chosen on fit data for every detector
CS = (0.01, 0.1, 1.0, 10.0)
MIX = ("fgsm_high", "pgd_low", "pgd_high")
SINGLE = "pgd_high"
SATURATED = 1e-6  # an output probability within this of 0 or 1 (float32) is saturated


@dataclass
class StudyConfig:
    """Sizes of the study. The defaults ("full", what ``cemap detect`` runs) are what 2 shared CPU cores finish in
    well under an hour per dataset; the adaptive sweep in particular is CPU-bound (a CE signature's gradient costs
    some 35 forward-backward passes per image), so raise ``adaptive_steps`` / ``adaptive_restarts`` on a bigger machine."""

    n_fit: int = 80
    n_eval: int = 80
    n_reference: int = 200
    pgd_steps: int = 10
    minimal_steps: int = 50
    matched_steps: int = 50
    cw_steps: int = 30
    cw_search_steps: int = 4
    n_adaptive: int = 16
    adaptive_steps: int = 40
    adaptive_checkpoints: tuple[int, ...] = (10, 40)
    adaptive_weights: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
    adaptive_restarts: int = 1
    lid_k: int = 20
    n_boot: int = 2000
    adaptive_methods: tuple[str, ...] | None = None  # None: every detector
    seen_rows: bool = True  # also fit one detector per attack and score it on that attack (the "seen" rows)
    seed: int = 0
    signature: SignatureConfig = field(default_factory=SignatureConfig)

    @classmethod
    def quick(cls, seed: int = 0) -> "StudyConfig":
        """A smoke-sized study: every attack, detector and table of the transfer protocol on a handful of images."""
        return cls(n_fit=16, n_eval=16, n_reference=60, pgd_steps=5, minimal_steps=20, matched_steps=20, cw_steps=10, cw_search_steps=2,
                   n_adaptive=6, adaptive_steps=5, adaptive_checkpoints=(5,), adaptive_weights=(1.0,), adaptive_restarts=1,
                   lid_k=10, n_boot=200, seen_rows=False, seed=seed)

    @classmethod
    def demo(cls, seed: int = 0) -> "StudyConfig":
        """The size ``cemap demo`` runs (about a minute on 2 free cores): the transfer protocol on fewer images, a short sweep."""
        return cls(n_fit=32, n_eval=32, n_reference=100, pgd_steps=10, minimal_steps=30, matched_steps=30, cw_steps=20, cw_search_steps=3,
                   n_adaptive=8, adaptive_steps=10, adaptive_checkpoints=(5, 10), adaptive_weights=(0.1, 1.0), adaptive_restarts=1,
                   lid_k=15, n_boot=1000, seen_rows=False, seed=seed)

    @classmethod
    def sized(cls, size: str, seed: int = 0) -> "StudyConfig":
        if size not in SIZES:
            raise CemapError(f"unknown study size {size!r}", f"use one of {', '.join(SIZES)}")
        return cls(seed=seed) if size == "full" else getattr(cls, size)(seed)

    def to_json(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "signature"}, "signature": self.signature.as_dict()}


SIZES = ("quick", "demo", "full")


# -- attacks as typed records, picked by name ---------------------------------------------------------------------------
@dataclass
class AttackSpec:
    key: str  # stable name the study refers to (never a position)
    label: str  # readable name for tables
    kind: str  # "standard", "minimal", "confidence-matched" or "converged C&W"
    attack: Attack


def study_attacks(classifier, dataset: str, cfg: StudyConfig) -> dict[str, AttackSpec]:
    low, high = LINF_BUDGETS.get(dataset, DEFAULT_LINF)
    fmt = (lambda e: f"{e:.3g}") if dataset in LINF_BUDGETS else (lambda e: f"{round(e * 255)}/255")
    specs = [
        AttackSpec("fgsm_low", f"FGSM eps={fmt(low)}", "standard", FGSM(classifier, eps=low)),
        AttackSpec("fgsm_high", f"FGSM eps={fmt(high)}", "standard", FGSM(classifier, eps=high)),
        AttackSpec("pgd_low", f"PGD-Linf eps={fmt(low)}", "standard", PGD(classifier, eps=low, steps=cfg.pgd_steps, seed=cfg.seed)),
        AttackSpec("pgd_high", f"PGD-Linf eps={fmt(high)}", "standard", PGD(classifier, eps=high, steps=cfg.pgd_steps, seed=cfg.seed)),
        AttackSpec("pgd_minimal", f"PGD first flip (eps<={fmt(high)})", "minimal", MinimalPGD(classifier, eps=high, steps=cfg.minimal_steps)),
        AttackSpec("pgd_matched", f"PGD confidence-matched (eps={fmt(high)})", "confidence-matched",
                   ConfidenceMatchedPGD(classifier, eps=high, steps=cfg.matched_steps)),
        AttackSpec("cw", "C&W-L2 kappa=0 (binary search)", "converged C&W",
                   CarliniWagnerL2(classifier, kappa=0.0, **{"steps": cfg.cw_steps, "search_steps": cfg.cw_search_steps,
                                                             **CW_START.get(dataset, DEFAULT_CW_START)})),
    ]
    return {s.key: s for s in specs}


@dataclass
class AttackOutcome:
    """One attack on one part: per attacked image its success, norms, margin and saturation; features of the successes."""

    success: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    margin: np.ndarray  # the attack's own margin in logits after the attack (<0 = success; more negative = farther past)
    saturated: np.ndarray  # every output probability within 1e-6 of 0 or 1
    features: dict[str, np.ndarray]  # method -> features of the successful adversarials

    def summary(self, clean_saturated: np.ndarray, clean_conf: np.ndarray) -> dict:
        ok = self.success
        med = lambda v: float(np.median(v[ok])) if ok.any() else None  # noqa: E731
        conf_gap = None
        if ok.any():
            conf_gap = float(np.median(np.abs(self.features["msp"][:, 0] - clean_conf[ok])))
        return {"n_attacked": int(len(ok)), "success_rate": float(ok.mean()) if len(ok) else None,
                "median_linf": med(self.linf), "median_linf_255": None if med(self.linf) is None else med(self.linf) * 255,
                "median_l2": med(self.l2), "median_margin_logits": med(self.margin),
                "margin_quartiles": [float(q) for q in np.percentile(self.margin[ok], [25, 75])] if ok.any() else None,
                "saturated_share": float(self.saturated[ok].mean()) if ok.any() else None,
                "clean_saturated_share": float(clean_saturated.mean()) if len(clean_saturated) else None,
                "median_confidence_gap": conf_gap}


def _clean_decisions(clf, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    if not clf.multilabel:
        return None
    with torch.inference_mode():
        return (clf(images).float().gather(1, labels[:, None]).squeeze(1) > 0).float()


def _margins_and_saturation(attack: Attack, clf, images, adversarial, labels) -> tuple[np.ndarray, np.ndarray]:
    original = _clean_decisions(clf, images, labels)
    with torch.inference_mode():
        logits = clf(adversarial).float()
        margin = attack.margin(logits, labels, None, original)
        p = clf.probabilities(logits)
        saturated = ((p < SATURATED) | (p > 1 - SATURATED)).all(1)
    return margin.numpy().astype(float), saturated.numpy()


def _saturated(clf, images) -> np.ndarray:
    with torch.inference_mode():
        p = clf.predict_proba(images).float()
    return ((p < SATURATED) | (p > 1 - SATURATED)).all(1).numpy()


# -- fitting and scoring ------------------------------------------------------------------------------------------------
@dataclass
class Fitted:
    detector: CEDetector
    variant: str  # the features it reads ("ce", "ce_log_odds" or the baseline's own)
    validation: dict


class Study:
    """The state of one detection study: parts, attack outcomes, fitted detectors; methods compute its tables."""

    def __init__(self, ctx: StudyContext, cfg: StudyConfig) -> None:
        self.ctx, self.cfg = ctx, cfg
        self.clf = ctx.classifier

    # data
    def pick(self) -> None:
        cfg = self.cfg
        order = torch.randperm(len(self.ctx.train), generator=self.ctx.generator("detection/train-order")).tolist()
        reference_ids, candidates = order[-cfg.n_reference:], order[: len(order) - cfg.n_reference]
        self.fit_images, self.fit_labels = self._correct(self.ctx.train, candidates, cfg.n_fit)
        test_order = torch.randperm(len(self.ctx.test), generator=self.ctx.generator("detection/test-order")).tolist()
        self.eval_images, self.eval_labels = self._correct(self.ctx.test, test_order, cfg.n_eval)
        self.reference = self.ctx.train.batch(reference_ids).images

    def _correct(self, dataset, order: list[int], n: int):
        batch = dataset.batch(order[: min(len(order), 2 * n if not self.clf.multilabel else n)])
        if self.clf.multilabel:
            return batch.images[:n], None
        with torch.inference_mode():
            correct = self.clf.predict_proba(batch.images).argmax(-1) == batch.labels
        return batch.images[correct][:n], batch.labels[correct][:n]

    # fitting
    def fit(self, method: str, sources: tuple[str, ...]) -> Fitted | None:
        """The supervised detector of ``method`` on the fit part's successful adversarials of ``sources`` and their clean images."""
        variants = ("ce", "ce_log_odds") if method == "ce" else (method,)
        best: Fitted | None = None
        for variant in variants:
            xs, ys, groups = [], [], []
            for key in sources:
                out = self.outcomes[key]["fit"]
                idx = np.flatnonzero(out.success)
                xs += [self.clean["fit"][variant][idx], out.features[variant]]
                ys += [np.zeros(len(idx)), np.ones(len(idx))]
                groups += [idx, idx]
            y = np.concatenate(ys)
            if (y == 1).sum() < 4:
                return None
            info = self.features.info[variant]
            det, val = select_detector(np.concatenate(xs), y, groups=np.concatenate(groups), Cs=CS, log_scales=LOG_SCALES, seed=self.cfg.seed,
                                       log_features=list(info.log_features), feature_names=list(info.feature_names))
            score = max(val.values()) if val else float("nan")
            candidate = Fitted(det, variant, {"variant": variant, "best_validation_auroc": score, "chosen": {"C": det.C, "log_scale": det.log_scale}})
            if best is None or score > best.validation["best_validation_auroc"]:
                if best is not None:
                    candidate.validation["other_variants"] = [best.validation]
                best = candidate
            else:
                best.validation.setdefault("other_variants", []).append(candidate.validation)
        return best

    def scores(self, method: str, fitted: Fitted | None, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(clean, adversarial) scores on the evaluation part for attack ``key``; unsupervised when ``fitted`` is None."""
        out = self.outcomes[key]["eval"]
        if fitted is None:
            fn = self.features.info[method].unsupervised
            if fn is None:
                return None
            return fn(self.clean["eval"][method][out.success]), fn(out.features[method]) if len(out.features[method]) else np.zeros(0)
        v = fitted.variant
        adv = out.features[v]
        return (fitted.detector.decision_function(self.clean["eval"][v][out.success]),
                fitted.detector.decision_function(adv) if len(adv) else np.zeros(0))

    def cell(self, clean: np.ndarray, adv: np.ndarray) -> dict:
        a = bootstrap_auroc(clean, adv, self.cfg.n_boot, self.cfg.seed)
        t = bootstrap_tpr_at_fpr(clean, adv, 0.05, self.cfg.n_boot, self.cfg.seed)
        return {"auroc": a.to_json(), "tpr_at_5fpr": t.to_json()}

    def row(self, key: str, fit_on: str, detectors: dict[str, Fitted | None], seen: bool) -> dict:
        """One evaluation row: every supervised detector (fitted on ``fit_on``) and every unsupervised score on attack ``key``."""
        out = self.outcomes[key]["eval"]
        row = {"attack": key, "label": self.specs[key].label, "kind": self.specs[key].kind, "fit_on": fit_on, "seen": seen,
               "n_clean": int(out.success.sum()), "n_adversarial": int(out.success.sum()), "supervised": {}, "unsupervised": {}}
        scored = {}
        for method in METHODS:
            s = self.scores(method, detectors.get(method), key) if detectors.get(method) is not None else None
            if s is None or len(s[0]) < 2 or len(s[1]) < 2:
                row["supervised"][method] = None
                continue
            scored[method] = s
            row["supervised"][method] = {**self.cell(*s), "features": detectors[method].variant}
        for method in BASELINE_METHODS:
            s = self.scores(method, None, key)
            if s is None or len(s[0]) < 2 or len(s[1]) < 2:
                row["unsupervised"][method] = None
                continue
            c = self.cell(*s)
            c["reversed"] = bool(c["auroc"]["high"] < 0.5)
            row["unsupervised"][method] = c
        baselines = {m: row["supervised"][m]["auroc"]["estimate"] for m in BASELINE_METHODS if row["supervised"].get(m)}
        if "ce" in scored and baselines:
            best = max(baselines, key=baselines.get)
            d = paired_auroc_difference(*scored["ce"], *scored[best], n_boot=self.cfg.n_boot, seed=self.cfg.seed)
            row["ce_minus_best_baseline"] = {"baseline": best, **d.to_json()}
        return row

    # adaptive
    def adaptive(self, method: str, fitted: Fitted) -> dict:
        """Tramer et al.: PGD on -max(margin, -kappa) - w * detector logit, swept over w, steps (checkpoints) and restarts."""
        cfg, clf = self.cfg, self.clf
        n = min(cfg.n_adaptive, len(self.eval_images))
        images, labels = self.eval_images[:n], None if self.eval_labels is None else self.eval_labels[:n]
        det, fn = fitted.detector, self.features.differentiable(fitted.variant)
        eps = self.specs["pgd_high"].attack.eps
        alpha = max(eps / 20, 2.5 * eps / cfg.adaptive_steps)
        clean_scores = det.decision_function(self.clean["eval"][fitted.variant])
        grad_check = self._gradient_check(fn, det, images, eps)
        # candidates[(weight, steps)] = list over restarts of (adversarial images, success, score)
        candidates: dict[tuple[float, int], list] = {}
        for weight in cfg.adaptive_weights:
            for restart in range(cfg.adaptive_restarts):
                attack = AdaptivePGD(clf, fn, det, weight=weight, eps=eps, alpha=alpha, steps=cfg.adaptive_steps, random_start=True,
                                     seed=cfg.seed + 1000 * restart + 1, batch_size=16, checkpoints=cfg.adaptive_checkpoints)
                res = attack(images, labels)
                labels_used = res.labels
                for steps, parts in attack.history.items():
                    adv = torch.cat(parts)
                    margin, _ = _margins_and_saturation(attack, clf, images, adv, labels_used)
                    score = det.decision_function(self.features(adv, (fitted.variant,))[fitted.variant])
                    candidates.setdefault((weight, steps), []).append((margin < 0, score))
        rows, all_best = [], np.full(n, np.inf)
        for (weight, steps), runs in sorted(candidates.items()):
            best = np.full(n, np.inf)
            for ok, score in runs:
                best = np.where(ok & (score < best), score, best)
            all_best = np.minimum(all_best, best)
            rows.append({"detector_weight": weight, "steps": steps, "restarts": len(runs), **self._adaptive_metrics(best, clean_scores, det)})
        worst = self._adaptive_metrics(all_best, clean_scores, det)
        by_auroc = min((r for r in rows if _nan0(r["auroc"]["estimate"]) == r["auroc"]["estimate"]), key=lambda r: r["auroc"]["estimate"], default=None)
        return {"method": method, "features": fitted.variant, "n_attacked": n, "eps": eps, "alpha": alpha, "kappa": 1.0,
                "gradient_check": grad_check, "sweep": rows,
                "worst_case_per_image": {"what": "each image's successful adversarial with the lowest detector score over the whole sweep", **worst},
                "worst_setting_by_auroc": None if by_auroc is None else {k: by_auroc[k] for k in ("detector_weight", "steps")}}

    def _adaptive_metrics(self, best: np.ndarray, clean_scores: np.ndarray, det: CEDetector) -> dict:
        ok = np.isfinite(best)
        adv = best[ok]
        evasion = float((adv <= det.threshold_).sum() / len(best))
        cell = self.cell(clean_scores, adv) if len(adv) >= 2 else {"auroc": None, "tpr_at_5fpr": None}
        if cell["auroc"] is None:
            cell = {"auroc": {"estimate": float("nan"), "low": float("nan"), "high": float("nan"), "n": int(len(adv)), "level": 0.95},
                    "tpr_at_5fpr": {"estimate": float("nan"), "low": float("nan"), "high": float("nan"), "n": int(len(adv)), "level": 0.95}}
        return {"success_rate": float(ok.mean()), "evasion_rate": evasion, **cell}

    @staticmethod
    def _gradient_check(fn, det: CEDetector, images: torch.Tensor, eps: float) -> dict:
        """Are the detector's input gradients non-zero, and does a small step against them lower its score (first order)?"""
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            score = det.score_torch(fn(x, differentiable=True).double())
            grad = torch.autograd.grad(score.sum(), x)[0]
        norm = grad.flatten(1).abs().sum(1)
        step = (images - 0.01 * eps * grad.sign()).clamp(0, 1)
        with torch.no_grad():
            after = det.score_torch(fn(step, differentiable=True).double())
        drop = (score.detach() - after).numpy()
        return {"nonzero_share": float((norm > 1e-12).float().mean()), "median_l1_norm": float(norm.median()),
                "descent_share": float((drop > 0).mean()), "median_score_drop": float(np.median(drop)), "step": 0.01 * eps}


def _jsonable(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _fmt(i: dict | None, digits: int = 3) -> str:
    if not i or i.get("estimate") is None or i["estimate"] != i["estimate"]:  # null or NaN: too few samples
        return "-"
    return f"{i['estimate']:.{digits}f} [{i['low']:.{digits}f}, {i['high']:.{digits}f}]"


def run_detection_study(dataset: str = "mnist5k", model: str | None = None, out: Path = Path("out/detect"), quick: bool = False,
                        seed: int = 0, config: StudyConfig | None = None, size: str | None = None,
                        context: StudyContext | None = None, resume: bool = False, device: str = "cpu") -> dict:
    """Run the whole study; writes ``out/detection.json``, ``out/features.npz``, ``out/ce_detector.npz`` and figures.

    ``size``: "quick", "demo" (the default unless ``quick``: about a minute, what ``cemap demo`` runs) or "full"
    (``cemap detect``: 10-20 min on 2 cores); ``config`` overrides it. ``context``: a StudyContext to reuse
    (classifier, splits and autoencoder); else one is built from ``dataset``/``model``/``seed``. ``resume``: reuse
    the attack outcomes an interrupted run of the same settings saved in ``out`` (features.npz, attacks.json).
    """
    cfg = config or StudyConfig.sized(size or ("quick" if quick else "demo"), seed)
    ctx = context or StudyContext(dataset=dataset, out=Path(out), seed=seed, quick=quick, model=model, device=device)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    study = Study(ctx, cfg)
    clf, fitted_ae = ctx.classifier, ctx.autoencoder
    study.pick()
    squeezers = SQUEEZERS.get(ctx.dataset, DEFAULT_SQUEEZERS)
    study.features = DetectorFeatures(clf, fitted_ae, study.reference, squeezers, cfg.lid_k, cfg.signature)
    study.clean = {"fit": study.features(study.fit_images), "eval": study.features(study.eval_images)}
    clean_sat = {"fit": _saturated(clf, study.fit_images), "eval": _saturated(clf, study.eval_images)}
    fid = fidelity(fitted_ae, clf, study.eval_images)
    timings["setup_and_clean_features"] = time.perf_counter() - t0

    study.specs = study_attacks(clf, ctx.dataset, cfg)
    study.outcomes = {}
    attacks_json = {}
    parts = {"fit": (study.fit_images, study.fit_labels), "eval": (study.eval_images, study.eval_labels)}
    saved = out / "features.npz"
    restored: dict[str, dict[str, AttackOutcome]] = {}
    if resume and saved.exists() and (out / "attacks.json").exists():
        previous = json.loads((out / "attacks.json").read_text())
        same = [k for k, spec in study.specs.items()
                if k in previous and previous[k]["budget"] == json.loads(json.dumps(spec.attack.budget(), default=_jsonable))]
        restored = _load_outcomes(saved, same)
        attacks_json = {k: previous[k] for k in same}
        _progress(out, f"--resume: outcomes of {', '.join(same) or 'no attack'} restored (same settings)")
    for key, spec in study.specs.items():
        if key in restored:
            study.outcomes[key] = restored[key]
            continue
        t = time.perf_counter()
        study.outcomes[key] = {}
        entry = {"label": spec.label, "kind": spec.kind, "attack": spec.attack.name, "budget": spec.attack.budget()}
        for part, (images, labels) in parts.items():
            res = spec.attack(images, labels)
            ok = res.success.numpy()
            margin, sat = _margins_and_saturation(spec.attack, clf, images, res.adversarial, res.labels)
            feats = study.features(res.adversarial[res.success])
            outcome = AttackOutcome(ok, res.linf.numpy(), res.l2.numpy(), margin, sat, feats)
            study.outcomes[key][part] = outcome
            entry[part] = outcome.summary(clean_sat[part], study.clean[part]["msp"][:, 0])
        attacks_json[key] = entry
        timings[f"attack {key}"] = time.perf_counter() - t
        _progress(out, f"{spec.label}: {timings[f'attack {key}']:.0f}s, success {entry['eval']['success_rate']}")
    attacks_json = {k: attacks_json[k] for k in study.specs}
    _save_features(saved, study)
    (out / "attacks.json").write_text(json.dumps(attacks_json, indent=2, default=_jsonable))

    # detectors: fitted per attack (seen), on PGD at the larger budget, and on the mix
    t = time.perf_counter()
    regimes = {"pgd_high": (SINGLE,), "mix": MIX}
    fitted = {name: {m: study.fit(m, sources) for m in METHODS} for name, sources in regimes.items()}
    seen_rows = []
    for key in study.specs if cfg.seen_rows else ():
        per_attack = fitted[SINGLE] if key == SINGLE else {m: study.fit(m, (key,)) for m in METHODS}
        seen_rows.append(study.row(key, key, per_attack, seen=True))
    transfer_rows = {name: [study.row(key, name, fitted[name], seen=key in sources) for key in study.specs] for name, sources in regimes.items()}
    timings["detectors"] = time.perf_counter() - t

    _progress(out, f"detectors: {timings['detectors']:.0f}s")
    t = time.perf_counter()
    adaptive, adaptive_errors = {}, {}
    for m in METHODS if cfg.adaptive_methods is None else cfg.adaptive_methods:
        if fitted["mix"].get(m) is not None:
            ta = time.perf_counter()
            try:
                adaptive[m] = study.adaptive(m, fitted["mix"][m])
            except Exception as exc:  # one detector's attack failing must not lose the study: recorded, reported
                log.exception("adaptive attack on %s failed", m)
                adaptive_errors[m] = repr(exc)
            timings[f"adaptive {m}"] = time.perf_counter() - ta
            _progress(out, f"adaptive {m}: {timings[f'adaptive {m}']:.0f}s")
    timings["adaptive"] = time.perf_counter() - t

    try:
        figures = _figures(out, study, fitted["mix"])
    except Exception as exc:  # figures are a convenience; the numbers are in the JSON
        log.exception("detection figures failed")
        figures = {"error": repr(exc)}
    ce = fitted["mix"].get("ce")
    if ce is not None:
        ce.detector.signature_config = {**cfg.signature.as_dict(), "effect_scale": "log_odds" if ce.variant == "ce_log_odds" else "probability",
                                        "model": ctx.model, "layer": fitted_ae.layer, "dataset": ctx.dataset, "fit_on": list(MIX)}
        ce.detector.save(out / "ce_detector.npz")
        figures["detector"] = "ce_detector.npz"
    timings["total"] = time.perf_counter() - t0

    report = {
        "dataset": ctx.dataset,
        "model": ctx.model,
        "layer": fitted_ae.layer,
        "size": size or ("quick" if quick else "demo") if config is None else "custom",
        "headline": headline(ctx.dataset, transfer_rows, adaptive),
        "autoencoder_fidelity": fid.as_dict(),
        "protocol": {
            "fit_part": f"{len(study.fit_images)} images of the train split; every supervised detector's C, log unit (and CE's effect scale) chosen by grouped 4-fold cross-validation on them",
            "eval_part": f"{len(study.eval_images)} images of the test split, never seen by any detector",
            "reference": f"{len(study.reference)} further clean train images (LID neighbours, Mahalanobis Gaussians), disjoint from both parts",
            "clean_images": "correctly classified only" if not clf.multilabel else "all (sigmoid head: the most probable finding is attacked)",
            "only_successful_adversarials": True,
            "scores": "higher = more adversarial; supervised: CEDetector.decision_function; unsupervised: the paper's fixed direction, 'reversed' when its interval lies below 0.5",
            "intervals": f"stratified percentile bootstrap, {cfg.n_boot} resamples, 95%; CE minus best baseline paired on the same inputs",
            "mix": list(MIX),
            "adaptive": "PGD-Linf at the larger budget on -max(margin, -1) - w * detector logit, against each detector fitted on the mix; "
                        "AUROC / TPR against every clean evaluation image; evasion = misclassified and below the detector's 5%-FPR threshold (set on fit data), over all attacked images",
        },
        "detectors": {m: {"features": list(study.features.info[m].feature_names),
                          "unsupervised": study.features.info[m].unsupervised_description} for m in study.features.info},
        "baselines": {"feature_squeezing": squeezers, "lid": {"k": cfg.lid_k, "layers": [fitted_ae.layer, "logits"]},
                      "mahalanobis": {"layers": [f"{fitted_ae.layer} (channel means)", "logits"], "classes": "predicted class (sigmoid: most probable finding)"}},
        "study_config": cfg.to_json(),
        "attacks": attacks_json,
        "signature_collapse": {"what": "share of evaluation images whose CE-map effects are all exactly 0", **signature_collapse(study)},
        "selection": {name: {m: (f.validation if f else None) for m, f in by.items()} for name, by in fitted.items()},
        "seen": seen_rows,
        "transfer": transfer_rows,
        "adaptive": adaptive,
        "adaptive_errors": adaptive_errors,
        "table": table(seen_rows, transfer_rows, adaptive, attacks_json),
        "figures": figures,
        "features_file": "features.npz",
        "timings_s": timings,
    }
    report = _no_nan(json.loads(json.dumps(report, default=_jsonable)))
    (out / "detection.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    return report


def _no_nan(value):
    """NaN (an interval with fewer than two samples on a side) as JSON null, so that strict parsers read the file."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


MAP_EFFECTS = ("map_peak", "map_trough", "map_mean", "map_positive_mass", "map_negative_mass")


def signature_collapse(study: "Study") -> dict:
    """Per attack (evaluation part), the share of images whose CE-map effects are all exactly 0, on each effect scale:
    a float32 probability of exactly 1.0 moves under no mask, so probability effects vanish on saturated outputs."""
    out = {}
    for variant in ("ce", "ce_log_odds"):
        names = study.features.info[variant].feature_names
        cols = [i for i, n in enumerate(names) if n in MAP_EFFECTS]
        if not cols:
            continue
        zero = lambda a: float(np.mean(np.all(a[:, cols] == 0, 1))) if len(a) else None  # noqa: E731
        out["probability" if variant == "ce" else "log_odds"] = {
            "clean": zero(study.clean["eval"][variant]), **{k: zero(o["eval"].features[variant]) for k, o in study.outcomes.items()}}
    return out


def _progress(out: Path, line: str) -> None:
    with open(out / "progress.txt", "a") as fh:
        fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


def headline(dataset: str, transfer_rows: dict, adaptive: dict) -> list[dict]:
    """The claims the report shows first: transfer to unseen minimal / confidence-matched / C&W adversarials and the adaptive worst case."""
    claims = []
    for regime, what in (("mix", "a mix of FGSM and PGD at the standard budgets"), ("pgd_high", "PGD at the larger budget")):
        for row in transfer_rows[regime]:
            if row["seen"] or row["kind"] == "standard":
                continue
            ce, diff = row["supervised"].get("ce"), row.get("ce_minus_best_baseline")
            if ce is None or diff is None:
                claims.append({"claim": f"{dataset}: {row['label']} - too few successful adversarials to compare.", "table": [_claim_row(row)]})
                continue
            b = row["supervised"][diff["baseline"]]
            verdict = {"better": "better than", "worse": "worse than", "no different": "no different from"}.get(diff["verdict"], diff["verdict"])
            claims.append({"claim": (f"{dataset}, fitted on {what}, unseen {row['label']} (n={row['n_adversarial']}): CE AUROC {_fmt(ce['auroc'])}, "
                                     f"TPR@5%FPR {_fmt(ce['tpr_at_5fpr'])}; best supervised baseline {diff['baseline']} {_fmt(b['auroc'])}, "
                                     f"TPR {_fmt(b['tpr_at_5fpr'])}; difference {diff['estimate']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]: "
                                     f"CE is {verdict} it."),
                           "table": [_claim_row(row)]})
    if adaptive:
        rows = [{"detector": m, "features": a["features"], "auroc": _fmt(a["worst_case_per_image"]["auroc"]),
                 "tpr_at_5fpr": _fmt(a["worst_case_per_image"]["tpr_at_5fpr"]), "evasion_rate": round(a["worst_case_per_image"]["evasion_rate"], 3),
                 "success_rate": round(a["worst_case_per_image"]["success_rate"], 3), "gradient_nonzero": a["gradient_check"]["nonzero_share"],
                 "gradient_descent_share": a["gradient_check"]["descent_share"]} for m, a in adaptive.items()]
        ce = adaptive.get("ce")
        # the most robust baseline: lowest evasion, then highest worst-case AUROC
        others = {m: (a["worst_case_per_image"]["evasion_rate"], -_nan0(a["worst_case_per_image"]["auroc"]["estimate"]))
                  for m, a in adaptive.items() if m != "ce"}
        if ce is not None and others:
            best = min(others, key=others.get)
            w, wb = ce["worst_case_per_image"], adaptive[best]["worst_case_per_image"]
            claim = (f"{dataset}, adaptive PGD against each detector (weights {sorted({r['detector_weight'] for r in ce['sweep']})}, up to "
                     f"{max(r['steps'] for r in ce['sweep'])} steps, {ce['sweep'][0]['restarts']} restart(s), n={ce['n_attacked']}), worst case per image: "
                     f"CE AUROC {_fmt(w['auroc'])}, TPR@5%FPR {_fmt(w['tpr_at_5fpr'])}, evasion {w['evasion_rate']:.2f}; the most robust baseline, "
                     f"{best}: AUROC {_fmt(wb['auroc'])}, TPR {_fmt(wb['tpr_at_5fpr'])}, evasion {wb['evasion_rate']:.2f}.")
            claims.append({"claim": claim, "table": rows})
    return claims


def _nan0(x) -> float:
    return 0.0 if x is None or x != x else float(x)


def _claim_row(row: dict) -> dict:
    out = {"attack": row["label"], "fit_on": row["fit_on"], "n": row["n_adversarial"]}
    for m in METHODS:
        c = row["supervised"].get(m)
        out[m] = "-" if c is None else f"{_fmt(c['auroc'])} / TPR {_fmt(c['tpr_at_5fpr'], 2)}"
    return out


def table(seen_rows: list[dict], transfer_rows: dict, adaptive: dict, attacks: dict) -> list[dict]:
    """Flat rows for the report: AUROC [95% CI] of every supervised detector (and its unsupervised form in brackets where reversed)."""
    rows = []
    for group, rs in (("seen", seen_rows), ("fit on PGD high", transfer_rows["pgd_high"]), ("fit on mix", transfer_rows["mix"])):
        for r in rs:
            if group != "seen" and r["seen"] and seen_rows:
                continue
            row = {"row": f"{group}: {r['label']}" + (" (seen)" if group != "seen" and r["seen"] else ""), "success_rate": round(attacks[r["attack"]]["eval"]["success_rate"] or 0.0, 3), "n": r["n_adversarial"]}
            for m in METHODS:
                c = r["supervised"].get(m)
                row[f"{m}_auroc"] = _fmt(c["auroc"]) if c else "-"
                row[f"{m}_tpr5"] = _fmt(c["tpr_at_5fpr"], 2) if c else "-"
            d = r.get("ce_minus_best_baseline")
            row["ce_minus_best"] = "-" if not d else f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] vs {d['baseline']}: {d['verdict']}"
            rows.append(row)
    for m, a in adaptive.items():
        w = a["worst_case_per_image"]
        rows.append({"row": f"adaptive worst case vs {m}", "success_rate": round(w["success_rate"], 3), "n": a["n_attacked"],
                     f"{m}_auroc": _fmt(w["auroc"]), f"{m}_tpr5": _fmt(w["tpr_at_5fpr"], 2), "evasion_rate": round(w["evasion_rate"], 3)})
    return rows


def format_table(rows: list[dict]) -> str:
    """The table as aligned text: AUROC [95% CI] per supervised detector, then CE minus the best baseline."""
    short = {"ce": "CE", "msp": "MSP", "feature_squeezing": "FS", "lid": "LID", "mahalanobis": "Maha", "logit_stats": "logits"}
    lines = [f"{'':46s} {'succ':>5s}  " + "  ".join(f"{short[m]:>21s}" for m in METHODS) + "  CE - best baseline"]
    for r in rows:
        cols = [f"{r.get(f'{m}_auroc', '-'):>21s}" for m in METHODS]
        extra = r.get("ce_minus_best", "") or (f"evasion {r['evasion_rate']:.2f}" if "evasion_rate" in r else "")
        lines.append(f"{r['row'][:46]:46s} {r['success_rate']:>5.2f}  " + "  ".join(cols) + "  " + extra)
    return "\n".join(lines)


def _save_features(path: Path, study: Study) -> None:
    """Every detector input of the study (plain arrays), so the tables can be re-analysed without re-attacking."""
    arrays = {f"{p}/clean/{m}": v for p, feats in study.clean.items() for m, v in feats.items()}
    for key, parts in study.outcomes.items():
        for p, o in parts.items():
            arrays[f"{p}/success/{key}"] = o.success
            arrays[f"{p}/margin/{key}"] = o.margin
            arrays[f"{p}/linf/{key}"], arrays[f"{p}/l2/{key}"], arrays[f"{p}/saturated/{key}"] = o.linf, o.l2, o.saturated
            arrays |= {f"{p}/adversarial/{key}/{m}": v for m, v in o.features.items()}
    np.savez_compressed(path, **arrays)


def _load_outcomes(path: Path, keys: list[str]) -> dict[str, dict[str, AttackOutcome]]:
    with np.load(path, allow_pickle=False) as data:
        outcomes = {}
        for key in keys:
            outcomes[key] = {}
            for p in ("fit", "eval"):
                feats = {n.rsplit("/", 1)[1]: data[n] for n in data.files if n.startswith(f"{p}/adversarial/{key}/")}
                outcomes[key][p] = AttackOutcome(data[f"{p}/success/{key}"], data[f"{p}/linf/{key}"], data[f"{p}/l2/{key}"],
                                                 data[f"{p}/margin/{key}"], data[f"{p}/saturated/{key}"], feats)
    return outcomes


def _figures(out: Path, study: Study, mix: dict) -> dict:
    figures = {}
    shown = [k for k in ("pgd_high", "pgd_minimal", "pgd_matched", "cw") if len(study.outcomes[k]["eval"].features["ce_log_odds"]) > 1]
    variant = mix["ce"].variant if mix.get("ce") else "ce_log_odds"
    names = list(study.features.info[variant].feature_names)
    clean_eval = study.clean["eval"][variant]
    if shown:
        adv = {study.specs[k].label: study.outcomes[k]["eval"].features[variant] for k in shown}
        ref = next(iter(adv.values()))
        y = np.r_[np.zeros(len(clean_eval)), np.ones(len(ref))]
        strength = [abs(auroc(y, np.r_[clean_eval[:, j], ref[:, j]]) - 0.5) for j in range(len(names))]
        top = list(np.argsort(strength)[::-1][:5])
        figures["histograms"] = signature_histograms(clean_eval, adv, names, top, out / "signature_histograms.png").name
    curves = {}
    for key in shown:
        methods = {}
        for m in METHODS:
            s = study.scores(m, mix.get(m), key) if mix.get(m) else None
            if s is not None and len(s[0]) > 1 and len(s[1]) > 1:
                y = np.r_[np.zeros(len(s[0])), np.ones(len(s[1]))]
                sc = np.r_[s[0], s[1]]
                fpr, tpr = roc_points(y, sc)
                methods[m] = (fpr, tpr, auroc(y, sc))
        if methods:
            curves[f"{study.specs[key].label} (fit on mix)"] = methods
    if curves:
        figures["roc"] = roc_panels(curves, out / "roc_curves.png").name
    return figures
