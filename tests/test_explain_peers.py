"""RISE and Kernel SHAP over superpixels: shapes, seeding, and that they find what a simple model looks at."""

from __future__ import annotations

import torch
from torch import nn

import cemap
import cemap.explain.rise  # noqa: F401  (registers rise)
import cemap.explain.superpixels  # noqa: F401  (registers kernelshap)
from cemap.explain import get_explainer
from cemap.explain.rise import rise_masks
from cemap.explain.superpixels import superpixels


class CornerNet(nn.Module):
    """Class 0's logit is 10 x (mean of the top-left 8 x 8 quarter - 0.3); class 1 the same for the opposite corner."""

    def forward(self, x):
        a = x[:, :, :8, :8].mean((1, 2, 3))
        b = x[:, :, 8:, 8:].mean((1, 2, 3))
        return torch.stack([10 * (a - 0.3), 10 * (b - 0.3)], 1)


def _clf():
    return cemap.Classifier(
        CornerNet(), class_names=["tl", "br"], head="sigmoid", input_shape=(1, 16, 16), name="corner"
    )


def test_rise_masks_are_seeded_smooth_and_in_range():
    a = rise_masks(50, 20, 30, grid=4, generator=torch.Generator().manual_seed(1))
    b = rise_masks(50, 20, 30, grid=4, generator=torch.Generator().manual_seed(1))
    assert a.shape == (50, 20, 30) and torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1 and 0.35 < a.mean() < 0.65


def test_rise_points_at_the_evidence():
    clf = _clf()
    state = torch.random.get_rng_state()
    images = torch.full((2, 1, 16, 16), 0.5)
    maps = get_explainer("rise", clf, n_masks=400, grid=4).attribute(images, torch.tensor([0, 1]))
    assert torch.equal(state, torch.random.get_rng_state())
    assert maps.shape == (2, 16, 16)
    assert maps[0, :8, :8].mean() > maps[0, 8:, 8:].mean() and maps[1, 8:, 8:].mean() > maps[1, :8, :8].mean()


def test_superpixels_and_kernelshap_point_at_the_evidence():
    clf = _clf()
    g = torch.Generator().manual_seed(0)
    images = 0.15 + 0.1 * torch.rand(2, 1, 16, 16, generator=g)
    images[:, :, :8, :8] += 0.4  # both corners bright: each class's evidence is its own corner
    images[:, :, 8:, 8:] += 0.4
    labels = superpixels(images[0], n_segments=16)
    assert labels.shape == (16, 16) and labels.min() == 0 and 4 <= labels.max() + 1 <= 40
    state = torch.random.get_rng_state()
    explainer = get_explainer("kernelshap", clf, n_segments=16, n_samples=64)
    maps = explainer.attribute(images, torch.tensor([0, 1]))
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(maps, explainer.attribute(images, torch.tensor([0, 1])))  # seeded
    assert maps[0, :8, :8].mean() > maps[0, 8:, 8:].mean() and maps[1, 8:, 8:].mean() > maps[1, :8, :8].mean()


def test_kernelshap_gives_one_superpixel_the_whole_change(monkeypatch):
    """SLIC can return one segment (a featureless image): Captum then fails on a NaN distribution; the one player gets
    it all."""
    import cemap.explain.superpixels as sp

    monkeypatch.setattr(sp, "superpixels", lambda image, *a, **k: torch.zeros(image.shape[1:], dtype=torch.long))
    clf = _clf()
    images = torch.full((1, 1, 16, 16), 0.2)
    images[:, :, :8, :8] = 0.9
    maps = get_explainer("kernelshap", clf).attribute(images, 0)
    expected = clf.predict_proba(images)[0, 0] - clf.predict_proba(torch.full_like(images, float(images.mean())))[0, 0]
    assert torch.allclose(maps, torch.full_like(maps, float(expected))) and expected > 0
