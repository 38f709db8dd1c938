"""Bootstrap intervals for every reported figure, and verdicts read from them, never from point estimates.

Two resampling schemes cover cemap's studies:

* **paired** (:func:`bootstrap_mean`, :func:`paired_difference`): one value per unit (an
  (image, finding) pair, an image); units are resampled with replacement and, for a
  difference, both methods are resampled with the *same* indices, so the interval of the
  difference reflects that they were scored on the same units.
* **two-sample, stratified** (:func:`bootstrap_auroc`, :func:`paired_auroc_difference`):
  clean and adversarial scores are resampled separately (each side keeps its size), the
  detection analogue of the percentile bootstrap of DeLong-free AUROC intervals.

Percentile intervals, ``n_boot`` = 2,000 by default, seeded generators (no global RNG).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

N_BOOT = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile bootstrap interval over ``n`` units."""

    estimate: float
    low: float
    high: float
    n: int
    level: float = LEVEL

    def to_json(self) -> dict:
        return asdict(self)

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{self.estimate:{spec}} [{self.low:{spec}}, {self.high:{spec}}]"


@dataclass(frozen=True)
class Difference(Interval):
    """``a - b`` with its interval; ``verdict`` says whether ``a`` is better, no different or worse than ``b``."""

    verdict: str = "no different"


def _verdict(low: float, high: float, higher_is_better: bool) -> str:
    if np.isnan(low) or np.isnan(high):
        return "undetermined"
    if low > 0:
        return "better" if higher_is_better else "worse"
    if high < 0:
        return "worse" if higher_is_better else "better"
    return "no different"


def _percentiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def resample_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot x n`` indices drawn with replacement from ``range(n)`` by a seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_statistic(statistic: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = 0,
                        level: float = LEVEL) -> Interval:
    """Interval of ``statistic(indices)`` over bootstrap resamples of ``n`` units (``statistic(arange(n))`` is the estimate)."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    samples = np.array([statistic(idx) for idx in resample_indices(n, n_boot, seed)], dtype=float)
    return Interval(float(statistic(np.arange(n))), *_percentiles(samples, level), n, level)


def bootstrap_mean(values, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """Mean of ``values`` (shape (n,); NaN = unit without a value, ignored) with its bootstrap interval."""
    v = np.asarray(values, dtype=float).reshape(-1)
    keep = v[np.isfinite(v)]
    if not len(keep):
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    means = keep[resample_indices(len(keep), n_boot, seed)].mean(1)
    return Interval(float(keep.mean()), *_percentiles(means, level), len(keep), level)


def paired_difference(a, b, higher_is_better: bool = True, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Difference:
    """mean(a) - mean(b) over the units where both have a value, resampled in pairs.

    Args:
        a, b: shape (n,), one value per unit for each method, aligned (unit i is the same in both).
        higher_is_better: how to read the sign for the verdict.
    Returns:
        Difference with ``verdict`` "better" / "worse" when the interval excludes zero, else "no different".
    """
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values must align: {a.shape} vs {b.shape}")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    if not len(d):
        return Difference(float("nan"), float("nan"), float("nan"), 0, level, "undetermined")
    means = d[resample_indices(len(d), n_boot, seed)].mean(1)
    low, high = _percentiles(means, level)
    return Difference(float(d.mean()), low, high, len(d), level, _verdict(low, high, higher_is_better))


def _auroc(clean: np.ndarray, adv: np.ndarray) -> float:
    y = np.r_[np.zeros(len(clean)), np.ones(len(adv))]
    return float(roc_auc_score(y, np.r_[clean, adv]))


def _two_sample(n_clean: int, n_adv: int, n_boot: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_clean, size=(n_boot, n_clean)), rng.integers(0, n_adv, size=(n_boot, n_adv))


def bootstrap_auroc(clean, adversarial, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """AUROC of scores (higher = adversarial) with a stratified bootstrap interval; ``n`` = the smaller side."""
    clean, adv = np.asarray(clean, float).reshape(-1), np.asarray(adversarial, float).reshape(-1)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = _two_sample(len(clean), len(adv), n_boot, seed)
    samples = np.array([_auroc(clean[c], adv[a]) for c, a in zip(ic, ia)])
    return Interval(_auroc(clean, adv), *_percentiles(samples, level), min(len(clean), len(adv)), level)


def paired_auroc_difference(clean_a, adv_a, clean_b, adv_b, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Difference:
    """AUROC(a) - AUROC(b) for two detectors scoring the *same* clean and adversarial inputs (same resampled indices)."""
    clean_a, adv_a = np.asarray(clean_a, float).reshape(-1), np.asarray(adv_a, float).reshape(-1)
    clean_b, adv_b = np.asarray(clean_b, float).reshape(-1), np.asarray(adv_b, float).reshape(-1)
    if clean_a.shape != clean_b.shape or adv_a.shape != adv_b.shape:
        raise ValueError("both detectors must score the same inputs")
    if len(clean_a) < 2 or len(adv_a) < 2:
        return Difference(float("nan"), float("nan"), float("nan"), min(len(clean_a), len(adv_a)), level, "undetermined")
    ic, ia = _two_sample(len(clean_a), len(adv_a), n_boot, seed)
    samples = np.array([_auroc(clean_a[c], adv_a[a]) - _auroc(clean_b[c], adv_b[a]) for c, a in zip(ic, ia)])
    low, high = _percentiles(samples, level)
    estimate = _auroc(clean_a, adv_a) - _auroc(clean_b, adv_b)
    return Difference(estimate, low, high, min(len(clean_a), len(adv_a)), level, _verdict(low, high, True))


def _tpr_at_fpr(clean: np.ndarray, adv: np.ndarray, fpr: float) -> float:
    """The highest TPR of any threshold whose FPR is at most ``fpr`` (ties flagged together, as ``roc_curve`` does)."""
    allowed = int(np.floor(fpr * len(clean) + 1e-9))
    desc = np.sort(clean)[::-1]
    # flag scores > t; the best t keeps at most ``allowed`` clean scores above it: t = the (allowed+1)-th largest clean score
    threshold = desc[allowed] if allowed < len(desc) else -np.inf
    return float((adv > threshold).mean())


def bootstrap_tpr_at_fpr(clean, adversarial, fpr: float = 0.05, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """TPR at ``fpr`` (threshold from the clean scores, higher = adversarial) with a stratified bootstrap interval."""
    clean, adv = np.asarray(clean, float).reshape(-1), np.asarray(adversarial, float).reshape(-1)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = _two_sample(len(clean), len(adv), n_boot, seed)
    samples = np.array([_tpr_at_fpr(clean[c], adv[a], fpr) for c, a in zip(ic, ia)])
    return Interval(_tpr_at_fpr(clean, adv, fpr), *_percentiles(samples, level), min(len(clean), len(adv)), level)
