"""Detection metrics as plain functions of arrays: label 1 = adversarial, higher score = more adversarial."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from ..errors import CemapError


def _check(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(y_true).astype(int).reshape(-1), np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(y) != len(s):
        raise CemapError(f"{len(y)} labels but {len(s)} scores")
    if set(np.unique(y)) != {0, 1}:
        raise CemapError("detection metrics need both clean (0) and adversarial (1) samples")
    return y, s


def auroc(y_true, scores) -> float:
    y, s = _check(y_true, scores)
    return float(roc_auc_score(y, s))


def roc_points(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) of the ROC curve."""
    y, s = _check(y_true, scores)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return fpr, tpr


def tpr_at_fpr(y_true, scores, fpr: float = 0.05) -> float:
    """The highest true-positive rate of any threshold whose false-positive rate is at most ``fpr``."""
    f, t = roc_points(y_true, scores)
    return float(t[f <= fpr + 1e-12].max())


def detection_metrics(clean_scores, adversarial_scores, fpr: float = 0.05) -> dict:
    """AUROC and TPR at ``fpr`` for clean versus adversarial scores, with the counts."""
    s = np.concatenate([np.asarray(clean_scores, dtype=np.float64), np.asarray(adversarial_scores, dtype=np.float64)])
    y = np.r_[np.zeros(len(clean_scores)), np.ones(len(adversarial_scores))]
    return {
        "auroc": auroc(y, s),
        f"tpr_at_{round(fpr * 100)}fpr": tpr_at_fpr(y, s, fpr),
        "n_clean": len(clean_scores),
        "n_adversarial": len(adversarial_scores),
    }
