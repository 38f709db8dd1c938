"""Issue 16's faithfulness metrics: ROAD (checked against pytorch-grad-cam's reference), random tie-breaking, the
uninformative flag."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cemap
from cemap.evaluate.faithfulness import (
    ROAD_FRACTIONS,
    deletion_insertion,
    noisy_linear_impute,
    pixel_ranks_random_ties,
    road,
    uninformative,
)


# pytorch-grad-cam's ROAD (the cross-check's reference) hands torch tensors to numpy, which warns on NumPy 2.
pytestmark = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept:DeprecationWarning")


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 100, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(0)
    net = SmallNet().eval()
    clf = cemap.Classifier(net, class_names=["a", "b", "c"], head="sigmoid", input_shape=(1, 10, 10), name="small")
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 1, 10, 10, generator=g)
    maps = torch.rand(6, 10, 10, generator=g)  # distinct values: no ties
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    return net, clf, images, maps, targets


def test_imputation_matches_the_reference_solver():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 12, 9, generator=g)
    removed = torch.rand(12, 9, generator=g) < 0.6
    theirs = NoisyLinearImputer(noise=0.0)(img, (~removed).float())  # theirs: 1 = keep
    ours = noisy_linear_impute(img, removed, noise=0.0)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert torch.equal(ours[:, ~removed], img[:, ~removed])


def test_road_equals_pytorch_grad_cam(small):
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    net, clf, images, maps, targets = small
    sig = [lambda out, t=int(t): torch.sigmoid(out)[..., t] for t in targets]
    percentiles = [round(100 * f) for f in ROAD_FRACTIONS]
    # on 100 pixels with distinct values, their percentile threshold removes exactly round(f * 100) pixels, as ours does
    morf = np.mean(
        [
            PerturbationConfidenceMetric(RemoveMostRelevantFirst(100 - p, NoisyLinearImputer(noise=0.0)))(
                images, maps.numpy(), sig, net
            )
            for p in percentiles
        ],
        0,
    )
    lerf = np.mean(
        [
            PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, NoisyLinearImputer(noise=0.0)))(
                images, maps.numpy(), sig, net
            )
            for p in percentiles[::-1]
        ],
        0,
    )
    ours = road(clf, images, maps, targets, noise=0.0)
    np.testing.assert_allclose(ours["morf"].numpy(), morf, atol=1e-5)
    np.testing.assert_allclose(ours["lerf"].numpy(), lerf, atol=1e-5)
    np.testing.assert_allclose(ours["combined"].numpy(), (lerf - morf) / 2, atol=1e-5)


def test_road_noise_is_seeded_and_leaves_global_rng_alone(small):
    _, clf, images, maps, targets = small
    state = torch.random.get_rng_state()
    a = road(clf, images, maps, targets, fractions=(0.3, 0.6), generator=torch.Generator().manual_seed(5))
    b = road(clf, images, maps, targets, fractions=(0.3, 0.6), generator=torch.Generator().manual_seed(5))
    assert torch.equal(a["combined"], b["combined"])
    assert torch.equal(state, torch.random.get_rng_state())


def test_ties_are_broken_at_random_not_in_scan_order():
    flat = torch.zeros(1, 20, 20)
    ranks = pixel_ranks_random_ties(flat, torch.Generator().manual_seed(0))
    first_quarter = ranks.reshape(-1) < 100
    rows = torch.nonzero(first_quarter.reshape(20, 20))[:, 0].float()
    assert rows.mean() > 5  # scan order would put all 100 in rows 0-4
    m = torch.tensor([[[3.0, 1.0], [2.0, float("nan")]]])
    assert pixel_ranks_random_ties(m).reshape(-1).tolist() == [0, 2, 1, 3]


def test_deletion_insertion_shapes_and_fill(small):
    _, clf, images, maps, targets = small
    d, i = deletion_insertion(clf, images, maps, targets, steps=4, fill=0.5)
    assert d.shape == i.shape == (6,)
    assert torch.isfinite(d).all() and torch.isfinite(i).all()


def test_uninformative_flag():
    assert uninformative({"ce": 0.5, "gradcam": 0.4, "ig": 0.6, "random": 0.3}, higher_is_better=False)
    assert not uninformative({"ce": 0.5, "gradcam": 0.4, "ig": 0.6, "random": 0.7}, higher_is_better=False)
    assert uninformative({"ce": 0.5, "gradcam": 0.4, "ig": 0.6, "random": 0.55, "centre": 0.9}, higher_is_better=True)
