"""Adaptive CE maps: coarse to fine on the dense map's grid, with fewer forward passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cemap
from cemap.causal import CEMap
from cemap.causal.adaptive import AdaptiveCEMap


class HotCell(nn.Module):
    """Two-class linear model that only looks at the pixels of a 4-row strip (one or more 4 x 4 cells)."""

    def __init__(self, y: int, x: int, width: int = 4) -> None:
        super().__init__()
        self.weight = torch.zeros(1, 16, 16)
        self.weight[:, y : y + 4, x : x + width] = 1.0

    def forward(self, images):
        score = (images * self.weight).flatten(1).sum(1, keepdim=True)
        return torch.cat([score, -score], dim=1)


def hot_classifier(y: int = 8, x: int = 4, width: int = 4) -> cemap.Classifier:
    return cemap.Classifier(
        HotCell(y, x, width), class_names=["on", "off"], head="softmax", input_shape=(1, 16, 16), name="hot"
    )


def test_full_refinement_is_the_dense_map_and_passes_are_counted(tiny_clf):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    dense = CEMap(tiny_clf, cell=4, stride=4).attribute(x)
    everything = AdaptiveCEMap(tiny_clf, cell=4, refine=1.0)
    torch.testing.assert_close(everything.attribute(x), dense, atol=1e-5, rtol=0)
    assert everything.forward_passes == 2 * everything.dense_passes_per_image == 2 * 17
    checkerboard = AdaptiveCEMap(tiny_clf, cell=4, refine=0.0)
    maps = checkerboard.attribute(x)
    assert checkerboard.forward_passes_per_image == 1 + 8  # the unmasked image and half of the 4 x 4 cells
    torch.testing.assert_close(maps[:, ::8, ::8], dense[:, ::8, ::8], atol=1e-5, rtol=0)  # measured cells are exact


def test_left_out_cells_get_their_neighbours_mean_and_spread():
    from cemap.causal.adaptive import neighbour_estimates

    effects = torch.arange(9.0).reshape(1, 3, 3)
    measured = torch.arange(9).reshape(1, 3, 3) % 2 == 0  # corners and centre
    mean, spread = neighbour_estimates(effects, measured)
    assert mean[0, 0, 1] == (0 + 2 + 4) / 3 and spread[0, 0, 1] == 4  # top edge: left, right, centre
    assert mean[0, 1, 0] == (0 + 6 + 4) / 3 and spread[0, 1, 0] == 6


def test_refines_where_the_effect_is_and_finds_the_hot_region():
    clf = hot_classifier(8, 4, width=8)  # the model looks at cells (2, 1) and (2, 2) of a 4 x 4 grid
    x = (
        torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.25
    )  # unsaturated: masking a cell moves p
    ad = AdaptiveCEMap(clf, cell=4, refine=0.5)
    maps = ad.attribute(x, target=0)
    # (2, 2) is on the checkerboard; its four neighbours tie as the largest and most uncertain estimates
    assert ad.forward_passes_per_image == 1 + 8 + 4 < ad.dense_passes_per_image == 17
    dense = CEMap(clf, cell=4).attribute(x, target=0)
    torch.testing.assert_close(maps[:, 8:12, 4:12], dense[:, 8:12, 4:12], atol=1e-5, rtol=0)  # both hot cells measured
    assert maps[:, 8:12, 4:12].amin() > maps[:, :8].amax()


def test_bad_settings_are_clear_errors(tiny_clf):
    with pytest.raises(cemap.CemapError, match="refine"):
        AdaptiveCEMap(tiny_clf, refine=1.5)
    with pytest.raises(cemap.CemapError):
        AdaptiveCEMap(tiny_clf, precision="fp16")
    with pytest.raises(cemap.CemapError):
        AdaptiveCEMap(tiny_clf).attribute(torch.rand(1, 1, 16, 16))


def test_targets_per_image_and_first_order_candidates_find_an_isolated_feature():
    clf = hot_classifier(8, 4)  # one hot cell, (2, 1): off the checkerboard, and masking its neighbours does nothing
    x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(3)) * 0.25
    found = AdaptiveCEMap(clf, cell=4, refine=0.125, candidates=1).attribute(
        x, target=torch.tensor([0, 0])
    )  # one cell refined
    blind = AdaptiveCEMap(clf, cell=4, refine=0.0).attribute(x, target=0)
    assert (found[:, 8:12, 4:8] > 0).all() and (found[:, 8:12, 4:8].amin() > found[:, :8].amax())
    assert (blind == 0).all()  # the checkerboard alone: masking the hot cell's neighbours does not move the prediction
    with pytest.raises(cemap.CemapError, match="targets"):
        AdaptiveCEMap(clf, cell=4).attribute(x, target=torch.tensor([0, 1, 0]))
