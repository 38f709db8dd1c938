"""The detection study's attacks: each a typed record picked by name, run on both parts, its outcomes saved to
resume."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...attacks import FGSM, PGD, Attack, CarliniWagnerL2, ConfidenceMatchedPGD, MinimalPGD
from ...data.base import AttackBudgets
from ...jsonio import dumps
from .config import SATURATED, DetectionConfig


@dataclass
class AttackSpec:
    key: str  # stable name the study refers to (never a position)
    label: str  # readable name for tables
    kind: str  # "standard", "minimal", "confidence-matched" or "converged C&W"
    attack: Attack


def study_attacks(classifier, budgets: AttackBudgets, cfg: DetectionConfig) -> dict[str, AttackSpec]:
    """The study's attacks at the dataset's own budgets (its low and high L-inf, its C&W start: c and Adam's step), by
    key; the study's config, not the dataset, sets C&W's step counts, so that a reported run is one that converges."""
    low, high = budgets.linf
    fmt = budgets.label
    specs = [
        AttackSpec("fgsm_low", f"FGSM eps={fmt(low)}", "standard", FGSM(classifier, eps=low)),
        AttackSpec("fgsm_high", f"FGSM eps={fmt(high)}", "standard", FGSM(classifier, eps=high)),
        AttackSpec(
            "pgd_low",
            f"PGD-Linf eps={fmt(low)}",
            "standard",
            PGD(classifier, eps=low, steps=cfg.pgd_steps, seed=cfg.seed),
        ),
        AttackSpec(
            "pgd_high",
            f"PGD-Linf eps={fmt(high)}",
            "standard",
            PGD(classifier, eps=high, steps=cfg.pgd_steps, seed=cfg.seed),
        ),
        AttackSpec(
            "pgd_minimal",
            f"PGD first flip (eps<={fmt(high)})",
            "minimal",
            MinimalPGD(classifier, eps=high, steps=cfg.minimal_steps),
        ),
        AttackSpec(
            "pgd_matched",
            f"PGD confidence-matched (eps={fmt(high)})",
            "confidence-matched",
            ConfidenceMatchedPGD(classifier, eps=high, steps=cfg.matched_steps),
        ),
        AttackSpec(
            "cw",
            "C&W-L2 kappa=0 (binary search)",
            "converged C&W",
            CarliniWagnerL2(
                classifier,
                kappa=0.0,
                **{**dict(budgets.cw), "steps": cfg.cw_steps, "search_steps": cfg.cw_search_steps},
            ),
        ),
    ]
    return {s.key: s for s in specs}


@dataclass
class AttackOutcome:
    """One attack on one part: per attacked image its success, norms, margin and saturation; features of the
    successes."""

    success: np.ndarray
    linf: np.ndarray
    l2: np.ndarray
    margin: (
        np.ndarray
    )  # the attack's own margin in logits after the attack (<0 = success; more negative = farther past)
    saturated: np.ndarray  # every output probability within 1e-6 of 0 or 1
    features: dict[str, np.ndarray]  # method -> features of the successful adversarials

    def summary(self, clean_saturated: np.ndarray, clean_conf: np.ndarray) -> dict:
        ok = self.success
        med = lambda v: float(np.median(v[ok])) if ok.any() else None  # noqa: E731
        conf_gap = None
        if ok.any():
            conf_gap = float(np.median(np.abs(self.features["msp"][:, 0] - clean_conf[ok])))
        return {
            "n_attacked": int(len(ok)),
            "success_rate": float(ok.mean()) if len(ok) else None,
            "median_linf": med(self.linf),
            "median_linf_255": None if med(self.linf) is None else med(self.linf) * 255,
            "median_l2": med(self.l2),
            "median_margin_logits": med(self.margin),
            "margin_quartiles": [float(q) for q in np.percentile(self.margin[ok], [25, 75])] if ok.any() else None,
            "saturated_share": float(self.saturated[ok].mean()) if ok.any() else None,
            "clean_saturated_share": float(clean_saturated.mean()) if len(clean_saturated) else None,
            "median_confidence_gap": conf_gap,
        }


def clean_decisions(clf, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
    if not clf.multilabel:
        return None
    with torch.inference_mode():
        return (clf(images).float().gather(1, labels[:, None]).squeeze(1) > 0).float()


def margins_and_saturation(attack: Attack, clf, images, adversarial, labels) -> tuple[np.ndarray, np.ndarray]:
    original = clean_decisions(clf, images, labels)
    with torch.inference_mode():
        logits = clf(adversarial).float()
        margin = attack.margin(logits, labels, None, original)
        p = clf.probabilities(logits)
        saturated = ((p < SATURATED) | (p > 1 - SATURATED)).all(1)
    return margin.numpy().astype(float), saturated.numpy()


def saturated(clf, images) -> np.ndarray:
    with torch.inference_mode():
        p = clf.predict_proba(images).float()
    return ((p < SATURATED) | (p > 1 - SATURATED)).all(1).numpy()


def load_outcomes(path: Path, keys: list[str]) -> dict[str, dict[str, AttackOutcome]]:
    with np.load(path, allow_pickle=False) as data:
        outcomes = {}
        for key in keys:
            outcomes[key] = {}
            for p in ("fit", "eval"):
                feats = {n.rsplit("/", 1)[1]: data[n] for n in data.files if n.startswith(f"{p}/adversarial/{key}/")}
                outcomes[key][p] = AttackOutcome(
                    data[f"{p}/success/{key}"],
                    data[f"{p}/linf/{key}"],
                    data[f"{p}/l2/{key}"],
                    data[f"{p}/margin/{key}"],
                    data[f"{p}/saturated/{key}"],
                    feats,
                )
    return outcomes


def convergence(attack: Attack) -> list[dict] | None:
    """A copy of the record the attack kept of its last call (C&W: one entry per search step and chunk, so a reader can
    judge whether it converged), None for attacks that keep none."""
    record = getattr(attack, "convergence", None)
    return None if record is None else [dict(r) for r in record]


def same_budget(previous: dict, attack: Attack) -> bool:
    """Whether a saved attack (attacks.json) ran with this attack's budget (after the JSON round trip)."""
    return previous["budget"] == json.loads(dumps(attack.budget()))
