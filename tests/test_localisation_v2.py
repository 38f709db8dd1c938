"""Issue 16's localisation metrics: one box geometry, single-maximum pointing game, ChestX-ray8 T(IoBB), and Quantus
agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemap.errors import CemapError
from cemap.evaluate.localisation import (
    box_masks,
    chestxray8_localisation,
    detected_regions,
    energy_share,
    normalise_maps,
    pointing_game,
    raster_boxes,
    scaled_tolerance,
)


def _masks(maps, boxes):
    return box_masks(tuple(maps.shape[1:]), boxes)


def test_constant_and_nan_maps_are_misses():
    maps = torch.stack([torch.zeros(8, 8), torch.full((8, 8), float("nan")), torch.ones(8, 8)])
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])] * 3
    masks = _masks(maps, boxes)
    for rule in ("single", "any"):
        assert not pointing_game(maps, masks, rule=rule).any()
    assert not pointing_game(maps, masks, tolerance=5).any()
    # the v1 rule counted a constant map as a hit - the reason for v2
    from cemap.evaluate.localisation import pointing_game_hits

    assert bool(pointing_game_hits(torch.zeros(1, 8, 8), [torch.tensor([[0.0, 0.0, 1.0, 1.0]])])[0])


def test_single_maximum_breaks_ties_at_random_and_any_rule_does_not():
    # a plateau of 4 pixels, one of them in the box: 'any' always hits, 'single' hits about a quarter of the time
    m = torch.zeros(400, 8, 8)
    m[:, 0:2, 0:2] = 1.0
    boxes = [torch.tensor([[0.0, 0.0, 1.0, 1.0]])] * 400
    masks = _masks(m, boxes)
    assert pointing_game(m, masks, rule="any").all()
    single = pointing_game(m, masks, rule="single", generator=torch.Generator().manual_seed(3))
    assert 0.18 < single.float().mean() < 0.32
    again = pointing_game(m, masks, rule="single", generator=torch.Generator().manual_seed(3))
    assert torch.equal(single, again)  # seeded


def test_nan_pixels_are_ignored_not_maximal():
    m = torch.zeros(1, 6, 6)
    m[0, 0, 0] = float("nan")
    m[0, 4, 4] = 2.0
    masks = _masks(m, [torch.tensor([[4.0, 4.0, 5.0, 5.0]])])
    assert pointing_game(m, masks).all()


def test_tolerance_is_distance_between_pixel_centres():
    m = torch.zeros(1, 20, 20)
    m[0, 10, 15] = 1.0  # centre (15.5, 10.5)
    box = [torch.tensor([[2.0, 2.0, 12.0, 12.0]])]  # last box pixel column 11, centre 11.5: distance 4
    masks = _masks(m, box)
    assert not pointing_game(m, masks, tolerance=3.9).any()
    assert pointing_game(m, masks, tolerance=4.0).all()
    assert scaled_tolerance(112) == pytest.approx(7.5)


def test_one_geometry_fractional_boxes_rasterise_like_box_mask():
    boxes = torch.tensor([[1.2, 0.5, 3.7, 2.0], [-1.0, 5.0, 2.0, 9.9]])
    r = raster_boxes(boxes, 8, 8)
    assert r.tolist() == [[1.0, 0.0, 4.0, 2.0], [0.0, 5.0, 2.0, 8.0]]
    mask = box_masks((8, 8), [boxes])[0]
    painted = torch.zeros(8, 8, dtype=torch.bool)
    for x0, y0, x1, y1 in r.long().tolist():
        painted[y0:y1, x0:x1] = True
    assert torch.equal(mask, painted)
    # a pointing hit at a fractional box's edge pixel uses the same pixel set
    m = torch.zeros(1, 8, 8)
    m[0, 0, 3] = 1.0  # column 3 overlaps (1.2, 3.7)
    assert pointing_game(m, box_masks((8, 8), [boxes])).all()


def test_shapes_are_checked():
    maps = torch.rand(3, 8, 8)
    with pytest.raises(CemapError):
        pointing_game(maps, torch.zeros(2, 8, 8, dtype=torch.bool))
    with pytest.raises(CemapError):
        energy_share(maps, torch.zeros(3, 8, 9, dtype=torch.bool))
    with pytest.raises(CemapError):
        chestxray8_localisation(maps, [torch.zeros(1, 4)] * 2)


def test_chestxray8_every_region_counts_and_false_positives_are_reported():
    m = torch.zeros(1, 32, 32)
    m[0, 2:6, 2:6] = 1.0  # inside the true box
    m[0, 20:24, 20:30] = 0.9  # a second region far away: a false positive
    truth = [torch.tensor([[0.0, 0.0, 8.0, 8.0]])]
    regions = detected_regions(m, level=0.5)
    assert sorted(regions[0].tolist()) == [[2.0, 2.0, 6.0, 6.0], [20.0, 20.0, 30.0, 24.0]]
    out = chestxray8_localisation(m, truth, thresholds=(0.25, 0.5), level=0.5)
    hits, fps = out[0.25]
    assert hits.tolist() == [True] and fps.tolist() == [1.0]
    iou_hits, _ = chestxray8_localisation(m, truth, thresholds=(0.5,), level=0.5, overlap="iou")[0.5]
    assert iou_hits.tolist() == [False]  # a 4 x 4 detection of an 8 x 8 box: IoBB 1, IoU 0.25


def test_chestxray8_normalises_before_thresholding_and_constant_maps_detect_nothing():
    m = torch.full((2, 16, 16), 5.0)
    m[0, 4:8, 4:8] = 6.0  # min-max normalised: 1 inside, 0 outside
    assert normalise_maps(m)[0].max() == 1 and normalise_maps(m)[0].min() == 0
    regions = detected_regions(m, level=0.7)
    assert regions[0].tolist() == [[4.0, 4.0, 8.0, 8.0]] and len(regions[1]) == 0
    hits, fps = chestxray8_localisation(m, [torch.tensor([[4.0, 4.0, 8.0, 8.0]])] * 2, thresholds=(0.5,))[0.5]
    assert hits.tolist() == [True, False] and fps.tolist() == [0.0, 0.0]


def test_regions_do_not_connect_across_the_batch():
    m = torch.zeros(2, 8, 8)
    m[0, 7, :] = 1
    m[1, 0, :] = 1
    regions = detected_regions(m, level=0.5)
    assert regions[0].tolist() == [[0.0, 7.0, 8.0, 8.0]] and regions[1].tolist() == [[0.0, 0.0, 8.0, 1.0]]


@pytest.fixture(scope="module")
def quantus_case():
    quantus = pytest.importorskip("quantus")
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.random((24, 16, 16)).astype(np.float32))
    maps[::3] = torch.from_numpy(
        np.round(rng.random((8, 16, 16)) * 4).astype(np.float32)
    )  # some maps with ties at the maximum
    boxes = []
    for _ in range(24):
        x0, y0 = rng.integers(0, 10, 2)
        w, h = rng.integers(2, 7, 2)
        boxes.append(torch.tensor([[float(x0) + 0.3, float(y0), float(x0 + w) + 0.4, float(y0 + h)]]))
    masks = box_masks((16, 16), boxes)
    return quantus, maps, boxes, masks


def test_pointing_game_equals_quantus(quantus_case):
    quantus, maps, _, masks = quantus_case
    x = np.zeros((24, 1, 16, 16), np.float32)
    s = masks[:, None].numpy().astype(np.float32)
    theirs = quantus.PointingGame(disable_warnings=True)(
        model=None, x_batch=x, y_batch=np.zeros(24, int), a_batch=maps[:, None].numpy(), s_batch=s
    )
    ours_any = pointing_game(maps, masks, rule="any")
    assert ours_any.tolist() == [bool(v) for v in theirs]
    unique = (maps.flatten(1) == maps.flatten(1).max(1, keepdim=True).values).sum(1) == 1
    ours_single = pointing_game(maps, masks, rule="single")
    assert unique.any() and torch.equal(ours_single[unique], ours_any[unique])  # one maximum: the rules agree


def test_energy_pointing_equals_quantus_attribution_localisation(quantus_case):
    quantus, maps, _, masks = quantus_case
    x = np.zeros((24, 1, 16, 16), np.float32)
    s = masks[:, None].numpy().astype(np.float32)
    theirs = quantus.AttributionLocalisation(disable_warnings=True, abs=False, normalise=False)(
        model=None, x_batch=x, y_batch=np.zeros(24, int), a_batch=maps[:, None].numpy(), s_batch=s
    )
    np.testing.assert_allclose(energy_share(maps, masks).numpy(), np.asarray(theirs, dtype=np.float32), rtol=1e-5)
