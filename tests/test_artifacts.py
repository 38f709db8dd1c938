"""Planted artifacts are added and removed exactly; global interventions and exchanges do what they say."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemap.causal.global_interventions import (
    GlobalIntervention,
    battery,
    exchanges,
    level_swap,
    histogram_swap,
    parse_intervention,
    restrict,
)
from cemap.data import get_dataset
from cemap.data.artifacts import ARTIFACTS, NON_VISIBLE, plant
from cemap.errors import CemapError

SMALL = {"size": 64, "n_train": 8, "n_test": 40, "seed": 3}


@pytest.fixture(scope="module", params=sorted(ARTIFACTS))
def planted(request):
    return get_dataset("synthcxr-planted", split="test", artifact=request.param, mode="normal", **SMALL)


def test_removing_returns_the_clean_image_bit_for_bit_and_adding_is_repeatable(planted):
    idx = np.arange(len(planted))
    clean = planted.base.images.float() / 255.0
    assert torch.equal(planted.images(idx, False), clean)
    added = planted.images(idx, True)
    assert torch.equal(
        added, planted.images(idx, True)
    )  # the same pixels every time (noise included: seeded per image)
    assert not torch.equal(added, clean)
    assert torch.equal(
        planted.images(idx[::-1].copy(), True), added.flip(0)
    )  # an image's artifact does not depend on its batch


def test_the_split_holds_exactly_the_added_or_the_clean_image(planted):
    flags = planted.present.numpy()
    assert 0 < flags.mean() < 1  # mode "normal": about half
    for i in (0, 1, 2, 3):
        want = planted.images([i], bool(flags[i]))[0]
        assert torch.equal(planted[i].image, want)


def test_local_artifacts_touch_only_their_region(planted):
    idx = np.arange(8)
    diff = (planted.images(idx, True) - planted.images(idx, False)).abs().sum(1) > 0
    region = planted.region(idx)
    if planted.artifact.kind == "local":
        assert region is not None and diff.any()
        assert not (diff & ~region).any()
    else:
        assert region is None
        assert diff.float().mean() > 0.2  # textures and global artifacts touch much of the image


def test_presence_follows_the_mode():
    kw = dict(artifact="tag", **{**SMALL, "n_test": 300})
    spurious = get_dataset("synthcxr-planted", split="test", mode="spurious", **kw)
    flipped = get_dataset("synthcxr-planted", split="test", mode="flipped", **kw)
    y = spurious.target_mask()
    assert spurious.present[y].float().mean() > 0.75 and spurious.present[~y].float().mean() < 0.25
    assert flipped.present[y].float().mean() < 0.25 and flipped.present[~y].float().mean() > 0.75
    assert get_dataset("synthcxr-planted", split="test", mode="added", **kw).present.all()
    assert not get_dataset("synthcxr-planted", split="test", mode="removed", **kw).present.any()


def test_mnist_wrapper_and_errors():
    d = get_dataset("mnist5k-planted", split="test", artifact="letter", mode="spurious")
    assert d.target_name == "3" and d[0].image.shape == (1, 28, 28)
    assert torch.equal(d.images([0, 1], False), d.base.images[:2])
    assert set(NON_VISIBLE) == {"blur", "contrast", "noise"}
    with pytest.raises(CemapError, match="unknown artifact"):
        get_dataset("synthcxr-planted", artifact="sticker", **SMALL)
    with pytest.raises(CemapError, match="planting mode"):
        get_dataset("synthcxr-planted", mode="sometimes", **SMALL)


def test_plant_adds_only_where_asked():
    images = torch.rand(4, 1, 32, 32)
    art = ARTIFACTS["blur"]
    out = plant(images, art, np.zeros((4, 1)), [True, False, True, False])
    assert torch.equal(out[1], images[1]) and torch.equal(out[3], images[3]) and not torch.equal(out[0], images[0])


def test_global_interventions_clip_keep_shapes_and_are_neutral_at_neutral_strengths():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 1, 64, 64, generator=g)
    for t in battery():
        out = t(images, torch.Generator().manual_seed(1))
        assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1, t.name
    for neutral in (
        GlobalIntervention("contrast", 1.0),
        GlobalIntervention("brightness", 0.0),
        GlobalIntervention("noise", 0.0),
    ):
        assert torch.allclose(neutral(images), images, atol=1e-6), neutral.name
    hflip = GlobalIntervention("hflip", 1)
    assert torch.equal(hflip(hflip(images)), images)
    assert (
        parse_intervention("blur 1.5") == GlobalIntervention("blur", 1.5)
        and parse_intervention("hflip").kind == "hflip"
    )
    with pytest.raises(CemapError):
        parse_intervention("blur")


def test_exchanges_with_oneself_change_nothing_and_restrict_keeps_the_kept_pixels():
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    for ex in exchanges():
        assert torch.allclose(ex(images, images), images, atol=1e-5), ex.name
    donors = images.flip(0)
    assert torch.allclose(
        histogram_swap(images, donors).sort(-1).values.flatten(1).sort(1).values, donors.flatten(1).sort(1).values
    )
    moved = level_swap(images, donors)
    assert torch.allclose(moved.mean((1, 2, 3)), donors.mean((1, 2, 3)), atol=1e-2)
    keep = torch.zeros(2, 32, 32, dtype=torch.bool)
    keep[:, :8] = True
    out = restrict(images, donors, keep)
    assert torch.equal(out[:, :, :8], images[:, :, :8]) and torch.equal(out[:, :, 8:], donors[:, :, 8:])
