"""The detection protocol: the study's parts, its attacks' outcomes, detectors fitted on them and scored on held-out
images.

A :class:`Study` is built whole from the context and the config (its parts, the features of every detector on
them, the attacks); :meth:`Study.attack` runs the attacks (or restores a resumed run's); then :meth:`Study.fit`
and :meth:`Study.row` give the tables.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...detect import BASELINE_METHODS, CEDetector, DetectorFeatures, select_detector
from ...evaluate.bootstrap import bootstrap_auroc, bootstrap_tpr_at_fpr, paired_auroc_difference
from ...jsonio import write_json
from ..context import StudyContext
from .attacks import (
    AttackOutcome,
    convergence,
    load_outcomes,
    margins_and_saturation,
    same_budget,
    saturated,
    study_attacks,
)
from .config import CS, LOG_SCALES, METHODS, PREFERRED_SCALE, SCALE_TIE, DetectionConfig

SCALE_NAMES = {"ce": "probability", "ce_log_odds": "log_odds"}  # the CE detector's feature variant -> effect scale


@dataclass
class Fitted:
    detector: CEDetector
    variant: str  # the features it reads ("ce", "ce_log_odds" or the baseline's own)
    validation: dict


def choose_variant(
    scores: dict[str, float], tolerance: float = SCALE_TIE, preferred: str = PREFERRED_SCALE
) -> tuple[str, bool]:
    """(the chosen variant, whether a tie decided it): the highest validation AUROC, except that variants within
    ``tolerance`` of it tie, and a tie goes to ``preferred`` (else to the first tied variant). A tie must not go to
    whichever scale was tried first: on saturated outputs probability effects vanish and both scales can reach 1.0."""
    finite = {v: s for v, s in scores.items() if s == s}
    if not finite:
        return (preferred if preferred in scores else next(iter(scores))), False
    top = max(finite.values())
    tied = [v for v, s in finite.items() if s >= top - tolerance]
    if len(tied) == 1:
        return tied[0], False
    return (preferred if preferred in tied else tied[0]), True


def best_other(row: dict) -> tuple[str, str] | None:
    """(method, form) of the detector other than CE with the highest AUROC estimate on this row, supervised or
    unsupervised: for transfer to unseen attacks an unsupervised score (e.g. Xu et al.'s feature squeezing) is a fair
    rival, having seen no attack at all. None when no other detector has an AUROC."""
    cells = [
        (cell["auroc"]["estimate"], method, form)
        for form in ("supervised", "unsupervised")
        for method, cell in row.get(form, {}).items()
        if method != "ce" and cell is not None and cell["auroc"]["estimate"] == cell["auroc"]["estimate"]
    ]
    if not cells:
        return None
    _, method, form = max(cells, key=lambda c: c[0])  # the first of equals: supervised before unsupervised
    return method, form


def detection_cell(clean: np.ndarray, adv: np.ndarray, n_boot: int, seed: int) -> dict:
    """AUROC and TPR at 5% FPR with intervals that resample *images*: ``clean[i]`` and ``adv[i]`` are the scores of one
    image and its adversarial, so they are drawn together (a mismatch in length is an error, not a silent fallback to
    independent draws)."""
    a = bootstrap_auroc(clean, adv, n_boot, seed, paired=True)
    t = bootstrap_tpr_at_fpr(clean, adv, 0.05, n_boot, seed, paired=True)
    return {"auroc": a.to_json(), "tpr_at_5fpr": t.to_json()}


def progress(out: Path, line: str) -> None:
    """One timestamped line in ``out/progress.txt`` (a long study's trail, read while it runs)."""
    with open(out / "progress.txt", "a") as fh:
        fh.write(f"{time.strftime('%H:%M:%S')} {line}\n")


class Study:
    """The state of one detection study: parts, every detector's features of them, attacks and their outcomes."""

    def __init__(self, ctx: StudyContext, cfg: DetectionConfig) -> None:
        self.ctx, self.cfg = ctx, cfg
        self.clf = ctx.classifier
        budgets = ctx.test.attack_budgets
        self.squeezers = budgets.squeezers
        self.fit_images, self.fit_labels, self.eval_images, self.eval_labels, self.reference = self._parts()
        self.features = DetectorFeatures(
            self.clf, ctx.autoencoder, self.reference, self.squeezers, cfg.lid_k, cfg.signature
        )
        self.clean = {"fit": self.features(self.fit_images), "eval": self.features(self.eval_images)}
        self.clean_saturated = {
            "fit": saturated(self.clf, self.fit_images),
            "eval": saturated(self.clf, self.eval_images),
        }
        self.specs = study_attacks(self.clf, budgets, cfg)
        self.outcomes: dict[str, dict[str, AttackOutcome]] = {}

    # data
    def _parts(self):
        """(fit images, labels, evaluation images, labels, reference images): train images for fitting and for the
        baselines' reference statistics (disjoint), test images for evaluation, in seeded orders."""
        ctx, cfg = self.ctx, self.cfg
        order = torch.randperm(len(ctx.train), generator=ctx.generator("detection/train-order")).tolist()
        reference_ids, candidates = order[-cfg.n_reference :], order[: len(order) - cfg.n_reference]
        fit_images, fit_labels = self._correct(ctx.train, candidates, cfg.n_fit)
        test_order = torch.randperm(len(ctx.test), generator=ctx.generator("detection/test-order")).tolist()
        eval_images, eval_labels = self._correct(ctx.test, test_order, cfg.n_eval)
        return fit_images, fit_labels, eval_images, eval_labels, ctx.train.batch(reference_ids).images

    def _correct(self, dataset, order: list[int], n: int):
        batch = dataset.batch(order[: min(len(order), 2 * n if not self.clf.multilabel else n)])
        if self.clf.multilabel:
            return batch.images[:n], None
        with torch.inference_mode():
            correct = self.clf.predict_proba(batch.images).argmax(-1) == batch.labels
        return batch.images[correct][:n], batch.labels[correct][:n]

    # fitting
    def fit(self, method: str, sources: tuple[str, ...]) -> Fitted | None:
        """The supervised detector of ``method`` on the fit part's successful adversarials of ``sources`` and their
        clean images; for CE, the effect scale with the higher validation AUROC, a tie (:func:`choose_variant`) going
        to the scale fixed in advance."""
        variants = ("ce", "ce_log_odds") if method == "ce" else (method,)
        candidates = {v: self._fit_variant(v, sources) for v in variants}
        if any(c is None for c in candidates.values()):
            return None
        scores = {v: c.validation["best_validation_auroc"] for v, c in candidates.items()}
        chosen, tie_break = choose_variant(scores)
        best = candidates[chosen]
        if method == "ce":
            best.validation["effect_scale"] = SCALE_NAMES[chosen]
            best.validation["scale_tie_break"] = {"decided_by_tie_break": tie_break, "tolerance": SCALE_TIE}
        others = [c.validation for v, c in candidates.items() if v != chosen]
        if others:
            best.validation["other_variants"] = others
        return best

    def _fit_variant(self, variant: str, sources: tuple[str, ...]) -> Fitted | None:
        """The detector on ``variant``'s features, (C, log unit) chosen by grouped cross-validation; None with fewer
        than 4 successful adversarials."""
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
        det, val = select_detector(
            np.concatenate(xs),
            y,
            groups=np.concatenate(groups),
            Cs=CS,
            log_scales=LOG_SCALES,
            seed=self.cfg.seed,
            log_features=list(info.log_features),
            feature_names=list(info.feature_names),
        )
        score = max(val.values()) if val else float("nan")
        chosen = {"C": det.C, "log_scale": det.log_scale}
        return Fitted(det, variant, {"variant": variant, "best_validation_auroc": score, "chosen": chosen})

    def scores(self, method: str, fitted: Fitted | None, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(clean, adversarial) scores on the evaluation part for attack ``key``, aligned by image (the i-th adversarial
        is the i-th clean image's); unsupervised when ``fitted`` is None."""
        out = self.outcomes[key]["eval"]
        if fitted is None:
            fn = self.features.info[method].unsupervised
            if fn is None:
                return None
            adv = out.features[method]
            return fn(self.clean["eval"][method][out.success]), fn(adv) if len(adv) else np.zeros(0)
        v = fitted.variant
        adv = out.features[v]
        return (
            fitted.detector.decision_function(self.clean["eval"][v][out.success]),
            fitted.detector.decision_function(adv) if len(adv) else np.zeros(0),
        )

    def cell(self, clean: np.ndarray, adv: np.ndarray) -> dict:
        return detection_cell(clean, adv, self.cfg.n_boot, self.cfg.seed)

    def row(self, key: str, fit_on: str, detectors: dict[str, Fitted | None], seen: bool) -> dict:
        """One evaluation row: every supervised detector (fitted on ``fit_on``) and every unsupervised score on attack
        ``key``; CE against the best other detector in either form, paired on the same images."""
        out = self.outcomes[key]["eval"]
        row = {
            "attack": key,
            "label": self.specs[key].label,
            "kind": self.specs[key].kind,
            "fit_on": fit_on,
            "seen": seen,
            "n_clean": int(out.success.sum()),
            "n_adversarial": int(out.success.sum()),
        }
        scored = {"supervised": {}, "unsupervised": {}}
        for form, methods in (("supervised", METHODS), ("unsupervised", BASELINE_METHODS)):
            row[form] = {}
            for method in methods:
                fitted = detectors.get(method) if form == "supervised" else None
                s = None if form == "supervised" and fitted is None else self.scores(method, fitted, key)
                if s is None or len(s[0]) < 2 or len(s[1]) < 2:
                    row[form][method] = None
                    continue
                scored[form][method], cell = s, self.cell(*s)
                extra = {"features": fitted.variant} if fitted else {"reversed": bool(cell["auroc"]["high"] < 0.5)}
                row[form][method] = {**cell, **extra}
        best = best_other(row)
        if "ce" in scored["supervised"] and best is not None:
            method, form = best
            d = paired_auroc_difference(
                *scored["supervised"]["ce"], *scored[form][method], self.cfg.n_boot, self.cfg.seed, paired=True
            )
            row["ce_minus_best_baseline"] = {"baseline": method, "form": form, **d.to_json()}
        return row

    # attacks
    def attack(self, out: Path) -> tuple[dict, dict[str, float]]:
        """Run every attack on both parts (or, with ``cfg.resume``, restore those a previous run of the same budget
        saved
        in ``out``); saves features.npz and attacks.json. Returns (attacks.json's content, seconds per attack)."""
        attacks_json, timings = {}, {}
        parts = {"fit": (self.fit_images, self.fit_labels), "eval": (self.eval_images, self.eval_labels)}
        saved = out / "features.npz"
        restored: dict[str, dict[str, AttackOutcome]] = {}
        if self.cfg.resume and saved.exists() and (out / "attacks.json").exists():
            previous = json.loads((out / "attacks.json").read_text())
            same = [k for k, spec in self.specs.items() if k in previous and same_budget(previous[k], spec.attack)]
            restored = load_outcomes(saved, same)
            attacks_json = {k: previous[k] for k in same}
            progress(out, f"--resume: outcomes of {', '.join(same) or 'no attack'} restored (same settings)")
        for key, spec in self.specs.items():
            if key in restored:
                self.outcomes[key] = restored[key]
                continue
            t = time.perf_counter()
            self.outcomes[key] = {}
            entry = {"label": spec.label, "kind": spec.kind, "attack": spec.attack.name, "budget": spec.attack.budget()}
            for part, (images, labels) in parts.items():
                res = spec.attack(images, labels)
                margin, sat = margins_and_saturation(spec.attack, self.clf, images, res.adversarial, res.labels)
                outcome = AttackOutcome(
                    res.success.numpy(),
                    res.linf.numpy(),
                    res.l2.numpy(),
                    margin,
                    sat,
                    self.features(res.adversarial[res.success]),
                )
                self.outcomes[key][part] = outcome
                entry[part] = outcome.summary(self.clean_saturated[part], self.clean[part]["msp"][:, 0])
                if (record := convergence(spec.attack)) is not None:
                    entry[part]["convergence"] = record
            attacks_json[key] = entry
            timings[f"attack {key}"] = time.perf_counter() - t
            progress(out, f"{spec.label}: {timings[f'attack {key}']:.0f}s, success {entry['eval']['success_rate']}")
        attacks_json = {k: attacks_json[k] for k in self.specs}
        self.save_features(saved)
        write_json(out / "attacks.json", attacks_json)
        return attacks_json, timings

    def save_features(self, path: Path) -> None:
        """Every detector input of the study (plain arrays), so the tables can be re-analysed without re-attacking."""
        arrays = {f"{p}/clean/{m}": v for p, feats in self.clean.items() for m, v in feats.items()}
        for key, parts in self.outcomes.items():
            for p, o in parts.items():
                arrays[f"{p}/success/{key}"] = o.success
                arrays[f"{p}/margin/{key}"] = o.margin
                arrays[f"{p}/linf/{key}"], arrays[f"{p}/l2/{key}"], arrays[f"{p}/saturated/{key}"] = (
                    o.linf,
                    o.l2,
                    o.saturated,
                )
                arrays |= {f"{p}/adversarial/{key}/{m}": v for m, v in o.features.items()}
        np.savez_compressed(path, **arrays)


MAP_EFFECTS = ("map_peak", "map_trough", "map_mean", "map_positive_mass", "map_negative_mass")


def signature_collapse(study: Study) -> dict:
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
            "clean": zero(study.clean["eval"][variant]),
            **{k: zero(o["eval"].features[variant]) for k, o in study.outcomes.items()},
        }
    return out
