"""Adaptive CE maps: coarse to fine on the dense map's grid, with fewer forward passes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cemap
from cemap.causal import CEMap
from cemap.causal.adaptive import AdaptiveCEMap


class HotCell(nn.Module):
    """Two-class linear model that only looks at the pixels of one 4 x 4 cell."""

    def __init__(self, y: int, x: int) -> None:
        super().__init__()
        self.weight = torch.zeros(1, 16, 16)
        self.weight[:, y : y + 4, x : x + 4] = 1.0

    def forward(self, images):
        score = (images * self.weight).flatten(1).sum(1, keepdim=True)
        return torch.cat([score, -score], dim=1)


def hot_classifier(y: int = 8, x: int = 4) -> cemap.Classifier:
    return cemap.Classifier(HotCell(y, x), class_names=["on", "off"], head="softmax", input_shape=(1, 16, 16), name="hot")


def test_level_zero_and_full_refinement_equal_the_dense_map(tiny_clf):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    dense = CEMap(tiny_clf, cell=4, stride=4).attribute(x)
    flat = AdaptiveCEMap(tiny_clf, cell=4, levels=0)
    everything = AdaptiveCEMap(tiny_clf, cell=4, levels=2, refine=1.0)
    torch.testing.assert_close(flat.attribute(x), dense, atol=1e-5, rtol=0)
    torch.testing.assert_close(everything.attribute(x), dense, atol=1e-5, rtol=0)
    assert flat.forward_passes == 2 * flat.dense_passes_per_image
    assert everything.forward_passes_per_image > flat.forward_passes_per_image


def test_refines_only_where_the_effect_is_and_counts_its_passes():
    clf = hot_classifier(8, 4)
    x = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.5
    ad = AdaptiveCEMap(clf, cell=4, levels=1, refine=0.25)
    maps = ad.attribute(x, target=0)
    # 4 x 4 cells -> 2 x 2 blocks: 1 unmasked + 4 blocks + 4 children of the one hot block.
    assert ad.forward_passes == 3 * 9 and ad.forward_passes_per_image == 9 < ad.dense_passes_per_image == 17
    dense = CEMap(clf, cell=4).attribute(x, target=0)
    torch.testing.assert_close(maps, dense, atol=1e-5, rtol=0)
    assert (maps[:, 8:12, 4:8] > 0).all() and (maps[:, :8] == 0).all()


def test_unrefined_blocks_share_their_effect_equally(tiny_clf):
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    ad = AdaptiveCEMap(tiny_clf, cell=4, levels=1, refine=0.25)
    maps = ad.attribute(x)
    cells = maps[0, ::4, ::4]
    blocks = cells.reshape(2, 2, 2, 2).permute(0, 2, 1, 3).reshape(4, 4)
    constant = [(b == b[0]).all() for b in blocks]
    assert sum(bool(c) for c in constant) >= 3  # three of four blocks were not refined: one value each


def test_bad_settings_are_clear_errors(tiny_clf):
    with pytest.raises(cemap.CemapError):
        AdaptiveCEMap(tiny_clf, refine=0)
    with pytest.raises(cemap.CemapError):
        AdaptiveCEMap(tiny_clf, levels=-1)
    with pytest.raises(cemap.CemapError):
        AdaptiveCEMap(tiny_clf, precision="fp16")
    with pytest.raises(cemap.CemapError):
        AdaptiveCEMap(tiny_clf).attribute(torch.rand(1, 1, 16, 16))
