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
from .attacks import AttackOutcome, load_outcomes, margins_and_saturation, same_budget, saturated, study_attacks
from .config import CS, LOG_SCALES, METHODS, DetectionConfig


@dataclass
class Fitted:
    detector: CEDetector
    variant: str  # the features it reads ("ce", "ce_log_odds" or the baseline's own)
    validation: dict


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
        clean images."""
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
            candidate = Fitted(
                det,
                variant,
                {
                    "variant": variant,
                    "best_validation_auroc": score,
                    "chosen": {"C": det.C, "log_scale": det.log_scale},
                },
            )
            if best is None or score > best.validation["best_validation_auroc"]:
                if best is not None:
                    candidate.validation["other_variants"] = [best.validation]
                best = candidate
            else:
                best.validation.setdefault("other_variants", []).append(candidate.validation)
        return best

    def scores(self, method: str, fitted: Fitted | None, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(clean, adversarial) scores on the evaluation part for attack ``key``; unsupervised when ``fitted`` is
        None."""
        out = self.outcomes[key]["eval"]
        if fitted is None:
            fn = self.features.info[method].unsupervised
            if fn is None:
                return None
            return fn(self.clean["eval"][method][out.success]), fn(out.features[method]) if len(
                out.features[method]
            ) else np.zeros(0)
        v = fitted.variant
        adv = out.features[v]
        return (
            fitted.detector.decision_function(self.clean["eval"][v][out.success]),
            fitted.detector.decision_function(adv) if len(adv) else np.zeros(0),
        )

    def cell(self, clean: np.ndarray, adv: np.ndarray) -> dict:
        a = bootstrap_auroc(clean, adv, self.cfg.n_boot, self.cfg.seed)
        t = bootstrap_tpr_at_fpr(clean, adv, 0.05, self.cfg.n_boot, self.cfg.seed)
        return {"auroc": a.to_json(), "tpr_at_5fpr": t.to_json()}

    def row(self, key: str, fit_on: str, detectors: dict[str, Fitted | None], seen: bool) -> dict:
        """One evaluation row: every supervised detector (fitted on ``fit_on``) and every unsupervised score on attack
        ``key``."""
        out = self.outcomes[key]["eval"]
        row = {
            "attack": key,
            "label": self.specs[key].label,
            "kind": self.specs[key].kind,
            "fit_on": fit_on,
            "seen": seen,
            "n_clean": int(out.success.sum()),
            "n_adversarial": int(out.success.sum()),
            "supervised": {},
            "unsupervised": {},
        }
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
