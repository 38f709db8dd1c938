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


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """(low, high): the central ``level`` percentile interval of the finite ``samples`` (NaN, NaN when there are none)."""
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)


def resample_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """``n_boot x n`` indices drawn with replacement from ``range(n)`` by a seeded generator."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_statistic(
    statistic: Callable[[np.ndarray], float], n: int, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Interval:
    """Interval of ``statistic(indices)`` over bootstrap resamples of ``n`` units (``statistic(arange(n))`` is the estimate)."""
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    samples = np.array([statistic(idx) for idx in resample_indices(n, n_boot, seed)], dtype=float)
    return Interval(float(statistic(np.arange(n))), *percentile_interval(samples, level), n, level)


def bootstrap_mean(values, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """Mean of ``values`` (shape (n,); NaN = unit without a value, ignored) with its bootstrap interval."""
    v = np.asarray(values, dtype=float).reshape(-1)
    keep = v[np.isfinite(v)]
    if not len(keep):
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    means = keep[resample_indices(len(keep), n_boot, seed)].mean(1)
    return Interval(float(keep.mean()), *percentile_interval(means, level), len(keep), level)


def paired_difference(
    a, b, higher_is_better: bool = True, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Difference:
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
    low, high = percentile_interval(means, level)
    return Difference(float(d.mean()), low, high, len(d), level, _verdict(low, high, higher_is_better))


def stratified_indices(
    n_first: int, n_second: int, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two ``n_boot`` x n index resamples, each side with its own size, drawn first for the first side from one seeded generator."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_first, size=(n_boot, n_first)), rng.integers(0, n_second, size=(n_boot, n_second))


def pairwise_wins(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """n_clean x n_adv: 1 where the adversarial (positive) scores higher, 0.5 on ties: the AUROC is its mean (Mann-Whitney)."""
    return (adv[None, :] > clean[:, None]) + 0.5 * (adv[None, :] == clean[:, None])


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], n))
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.reshape(-1)), 1.0)
    return out


def resampled_aurocs(clean: np.ndarray, adv: np.ndarray, ic: np.ndarray, ia: np.ndarray) -> np.ndarray:
    """The AUROC of each resample (rows of ``ic`` / ``ia`` index ``clean`` / ``adv``), exactly, from the pair-comparison
    matrix and each resample's multiplicities: a few matrix products instead of one ROC per resample (studies report hundreds)."""
    w = pairwise_wins(clean, adv)
    return ((_counts(ic, len(clean)) @ w) * _counts(ia, len(adv))).sum(1) / (len(clean) * len(adv))


def _scores(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, float).reshape(-1) for a in arrays]


def bootstrap_auroc(clean, adversarial, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """AUROC of scores (higher = adversarial / positive) with a stratified bootstrap interval; ``n`` = the smaller side.

    Args:
        clean, adversarial: shape (n_clean,), (n_adv,): scores of the negatives and of the positives.
    Returns:
        Interval (NaN with fewer than 2 scores on a side).
    """
    clean, adv = _scores(clean, adversarial)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = stratified_indices(len(clean), len(adv), n_boot, seed)
    return Interval(
        float(pairwise_wins(clean, adv).mean()),
        *percentile_interval(resampled_aurocs(clean, adv, ic, ia), level),
        min(len(clean), len(adv)),
        level,
    )


def paired_auroc_difference(
    clean_a, adv_a, clean_b, adv_b, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Difference:
    """AUROC(a) - AUROC(b) for two detectors scoring the *same* clean and adversarial inputs (same resampled indices)."""
    ca, aa, cb, ab = _scores(clean_a, adv_a, clean_b, adv_b)
    if ca.shape != cb.shape or aa.shape != ab.shape:
        raise ValueError("both detectors must score the same inputs")
    if len(ca) < 2 or len(aa) < 2:
        return Difference(float("nan"), float("nan"), float("nan"), min(len(ca), len(aa)), level, "undetermined")
    ic, ia = stratified_indices(len(ca), len(aa), n_boot, seed)
    low, high = percentile_interval(resampled_aurocs(ca, aa, ic, ia) - resampled_aurocs(cb, ab, ic, ia), level)
    estimate = float(pairwise_wins(ca, aa).mean() - pairwise_wins(cb, ab).mean())
    return Difference(estimate, low, high, min(len(ca), len(aa)), level, _verdict(low, high, True))


def _resampled_tprs(clean: np.ndarray, adv: np.ndarray, ic: np.ndarray, ia: np.ndarray, fpr: float) -> np.ndarray:
    """Each resample's highest TPR of any threshold whose FPR is at most ``fpr`` (ties flagged together, as ``roc_curve`` does)."""
    allowed = int(np.floor(fpr * ic.shape[1] + 1e-9))
    # flag scores > t; the best t keeps at most ``allowed`` clean scores above it: t = the (allowed+1)-th largest clean score
    desc = -np.sort(-clean[ic], axis=1)
    thresholds = desc[:, allowed] if allowed < ic.shape[1] else np.full(len(ic), -np.inf)
    return (adv[ia] > thresholds[:, None]).mean(1)


def bootstrap_tpr_at_fpr(
    clean, adversarial, fpr: float = 0.05, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Interval:
    """TPR at ``fpr`` (threshold from the clean scores, higher = adversarial) with a stratified bootstrap interval."""
    clean, adv = _scores(clean, adversarial)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = stratified_indices(len(clean), len(adv), n_boot, seed)
    estimate = float(_resampled_tprs(clean, adv, np.arange(len(clean))[None], np.arange(len(adv))[None], fpr)[0])
    return Interval(
        estimate,
        *percentile_interval(_resampled_tprs(clean, adv, ic, ia, fpr), level),
        min(len(clean), len(adv)),
        level,
    )
