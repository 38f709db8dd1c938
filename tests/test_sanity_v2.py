"""Issue 16's sanity check: cascading / independent randomisation with explicit generators, signed and |map| Spearman,
SSIM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemap.evaluate.sanity import (
    layer_blocks,
    randomisation_test,
    randomised_blocks,
    randomised_copy,
    sanity_verdict,
    ssim,
)
from cemap.explain import get_explainer


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 20, 24, generator=g)
    b = (a + 0.3 * torch.rand(3, 20, 24, generator=g)).clamp(0, 1)
    theirs = [
        metrics.structural_similarity(x.numpy().astype(np.float64), y.numpy().astype(np.float64), data_range=1.0)
        for x, y in zip(a, b)
    ]
    np.testing.assert_allclose(ssim(a, b).numpy(), theirs, atol=1e-5)
    assert ssim(a, a).allclose(torch.ones(3))


def test_randomisation_uses_explicit_generators_not_the_global_rng(tiny_clf):
    blocks = layer_blocks(tiny_clf)
    assert blocks[0] == "fc" and blocks[-1] == "conv1"
    state = torch.random.get_rng_state()
    a = randomised_blocks(tiny_clf, blocks[:2], torch.Generator().manual_seed(4))
    b = randomised_blocks(tiny_clf, blocks[:2], torch.Generator().manual_seed(4))
    assert torch.equal(state, torch.random.get_rng_state())
    randomised_copy(tiny_clf, seed=3)  # v1 no longer reseeds the caller's global RNG either
    assert torch.equal(state, torch.random.get_rng_state())
    for (n, p), (_, q), (_, orig) in zip(a.named_parameters(), b.named_parameters(), tiny_clf.named_parameters()):
        assert torch.equal(p, q)
        if n.startswith("model.fc") or n.startswith("model.conv2"):
            assert not torch.equal(p, orig)
        else:
            assert torch.equal(p, orig)  # cascading stops where asked


def test_cascading_records_and_verdict(tiny_clf):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, *tiny_clf.input_shape, generator=g)
    targets = torch.zeros(6, dtype=torch.long)
    recs = randomisation_test(lambda c: get_explainer("centre", c), tiny_clf, images, targets, seeds=(0, 1, 2))
    n_blocks = len(layer_blocks(tiny_clf))
    assert len(recs) == 3 * n_blocks
    full = [r for r in recs if r["step"] == n_blocks]
    verdict = sanity_verdict(full)
    assert not verdict["passes"]  # the centre prior ignores the model: correlation NaN (constant ranks) or 1
    recs = randomisation_test(
        lambda c: get_explainer("gradcam", c), tiny_clf, images, targets, seeds=(0,), mode="independent"
    )
    assert [r["step"] for r in recs] == list(range(n_blocks))
    assert {"spearman", "spearman_abs", "ssim_abs"} <= set(recs[0])
