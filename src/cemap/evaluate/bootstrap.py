"""Bootstrap intervals for every reported figure, and verdicts read from them, never from point estimates.

The resampling schemes of cemap's studies:

* **paired** (:func:`bootstrap_mean`, :func:`paired_difference`): one value per unit; units are
  resampled with replacement and, for a difference, both methods are resampled with the *same*
  indices, so the interval of the difference reflects that they were scored on the same units.
* **clustered** (:func:`cluster_bootstrap_mean`, :func:`cluster_paired_difference`): units (e.g.
  (image, finding) pairs) grouped in clusters (images); *clusters* are resampled and every unit of
  a drawn cluster comes along, so correlated units of one image do not pass for independent ones.
  ``n`` is then the number of clusters.
* **hierarchical** (:func:`hierarchical_mean`, :func:`hierarchical_difference`): several runs (e.g.
  trainings of one model from different seeds), each with clustered units; the runs are resampled,
  then the clusters within each drawn run. The interval covers the choice of images *and* the
  training, so a verdict read from it holds over retraining. ``n`` is the number of runs.
* **two-sample** (:func:`bootstrap_auroc`, :func:`bootstrap_tpr_at_fpr`,
  :func:`paired_auroc_difference`): AUROC and TPR of detection scores. When the clean and the
  adversarial score of one image form a pair (same length, aligned), the images are resampled and
  both scores come along (:func:`paired_indices`); otherwise each side is resampled separately
  (:func:`stratified_indices`, each side keeps its size). ``paired=None`` decides by the lengths.

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
    """(low, high): the central ``level`` percentile interval of the finite ``samples`` (NaN, NaN when there are
    none)."""
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
    """Interval of ``statistic(indices)`` over bootstrap resamples of ``n`` units (``statistic(arange(n))`` is the
    estimate)."""
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


# ----------------------------------------------------------------------------------------------
# clustered (units within images) and hierarchical (images within trainings) resampling


def _cluster_sums(values, clusters) -> tuple[np.ndarray, np.ndarray]:
    """(per-cluster sum of the finite values, per-cluster count of them) over the distinct ``clusters`` (any hashable
    labels)."""
    v = np.asarray(values, dtype=float).reshape(-1)
    c = np.asarray(clusters).reshape(-1)
    if v.shape != c.shape:
        raise ValueError(f"one cluster label per value: {v.shape} values, {c.shape} labels")
    _, which = np.unique(c, return_inverse=True)
    finite = np.isfinite(v)
    k = int(which.max()) + 1 if len(which) else 0
    sums = np.bincount(which[finite], weights=v[finite], minlength=k)
    counts = np.bincount(which[finite], minlength=k).astype(float)
    keep = counts > 0
    return sums[keep], counts[keep]


def _resampled_cluster_means(sums: np.ndarray, counts: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` means over resamples of the clusters (each drawn cluster brings all its units)."""
    idx = rng.integers(0, len(sums), size=(n_boot, len(sums)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums[idx].sum(1) / counts[idx].sum(1)


def cluster_bootstrap_mean(values, clusters, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """Mean over units of ``values`` (NaN = no value) with an interval from resampling the ``clusters`` (one label per
    value).

    ``n`` of the result is the number of clusters with a value (e.g. images, not (image, finding) pairs).
    """
    sums, counts = _cluster_sums(values, clusters)
    if not len(sums):
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    means = _resampled_cluster_means(sums, counts, n_boot, np.random.default_rng(seed))
    return Interval(float(sums.sum() / counts.sum()), *percentile_interval(means, level), len(sums), level)


def cluster_paired_difference(
    a, b, clusters, higher_is_better: bool = True, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Difference:
    """mean(a) - mean(b) over the units where both have a value, resampling clusters (both methods with the same
    draws)."""
    a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired values must align: {a.shape} vs {b.shape}")
    i = cluster_bootstrap_mean(a - b, clusters, n_boot, seed, level)
    return Difference(i.estimate, i.low, i.high, i.n, level, _verdict(i.low, i.high, higher_is_better))


def hierarchical_mean(runs, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL) -> Interval:
    """Mean over runs of each run's unit mean, with a two-stage interval: runs resampled, then clusters within each
    drawn run.

    Args:
        runs: a sequence of ``(values, clusters)``, one per run (e.g. per training seed), as for
        :func:`cluster_bootstrap_mean`.
    Returns:
        Interval whose ``n`` is the number of runs with a value. With one run it is the clustered interval of that run.
    """
    per_run = [_cluster_sums(v, c) for v, c in runs]
    per_run = [(s, c) for s, c in per_run if len(s)]
    if not per_run:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    r = len(per_run)
    rng = np.random.default_rng(seed)
    # every (resample, slot) gets its own draw of clusters, so a run drawn twice in one resample is resampled twice
    draws = np.stack([_resampled_cluster_means(s, c, n_boot * r, rng) for s, c in per_run]).reshape(r, n_boot, r)
    pick = rng.integers(0, r, size=(n_boot, r))
    means = draws[pick, np.arange(n_boot)[:, None], np.arange(r)[None, :]].mean(1)
    estimate = float(np.mean([s.sum() / c.sum() for s, c in per_run]))
    return Interval(estimate, *percentile_interval(means, level), r, level)


def hierarchical_difference(
    runs, higher_is_better: bool = True, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL
) -> Difference:
    """:func:`hierarchical_mean` of a - b: ``runs`` is a sequence of ``(a, b, clusters)``; the verdict is read from the
    interval."""
    diffs = []
    for a, b, clusters in runs:
        a, b = np.asarray(a, dtype=float).reshape(-1), np.asarray(b, dtype=float).reshape(-1)
        if a.shape != b.shape:
            raise ValueError(f"paired values must align: {a.shape} vs {b.shape}")
        diffs.append((a - b, clusters))
    i = hierarchical_mean(diffs, n_boot, seed, level)
    return Difference(i.estimate, i.low, i.high, i.n, level, _verdict(i.low, i.high, higher_is_better))


# ----------------------------------------------------------------------------------------------
# detection: AUROC and TPR at a fixed FPR


def paired_indices(n: int, n_boot: int = N_BOOT, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same ``n_boot`` x n image resample for both sides: the clean and the adversarial score of an image travel
    together."""
    idx = resample_indices(n, n_boot, seed)
    return idx, idx


def detection_indices(
    n_clean: int, n_adv: int, n_boot: int = N_BOOT, seed: int = 0, paired: bool | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Paired resamples when ``paired`` (None: when both sides have the same length, i.e. one clean and one adversarial
    score per image, aligned), else stratified ones."""
    if paired is None:
        paired = n_clean == n_adv
    if paired:
        if n_clean != n_adv:
            raise ValueError(
                f"paired resampling needs one clean and one adversarial score per image: {n_clean} vs {n_adv}"
            )
        return paired_indices(n_clean, n_boot, seed)
    return stratified_indices(n_clean, n_adv, n_boot, seed)


def stratified_indices(
    n_first: int, n_second: int, n_boot: int = N_BOOT, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two ``n_boot`` x n index resamples, each side with its own size, drawn first for the first side from one seeded
    generator."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_first, size=(n_boot, n_first)), rng.integers(0, n_second, size=(n_boot, n_second))


def pairwise_wins(clean: np.ndarray, adv: np.ndarray) -> np.ndarray:
    """n_clean x n_adv: 1 where the adversarial (positive) scores higher, 0.5 on ties: the AUROC is its mean
    (Mann-Whitney)."""
    return (adv[None, :] > clean[:, None]) + 0.5 * (adv[None, :] == clean[:, None])


def _counts(idx: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((idx.shape[0], n))
    np.add.at(out, (np.repeat(np.arange(idx.shape[0]), idx.shape[1]), idx.reshape(-1)), 1.0)
    return out


def resampled_aurocs(clean: np.ndarray, adv: np.ndarray, ic: np.ndarray, ia: np.ndarray) -> np.ndarray:
    """The AUROC of each resample (rows of ``ic`` / ``ia`` index ``clean`` / ``adv``), exactly, from the pair-comparison
    matrix and each resample's multiplicities: a few matrix products instead of one ROC per resample (studies report
    hundreds)."""
    w = pairwise_wins(clean, adv)
    return ((_counts(ic, len(clean)) @ w) * _counts(ia, len(adv))).sum(1) / (len(clean) * len(adv))


def _scores(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, float).reshape(-1) for a in arrays]


def bootstrap_auroc(
    clean, adversarial, n_boot: int = N_BOOT, seed: int = 0, level: float = LEVEL, paired: bool | None = None
) -> Interval:
    """AUROC of scores (higher = adversarial / positive) with a bootstrap interval; ``n`` = the smaller side.

    Args:
        clean, adversarial: shape (n_clean,), (n_adv,): scores of the negatives and of the positives.
        paired: resample images, each with its clean and adversarial score (:func:`detection_indices`; None: when the
            two sides have the same length), or each side separately (False).
    Returns:
        Interval (NaN with fewer than 2 scores on a side).
    """
    clean, adv = _scores(clean, adversarial)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = detection_indices(len(clean), len(adv), n_boot, seed, paired)
    return Interval(
        float(pairwise_wins(clean, adv).mean()),
        *percentile_interval(resampled_aurocs(clean, adv, ic, ia), level),
        min(len(clean), len(adv)),
        level,
    )


def paired_auroc_difference(
    clean_a,
    adv_a,
    clean_b,
    adv_b,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    paired: bool | None = None,
) -> Difference:
    """AUROC(a) - AUROC(b) for two detectors scoring the *same* clean and adversarial inputs (same resampled indices;
    ``paired`` as in :func:`bootstrap_auroc`)."""
    ca, aa, cb, ab = _scores(clean_a, adv_a, clean_b, adv_b)
    if ca.shape != cb.shape or aa.shape != ab.shape:
        raise ValueError("both detectors must score the same inputs")
    if len(ca) < 2 or len(aa) < 2:
        return Difference(float("nan"), float("nan"), float("nan"), min(len(ca), len(aa)), level, "undetermined")
    ic, ia = detection_indices(len(ca), len(aa), n_boot, seed, paired)
    low, high = percentile_interval(resampled_aurocs(ca, aa, ic, ia) - resampled_aurocs(cb, ab, ic, ia), level)
    estimate = float(pairwise_wins(ca, aa).mean() - pairwise_wins(cb, ab).mean())
    return Difference(estimate, low, high, min(len(ca), len(aa)), level, _verdict(low, high, True))


def _resampled_tprs(clean: np.ndarray, adv: np.ndarray, ic: np.ndarray, ia: np.ndarray, fpr: float) -> np.ndarray:
    """Each resample's highest TPR of any threshold whose FPR is at most ``fpr`` (ties flagged together, as
    ``roc_curve`` does)."""
    allowed = int(np.floor(fpr * ic.shape[1] + 1e-9))
    # flag scores > t; the best t keeps at most ``allowed`` clean scores above it: t = the (allowed+1)-th largest clean
    # score
    desc = -np.sort(-clean[ic], axis=1)
    thresholds = desc[:, allowed] if allowed < ic.shape[1] else np.full(len(ic), -np.inf)
    return (adv[ia] > thresholds[:, None]).mean(1)


def bootstrap_tpr_at_fpr(
    clean,
    adversarial,
    fpr: float = 0.05,
    n_boot: int = N_BOOT,
    seed: int = 0,
    level: float = LEVEL,
    paired: bool | None = None,
) -> Interval:
    """TPR at ``fpr`` (threshold from the clean scores, higher = adversarial) with a bootstrap interval (``paired`` as
    in
    :func:`bootstrap_auroc`)."""
    clean, adv = _scores(clean, adversarial)
    if len(clean) < 2 or len(adv) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), min(len(clean), len(adv)), level)
    ic, ia = detection_indices(len(clean), len(adv), n_boot, seed, paired)
    estimate = float(_resampled_tprs(clean, adv, np.arange(len(clean))[None], np.arange(len(adv))[None], fpr)[0])
    return Interval(
        estimate,
        *percentile_interval(_resampled_tprs(clean, adv, ic, ia, fpr), level),
        min(len(clean), len(adv)),
        level,
    )
