"""The adaptive attacker against each detector (Tramer et al. 2020): PGD on the classifier's margin and the
detector's score, swept over the detector-loss weight, steps and restarts; the worst case per image is reported."""

from __future__ import annotations

import numpy as np
import torch

from ...detect import AdaptivePGD, CEDetector
from .attacks import margins_and_saturation
from .protocol import Fitted, Study


def nan0(x) -> float:
    """``x`` as a float, 0 where it is None or NaN (for ordering)."""
    return 0.0 if x is None or x != x else float(x)


def adaptive_attack(study: Study, method: str, fitted: Fitted) -> dict:
    """Tramer et al.: PGD on -max(margin, -kappa) - w * detector logit, swept over w, steps (checkpoints) and
    restarts; per setting and over the whole sweep, each image's successful adversarial the detector scores lowest."""
    cfg = study.cfg
    n = min(cfg.n_adaptive, len(study.eval_images))
    images, labels = study.eval_images[:n], None if study.eval_labels is None else study.eval_labels[:n]
    det, fn = fitted.detector, study.features.differentiable(fitted.variant)
    eps = study.specs["pgd_high"].attack.eps
    alpha = max(eps / 20, 2.5 * eps / cfg.adaptive_steps)
    clean_scores = det.decision_function(study.clean["eval"][fitted.variant][:n])  # the attacked images' own
    grad_check = gradient_check(fn, det, images, eps)
    rows, all_best = [], np.full(n, np.inf)
    for (weight, steps), runs in sorted(sweep(study, fitted, images, labels, eps, alpha).items()):
        best = np.full(n, np.inf)
        for ok, score in runs:
            best = np.where(ok & (score < best), score, best)
        all_best = np.minimum(all_best, best)
        metrics = adaptive_metrics(study, best, clean_scores, det)
        rows.append({"detector_weight": weight, "steps": steps, "restarts": len(runs), **metrics})
    worst = adaptive_metrics(study, all_best, clean_scores, det)
    finite = (r for r in rows if nan0(r["auroc"]["estimate"]) == r["auroc"]["estimate"])
    by_auroc = min(finite, key=lambda r: r["auroc"]["estimate"], default=None)
    return {
        "method": method,
        "features": fitted.variant,
        "n_attacked": n,
        "eps": eps,
        "alpha": alpha,
        "kappa": 1.0,
        "gradient_check": grad_check,
        "sweep": rows,
        "worst_case_per_image": {
            "what": "each image's successful adversarial with the lowest detector score over the whole sweep",
            **worst,
        },
        "worst_setting_by_auroc": None if by_auroc is None else {k: by_auroc[k] for k in ("detector_weight", "steps")},
    }


def sweep(study: Study, fitted: Fitted, images: torch.Tensor, labels, eps: float, alpha: float) -> dict[tuple, list]:
    """(detector weight, steps) -> per restart (success, detector score) of each image's adversarial at that point."""
    cfg, clf, det = study.cfg, study.clf, fitted.detector
    fn = study.features.differentiable(fitted.variant)
    candidates: dict[tuple[float, int], list] = {}
    for weight in cfg.adaptive_weights:
        for restart in range(cfg.adaptive_restarts):
            seed = cfg.seed + 1000 * restart + 1
            attack = AdaptivePGD(
                clf,
                fn,
                det,
                weight=weight,
                eps=eps,
                alpha=alpha,
                steps=cfg.adaptive_steps,
                random_start=True,
                seed=seed,
                batch_size=16,
                checkpoints=cfg.adaptive_checkpoints,
            )
            res = attack(images, labels)
            for steps, parts in attack.history.items():
                adv = torch.cat(parts)
                margin, _ = margins_and_saturation(attack, clf, images, adv, res.labels)
                score = det.decision_function(study.features(adv, (fitted.variant,))[fitted.variant])
                candidates.setdefault((weight, steps), []).append((margin < 0, score))
    return candidates


def adaptive_metrics(study: Study, best: np.ndarray, clean_scores: np.ndarray, det: CEDetector) -> dict:
    """Success, evasion, and AUROC / TPR of each successful adversarial against its own clean image (``best[i]`` and
    ``clean_scores[i]`` are one image's), resampled by image as every other detection row is."""
    ok = np.isfinite(best)
    adv = best[ok]
    evasion = float((adv <= det.threshold_).sum() / len(best))
    cell = study.cell(clean_scores[ok], adv) if len(adv) >= 2 else {"auroc": None, "tpr_at_5fpr": None}
    if cell["auroc"] is None:
        cell = {
            "auroc": {
                "estimate": float("nan"),
                "low": float("nan"),
                "high": float("nan"),
                "n": int(len(adv)),
                "level": 0.95,
            },
            "tpr_at_5fpr": {
                "estimate": float("nan"),
                "low": float("nan"),
                "high": float("nan"),
                "n": int(len(adv)),
                "level": 0.95,
            },
        }
    return {"success_rate": float(ok.mean()), "evasion_rate": evasion, **cell}


def gradient_check(fn, det: CEDetector, images: torch.Tensor, eps: float) -> dict:
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
    return {
        "nonzero_share": float((norm > 1e-12).float().mean()),
        "median_l1_norm": float(norm.median()),
        "descent_share": float((drop > 0).mean()),
        "median_score_drop": float(np.median(drop)),
        "step": 0.01 * eps,
    }
