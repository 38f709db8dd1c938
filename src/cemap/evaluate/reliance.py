"""Reliance on a planted signal, measured by intervention, and Adebayo et al.'s explanation measures.

**Verification** (:func:`verify_reliance`). Each held-out image is scored twice by the model, with the
artifact added and removed (exactly, :mod:`cemap.data.artifacts`). From the two scores:

* the *decision change*: the share of images whose decision on the target finding differs (with a
  percentile bootstrap interval over images), and the mean absolute change in its probability;
* the target's AUROC on the *aligned* split (artifact on the positives only) and on the *flipped* split
  (artifact on the negatives only), both built from the same images, and their paired difference.

A model *relies* on the artifact when the decision change's lower bound exceeds :data:`RELIES_MIN_CHANGE`
and the AUROC drop's lower bound exceeds 0; it *does not rely* when the decision change's upper bound is below
:data:`RELIES_MIN_CHANGE`; otherwise reliance is unclear. The threshold was fixed on the development models
(training seed 0, a calibration seed) before any reported model was trained: a normal model may still change up
to one decision in ten when an artifact degrades the image (a blur softens small nodules). Spurious models that do
not rely, and normal models that do not verifiably ignore the artifact, are excluded from the benchmark and counted.

**Adebayo, Muelly, Abelson and Kim (ICLR 2022)** compare explanations by their structural similarity (SSIM)
on [0, 1]-normalised absolute maps (:func:`map_similarity`):

* known spurious signal detection (K-SSD): the spurious model's maps on artifact images against the
  artifact's ground truth (its region for a local artifact; the pixels it changes, ``|add(x) - x|``, for a
  texture or a global one - the paper had no ground truth for its blur). Higher = the map shows the artifact;
* cause for concern (CCM): spurious model's against normal model's maps on the same artifact images.
  *Lower* = the maps differ, which is what should alert a user;
* false alarm (FAM): the same two models' maps on images without the artifact, where both models should use
  the findings alike. Lower = the maps differ where nothing spurious is at work (a false alarm).

**Rates over models** (:func:`rate`) carry Clopper-Pearson exact 95% intervals (a handful of models per
artifact: a bootstrap over 3 models would say [1, 1] for 3 of 3). :func:`choose_threshold` fixes a decision
threshold on calibration models only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .bootstrap import LEVEL, N_BOOT, Interval, bootstrap_mean, percentile_interval, resample_indices

RELIES_MIN_CHANGE = (
    0.10  # share of target decisions: above it (lower bound) "relies", below it (upper bound) "does not rely"
)


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    return float(wins)


@dataclass
class Verification:
    """How much a model's target decision depends on the artifact (see the module docstring)."""

    decision_change: Interval
    mean_abs_change: Interval
    auroc_aligned: float
    auroc_flipped: float
    auroc_drop: Interval
    verdict: str  # "relies", "does not rely" or "unclear"

    def to_json(self) -> dict:
        out = asdict(self)
        for key in ("decision_change", "mean_abs_change", "auroc_drop"):
            out[key] = getattr(self, key).to_json()
        return out


def verify_reliance(
    p_with: np.ndarray,
    p_without: np.ndarray,
    positive: np.ndarray,
    decide_with: np.ndarray | None = None,
    decide_without: np.ndarray | None = None,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Verification:
    """Reliance of one model on one artifact from its target scores on the same images with and without it.

    Args:
        p_with, p_without: (n,) target probabilities with the artifact added / removed.
        positive: (n,) booleans, does the image show the target.
        decide_with, decide_without: (n,) decisions on the target (default: probability > 0.5; pass argmax == target
            for a softmax model).
    """
    p_with, p_without = np.asarray(p_with, float), np.asarray(p_without, float)
    y = np.asarray(positive, bool)
    dw = p_with > 0.5 if decide_with is None else np.asarray(decide_with, bool)
    dwo = p_without > 0.5 if decide_without is None else np.asarray(decide_without, bool)
    change = bootstrap_mean((dw != dwo).astype(float), n_boot=n_boot, seed=seed)
    abs_change = bootstrap_mean(np.abs(p_with - p_without), n_boot=n_boot, seed=seed)
    aligned, flipped = np.where(y, p_with, p_without), np.where(y, p_without, p_with)
    idx = resample_indices(len(y), n_boot, seed)
    drops = np.array([_auroc(y[i], aligned[i]) - _auroc(y[i], flipped[i]) for i in idx])
    a, f = _auroc(y, aligned), _auroc(y, flipped)
    drop = Interval(a - f, *percentile_interval(drops), len(y))
    if change.low > RELIES_MIN_CHANGE and drop.low > 0:
        verdict = "relies"
    elif change.high < RELIES_MIN_CHANGE:
        verdict = "does not rely"
    else:
        verdict = "unclear"
    return Verification(change, abs_change, a, f, drop, verdict)


def map_similarity(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """B SSIMs between two stacks of B x H x W maps, each map's absolute value min-max normalised to [0, 1] first."""
    from skimage.metrics import structural_similarity

    from .localisation import normalise_maps

    na, nb = normalise_maps(a.abs().float()).numpy(), normalise_maps(b.abs().float()).numpy()
    win = min(7, *a.shape[1:]) // 2 * 2 + 1 if min(a.shape[1:]) >= 7 else 3
    return np.array([structural_similarity(x, y, data_range=1.0, win_size=win) for x, y in zip(na, nb)])


def ground_truth_maps(with_artifact: torch.Tensor, without: torch.Tensor, region: torch.Tensor | None) -> torch.Tensor:
    """B x H x W K-SSD ground truth: the artifact's region where it has one, else where (and how much) it changes
    pixels."""
    if region is not None:
        return region.float()
    return (with_artifact - without).abs().sum(1)


def kssd(spurious_maps: torch.Tensor, truth: torch.Tensor, seed: int = 0) -> Interval:
    return bootstrap_mean(map_similarity(spurious_maps, truth), seed=seed)


def ccm(spurious_maps: torch.Tensor, normal_maps: torch.Tensor, seed: int = 0) -> Interval:
    """Cause for concern: similarity of the two models' maps on artifact images (lower = the maps tell them apart)."""
    return bootstrap_mean(map_similarity(spurious_maps, normal_maps), seed=seed)


def fam(spurious_maps_clean: torch.Tensor, normal_maps_clean: torch.Tensor, seed: int = 0) -> Interval:
    """False alarm: similarity of the two models' maps on images without the artifact (lower = a false alarm)."""
    return bootstrap_mean(map_similarity(spurious_maps_clean, normal_maps_clean), seed=seed)


def rate(flags, level: float = LEVEL) -> Interval:
    """Share of True among ``flags`` (one per model) with its Clopper-Pearson exact interval; NaN without models."""
    from scipy.stats import beta

    f = np.asarray(flags, bool).reshape(-1)
    n, k = len(f), int(f.sum())
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level)
    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return Interval(k / n, low, high, n, level)


def choose_threshold(positive_scores, negative_scores, max_false_alarm: float = 0.1) -> float:
    """The threshold t (flag when score > t) with the best detection minus false alarm on calibration models, among
    those
    whose false-alarm rate is at most ``max_false_alarm``; t lies halfway between two observed scores (the largest such
    t on ties)."""
    pos, neg = np.asarray(positive_scores, float), np.asarray(negative_scores, float)
    values = np.unique(np.concatenate([pos, neg]))
    candidates = (
        np.concatenate([(values[:-1] + values[1:]) / 2, [values[-1] + 1e-9]]) if len(values) else np.array([0.0])
    )
    best, best_t = -np.inf, float(candidates[-1])
    for t in candidates:
        fa = (neg > t).mean() if len(neg) else 0.0
        if fa > max_false_alarm:
            continue
        gain = ((pos > t).mean() if len(pos) else 0.0) - fa
        if gain >= best:
            best, best_t = gain, float(t)
    return best_t
