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
    return {"auroc": auroc(y, s), f"tpr_at_{round(fpr * 100)}fpr": tpr_at_fpr(y, s, fpr), "n_clean": len(clean_scores), "n_adversarial": len(adversarial_scores)}


# -- vectorised bootstrap intervals -------------------------------------------------------------------------------------
# The same stratified resamples as ``cemap.evaluate.bootstrap`` (``_two_sample`` with the same seed), hence the same
# intervals to the last digit, but computed from resample *counts* in a few matrix products: a study reports hundreds.

def _pairwise(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """n_clean x n_adv: 1 where the adversarial scores higher, 0.5 on ties (AUROC = its mean, Mann-Whitney)."""
    return (adv[None, :] > clean[:, None]) + 0.5 * (adv[None, :] == clean[:, None])


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], n))
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.reshape(-1)), 1.0)
    return out


def _boot_aurocs(clean, adv, ic, ia) -> np.ndarray:
    w = _pairwise(clean, adv)
    cc, ca = _counts(ic, len(clean)), _counts(ia, len(adv))
    return ((cc @ w) * ca).sum(1) / (len(clean) * len(adv))


def auroc_interval(clean, adversarial, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """:func:`cemap.evaluate.bootstrap.bootstrap_auroc`, vectorised (identical resamples and numbers)."""
    from .bootstrap import Interval, _percentiles, _two_sample

    clean, adv = np.asarray(clean, float).reshape(-1), np.asarray(adversarial, float).reshape(-1)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = _two_sample(len(clean), len(adv), n_boot, seed)
    return Interval(float(_pairwise(clean, adv).mean()), *_percentiles(_boot_aurocs(clean, adv, ic, ia), level), min(len(clean), len(adv)), level)


def auroc_difference_interval(clean_a, adv_a, clean_b, adv_b, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """:func:`cemap.evaluate.bootstrap.paired_auroc_difference`, vectorised (identical resamples and numbers)."""
    from .bootstrap import Difference, _percentiles, _two_sample, _verdict

    ca, aa = np.asarray(clean_a, float).reshape(-1), np.asarray(adv_a, float).reshape(-1)
    cb, ab = np.asarray(clean_b, float).reshape(-1), np.asarray(adv_b, float).reshape(-1)
    if ca.shape != cb.shape or aa.shape != ab.shape:
        raise ValueError("both detectors must score the same inputs")
    if len(ca) < 2 or len(aa) < 2:
        return Difference(float("nan"), float("nan"), float("nan"), min(len(ca), len(aa)), level, "undetermined")
    ic, ia = _two_sample(len(ca), len(aa), n_boot, seed)
    samples = _boot_aurocs(ca, aa, ic, ia) - _boot_aurocs(cb, ab, ic, ia)
    low, high = _percentiles(samples, level)
    est = float(_pairwise(ca, aa).mean() - _pairwise(cb, ab).mean())
    return Difference(est, low, high, min(len(ca), len(aa)), level, _verdict(low, high, True))


def tpr_interval(clean, adversarial, fpr: float = 0.05, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """:func:`cemap.evaluate.bootstrap.bootstrap_tpr_at_fpr`, vectorised (identical resamples and numbers)."""
    from .bootstrap import Interval, _percentiles, _tpr_at_fpr, _two_sample

    clean, adv = np.asarray(clean, float).reshape(-1), np.asarray(adversarial, float).reshape(-1)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = _two_sample(len(clean), len(adv), n_boot, seed)
    allowed = int(np.floor(fpr * len(clean) + 1e-9))
    desc = -np.sort(-clean[ic], axis=1)
    thr = desc[:, allowed] if allowed < len(clean) else np.full(n_boot, -np.inf)
    samples = (adv[ia] > thr[:, None]).mean(1)
    return Interval(_tpr_at_fpr(clean, adv, fpr), *_percentiles(samples, level), min(len(clean), len(adv)), level)
