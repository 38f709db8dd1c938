"""Issue 26's new scores: causal ground truth (lesion ranking), CheXlocalize's mIoU / hit rate, strict T(IoBB)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemap.evaluate.groundtruth import footprints, lesion_shares, rank_agreement, true_effects
from cemap.evaluate.localisation import (
    CHEXLOCALIZE_THRESHOLDS,
    chestxray8_localisation,
    chexlocalize_hits,
    chexlocalize_iou,
    tune_chexlocalize_thresholds,
)

BOXES = torch.tensor([[2.0, 2.0, 6.0, 6.0], [10.0, 10.0, 16.0, 14.0], [1.5, 10.2, 4.0, 15.0]])


def _painted(values) -> torch.Tensor:
    feet = footprints(BOXES, 16, 16)
    return (torch.tensor(values, dtype=torch.float32)[:, None, None] * feet.float()).sum(0)


def test_footprints_are_the_pixels_a_box_touches():
    feet = footprints(BOXES, 16, 16)
    assert feet.shape == (3, 16, 16) and feet[0].sum() == 16 and feet[2].sum() == 3 * 5  # x 1..3, y 10..14
    assert footprints(torch.zeros(0, 4), 16, 16).shape == (0, 16, 16)


def test_a_map_that_ranks_lesions_as_their_effects_scores_one_and_the_reverse_minus_one():
    feet = [footprints(BOXES, 16, 16)] * 3
    effects = [torch.tensor([0.5, 0.1, 0.3])] * 3
    maps = torch.stack([_painted([3.0, 1.0, 2.0]), _painted([1.0, 3.0, 2.0]), torch.ones(16, 16)])
    shares = lesion_shares(maps, feet)
    assert torch.allclose(
        shares[0] * maps[0].abs().sum(), torch.tensor([3.0 * 16, 1.0 * 24, 2.0 * 15], dtype=torch.float64)
    )
    out = rank_agreement(shares, effects)
    assert out["rank_correlation"][0] == pytest.approx(1.0) and out["top1"][0] == 1.0
    assert (
        out["rank_correlation"][1] == pytest.approx(-1.0) and out["top1"][1] == 0.0
    )  # mass 16, 72, 30: the reverse order
    # a flat map gives each lesion its area: it ranks by size (24 > 16 > 15 px), here half against the effects
    assert out["rank_correlation"][2] == pytest.approx(-0.5)


def test_equal_shares_rank_nothing_and_ties_are_broken_at_random():
    zero = [torch.zeros(2, dtype=torch.float64)] * 400
    out = rank_agreement(zero, [torch.tensor([0.2, 0.1])] * 400, torch.Generator().manual_seed(0))
    assert (out["rank_correlation"] == 0).all()
    assert 0.4 < out["top1"].mean() < 0.6  # chance, not scan order
    single = rank_agreement([torch.tensor([1.0])], [torch.tensor([0.3])])
    assert np.isnan(single["rank_correlation"][0]) and np.isnan(single["top1"][0])


def test_negative_attribution_ranks_a_lesion_last():
    feet = [footprints(BOXES[:2], 16, 16)]
    m = _painted([1.0, -2.0, 0.0])[None]
    out = rank_agreement(lesion_shares(m, feet), [torch.tensor([0.3, -0.1])])
    assert out["top1"][0] == 1.0 and out["rank_correlation"][0] == pytest.approx(1.0)


class MeanModel(torch.nn.Module):
    def forward(self, x):
        m = x.mean(dim=(1, 2, 3))
        return torch.stack([m, 2 * m], 1)


def test_true_effects_are_score_drops_per_removed_lesion():
    import cemap

    clf = cemap.Classifier(MeanModel(), class_names=["a", "b"], head="sigmoid", input_shape=(1, 4, 4))
    x = torch.full((2, 1, 4, 4), 0.5)
    without = [torch.stack([torch.full((1, 4, 4), 0.25), torch.full((1, 4, 4), 0.5)]), torch.full((1, 1, 4, 4), 0.0)]
    eff = true_effects(clf, x, without, torch.tensor([0, 1]), output="logit")
    assert torch.allclose(eff[0], torch.tensor([0.25, 0.0])) and torch.allclose(eff[1], torch.tensor([1.0]))


def _their_iou(pred, gt):
    """CheXlocalize's calculate_iou with true_pos_only=True, restated."""
    if pred.sum() == 0 or gt.sum() == 0:
        return np.nan
    return np.logical_and(pred, gt).sum() / np.logical_or(pred, gt).sum()


def test_chexlocalize_iou_and_hit_rate_follow_their_definitions():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(20, 12, 12, generator=g)
    maps[3] = 1.0  # a constant map: no segmentation, left out
    masks = torch.zeros(20, 12, 12, dtype=torch.bool)
    masks[:, 3:8, 2:9] = True
    masks[5] = False  # no truth: NaN
    for t in (0.3, 0.6):
        ours = chexlocalize_iou(maps, masks, t).numpy()
        for i in range(20):
            m = maps[i].double().numpy()
            norm = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.full_like(m, np.nan)
            ref = _their_iou(norm > t, masks[i].numpy())
            assert (np.isnan(ref) and np.isnan(ours[i])) or ours[i] == pytest.approx(ref, abs=1e-6)
    hits = chexlocalize_hits(maps, masks).numpy()
    ref = [
        float(masks[i].numpy().reshape(-1)[np.argmax(maps[i].numpy())]) if masks[i].any() else np.nan for i in range(20)
    ]
    np.testing.assert_array_equal(np.isnan(hits), np.isnan(ref))
    np.testing.assert_array_equal(hits[~np.isnan(hits)], np.array(ref)[~np.isnan(ref)])


def test_chexlocalize_thresholds_are_tuned_per_finding_to_the_best_miou():
    masks = torch.zeros(4, 10, 10, dtype=torch.bool)
    masks[:, 2:6, 2:6] = True
    maps = torch.zeros(4, 10, 10)
    maps[:2, 2:6, 2:6] = 1.0
    maps[:2, 0:2, :] = 0.45  # a plateau just below 0.5: kept at 0.2-0.4, dropped from 0.5 up
    maps[2:, 2:6, 2:6] = 1.0  # finding 1: every threshold is perfect, the first (0.2) wins
    table = tune_chexlocalize_thresholds(maps, masks, torch.tensor([0, 0, 1, 1]))
    assert table[0]["threshold"] == 0.5 and table[1]["threshold"] == 0.2
    assert set(table[0]["miou"]) == set(CHEXLOCALIZE_THRESHOLDS) and table[0]["miou"][0.5] == pytest.approx(1.0)


def test_iobb_hits_are_strict_at_wang_et_al_thresholds():
    m = torch.zeros(1, 16, 16)
    m[0, 0:4, 0:4] = 1.0  # a 4 x 4 detection, 4 of its 16 pixels in the truth: IoBB exactly 0.25
    truth = [torch.tensor([[3.0, 0.0, 8.0, 4.0]])]
    out = chestxray8_localisation(m, truth)
    assert sorted(out) == [0.1, 0.25, 0.5, 0.75, 0.9]
    hits, fps = out[0.25]
    assert hits.tolist() == [False] and fps.tolist() == [1.0]  # >= would count it
    assert out[0.1][0].tolist() == [True]
