"""Issue 26's resampling: images (clusters of pairs) rather than pairs, trainings above images, detection scores in
pairs."""

from __future__ import annotations

import numpy as np
import pytest

from cemap.evaluate.bootstrap import (
    bootstrap_auroc,
    bootstrap_mean,
    bootstrap_tpr_at_fpr,
    cluster_bootstrap_mean,
    cluster_paired_difference,
    detection_indices,
    hierarchical_difference,
    hierarchical_mean,
    paired_auroc_difference,
    paired_difference,
    percentile_interval,
    resample_indices,
)


def test_image_level_resampling_equals_resampling_image_means_when_images_have_equal_pair_counts():
    rng = np.random.default_rng(0)
    per_image = rng.random((50, 2))
    values, images = per_image.reshape(-1), np.repeat(np.arange(50), 2)
    clustered = cluster_bootstrap_mean(values, images, n_boot=500, seed=4)
    means = bootstrap_mean(per_image.mean(1), n_boot=500, seed=4)
    assert clustered.n == 50 and clustered.estimate == pytest.approx(values.mean())
    assert (clustered.low, clustered.high) == pytest.approx((means.low, means.high))


def test_image_level_resampling_by_hand_with_unequal_clusters_and_missing_values():
    rng = np.random.default_rng(1)
    images = np.sort(rng.integers(0, 30, size=70))
    values = rng.random(70)
    values[[3, 11]] = np.nan  # a pair without a value: ignored, its image still counts through its other pairs
    ours = cluster_bootstrap_mean(values, images, n_boot=300, seed=2)
    labels = np.unique(images[np.isfinite(values)])
    idx = resample_indices(len(labels), 300, 2)
    reference = []
    for draw in idx:
        units = np.concatenate([values[(images == labels[k]) & np.isfinite(values)] for k in draw])
        reference.append(units.mean())
    assert ours.n == len(labels) and ours.estimate == pytest.approx(np.nanmean(values))
    assert (ours.low, ours.high) == pytest.approx(percentile_interval(np.array(reference)))


def test_correlated_pairs_do_not_pass_for_independent_ones():
    """Three identical pairs per image: resampling pairs gives an interval about sqrt(3) too narrow; resampling images
    does not."""
    rng = np.random.default_rng(2)
    per_image = (rng.random(120) < 0.6).astype(float)
    values, images = np.repeat(per_image, 3), np.repeat(np.arange(120), 3)
    pairs, clustered, truth = bootstrap_mean(values), cluster_bootstrap_mean(values, images), bootstrap_mean(per_image)
    width = lambda i: i.high - i.low  # noqa: E731
    assert width(clustered) == pytest.approx(width(truth), rel=0.15)
    assert width(pairs) < 0.75 * width(clustered)
    d = cluster_paired_difference(values, np.zeros_like(values), images)
    assert d.n == 120 and d.verdict == "better" and d.estimate == pytest.approx(per_image.mean())


def test_hierarchical_interval_covers_the_spread_over_trainings():
    rng = np.random.default_rng(3)
    images = np.repeat(np.arange(100), 2)
    runs = [(shift + 0.01 * rng.standard_normal(200), images) for shift in (-0.1, 0.1, 0.3)]
    pooled = cluster_bootstrap_mean(
        np.concatenate([v for v, _ in runs]), np.concatenate([images + 1000 * k for k in range(3)])
    )
    over_trainings = hierarchical_mean(runs, n_boot=1000)
    assert over_trainings.n == 3 and over_trainings.estimate == pytest.approx(0.1, abs=0.01)
    assert pooled.high - pooled.low < 0.1 * (over_trainings.high - over_trainings.low)
    assert over_trainings.low < -0.05 and over_trainings.high > 0.25  # a training drawn three times is possible
    one = hierarchical_mean(runs[:1], n_boot=700, seed=5)
    alone = cluster_bootstrap_mean(*runs[0], n_boot=700, seed=5)
    assert (one.estimate, one.low, one.high) == pytest.approx((alone.estimate, alone.low, alone.high))
    d = hierarchical_difference([(v, np.zeros_like(v), c) for v, c in runs])
    assert d.verdict == "no different" and d.n == 3  # one training is below 0: not better over trainings
    d = hierarchical_difference([(v + 1, v, c) for v, c in runs], higher_is_better=False)
    assert d.verdict == "worse" and d.estimate == pytest.approx(1.0)


def test_detection_intervals_resample_clean_and_adversarial_scores_of_an_image_together():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    clean = rng.normal(size=40)
    adv = clean + rng.normal(0.5, 0.3, size=40)  # each adversarial score tied to its clean image's
    y = np.r_[np.zeros(40), np.ones(40)]
    ic, ia = detection_indices(40, 40, 300, 0)
    assert np.array_equal(ic, ia) and np.array_equal(ic, resample_indices(40, 300, 0))
    reference = [roc_auc_score(y, np.r_[clean[i], adv[i]]) for i in ic]
    ours = bootstrap_auroc(clean, adv, 300)
    assert (ours.low, ours.high) == pytest.approx(percentile_interval(np.array(reference)))
    assert ours.estimate == pytest.approx(roc_auc_score(y, np.r_[clean, adv]))
    stratified = bootstrap_auroc(clean, adv, 300, paired=False)
    assert (stratified.low, stratified.high) != (ours.low, ours.high)
    d = paired_auroc_difference(clean, adv, clean, adv + 1, 300)
    reference = [roc_auc_score(y, np.r_[clean[i], adv[i]]) - roc_auc_score(y, np.r_[clean[i], adv[i] + 1]) for i in ic]
    assert (d.low, d.high) == pytest.approx(percentile_interval(np.array(reference)))
    assert bootstrap_tpr_at_fpr(clean, adv, 0.05, 300).n == 40
    with pytest.raises(ValueError, match="one clean and one adversarial"):
        bootstrap_auroc(clean, adv[:30], paired=True)
    assert paired_difference(clean, adv).n == 40  # the plain paired bootstrap is unchanged
