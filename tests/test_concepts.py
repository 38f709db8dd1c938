"""Concept channels: a channel planted to copy a label must be found, placed in the box and shown to cause the class."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

import cemap
from cemap.causal import FittedAutoencoder, LatentAutoencoder, split_classifier
from cemap.causal.autoencoder import AEConfig
from cemap.causal.concepts import one_hot_labels
from cemap.evaluate.concepts import (
    auroc_interval,
    auroc_matrix,
    concept_halves,
    concept_table,
    cross_fitted_auroc,
)


class Brightness(nn.Module):
    """act = relu(x); logit(yes) = 100 * mean(act) - 2: says "yes" when a bright square is present."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1, bias=False)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.fc.weight.copy_(torch.tensor([[0.0], [100.0]]))
            self.fc.bias.copy_(torch.tensor([0.0, -2.0]))

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def planted(clf, channel: int = 2, code: int = 4) -> FittedAutoencoder:
    """An autoencoder whose channel ``channel`` is exactly the activation and every other channel is zero."""
    ae = LatentAutoencoder(channels=1, code=code, hidden=4)
    with torch.no_grad():
        for p in ae.parameters():
            p.zero_()
        ae.enc1.weight[0, 0, 1, 1] = 1.0
        ae.enc2.weight[channel, 0, 1, 1] = 1.0
        ae.dec1.weight[0, channel, 1, 1] = 1.0
        ae.dec2.weight[0, 0, 1, 1] = 1.0
    return FittedAutoencoder(ae.eval(), split_classifier(clf, "act"), AEConfig(code=code, hidden=4))


@pytest.fixture
def square_data():
    gen = torch.Generator().manual_seed(0)
    n, size = 40, 16
    images = torch.rand(n, 1, size, size, generator=gen) * 1e-3
    labels = torch.arange(n) % 2
    boxes, box_labels = [], []
    for i in range(n):
        if labels[i]:
            y, x = torch.randint(0, size - 4, (2,), generator=gen).tolist()
            images[i, 0, y : y + 4, x : x + 4] = 1.0
            boxes.append(torch.tensor([[x, y, x + 4, y + 4]], dtype=torch.float32))
            box_labels.append(torch.tensor([1]))
        else:
            boxes.append(torch.zeros(0, 4))
            box_labels.append(torch.zeros(0, dtype=torch.long))
    return images, labels, boxes, box_labels


def test_planted_channel_is_found(square_data):
    images, labels, boxes, box_labels = square_data
    clf = cemap.Classifier(
        Brightness(),
        class_names=["no", "yes"],
        head="softmax",
        input_shape=(1, 16, 16),
        default_layer="act",
        name="bright",
    )
    table = concept_table(clf, planted(clf), images, labels, boxes, box_labels, n_boot=200)
    assert table.best_concept(2) == ("yes", 1.0)
    assert table.label(2) == "Z2 - yes, AUROC 1.00"
    assert table.rows[2].best_auroc.low == 1.0
    assert table.aligned_channels("yes") == [2]
    assert table.aligned_channels("no") == []  # "no" is predicted by the *absence* of Z2: AUROC 0
    assert table.rows[2].auroc["no"] == 0.0
    for j in (0, 1, 3):  # constant channels: chance
        assert table.rows[j].auroc["yes"] == 0.5
    assert table.rows[2].energy_in_box["yes"] > 0.95
    assert table.box_area["yes"] == pytest.approx(16 / 256)
    assert table.rows[2].class_effect["yes"] > 0.5  # zeroing the planted channel removes the evidence for "yes"
    assert abs(table.rows[0].class_effect["yes"]) < 1e-6
    assert set(table.rows[2].top_images) <= set(torch.nonzero(labels).flatten().tolist())
    cov = table.coverage()
    assert cov["n_aligned"] == 1 and cov["not_aligned"] == ["no"]
    js = table.to_json()
    assert js["labels"][2] == "Z2 - yes, AUROC 1.00" and js["rows"][2]["best_auroc"]["estimate"] == 1.0
    assert table.maps.shape == (4, 4, 16, 16)


def test_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    truth = rng.random((50, 3)) < 0.4
    scores = rng.normal(size=(50, 5)) + truth[:, :1] * 1.0
    scores[:, 4] = np.round(scores[:, 4])  # ties
    m = auroc_matrix(scores, truth)
    for j in range(5):
        for c in range(3):
            assert m[j, c] == pytest.approx(roc_auc_score(truth[:, c], scores[:, j]))
    iv = auroc_interval(scores[:, 0], truth[:, 0], n_boot=500)
    assert iv.estimate == pytest.approx(roc_auc_score(truth[:, 0], scores[:, 0]))
    assert iv.low < iv.estimate < iv.high
    assert np.isnan(auroc_matrix(scores, np.ones((50, 1)))[0, 0])


def test_one_hot_labels():
    assert one_hot_labels(torch.tensor([2, 0]), 3).tolist() == [[0, 0, 1], [1, 0, 0]]
    assert one_hot_labels(torch.tensor([[0.0, 1.0, 1.0]]), 3).tolist() == [[0, 1, 1]]


def test_concepts_on_mnist(mnist_clf, mnist_test, mnist_ae):
    """The trained MNIST autoencoder: one row per channel, AUROCs in [0, 1], labels in the chart format."""
    batch = mnist_test.batch(range(0, 600, 10))
    table = concept_table(mnist_clf, mnist_ae, batch.images, batch.labels, n_boot=100)
    assert table.k == 16 and table.n_images == 60
    for j in range(table.k):
        name, auc = table.best_concept(j)
        assert name in mnist_clf.class_names and 0.5 <= auc <= 1.0
        assert table.label(j).startswith(f"Z{j} - {name}, AUROC ")
    assert table.rows[0].energy_in_box[name] is None


def test_coverage_intervals(square_data):
    images, labels, boxes, box_labels = square_data
    clf = cemap.Classifier(
        Brightness(),
        class_names=["no", "yes"],
        head="softmax",
        input_shape=(1, 16, 16),
        default_layer="act",
        name="bright",
    )
    coverage = concept_table(clf, planted(clf), images, labels, n_boot=100).coverage()
    best = coverage["best_channel"]
    crossed = best["yes"].pop("cross_fitted")
    assert best["yes"] == {"channel": "Z2", "auroc": 1.0, "low": 1.0, "high": 1.0}
    assert best["no"]["auroc"] == 0.5  # the best a constant channel reaches
    # the planted channel is chosen on either half and is perfect on the other
    assert crossed["channels"] == ["Z2", "Z2"] and crossed["auroc"] == crossed["low"] == 1.0
    assert coverage["aligned_cross_fitted"] == ["yes"]


def test_cross_fitted_alignment_drops_for_a_channel_aligned_by_chance():
    """Channel 1 copies the label on one half of the images only (chance); channel 0 is moderately aligned everywhere.
    In sample, channel 1 wins; cross-fitted, its choice on that half is scored on the other, where it is noise."""
    rng = np.random.default_rng(1)
    n = 120
    positive = np.arange(n) % 2 == 0
    first, second = concept_halves(positive, seed=0)
    scores = rng.normal(size=(n, 4))
    scores[:, 0] += 0.7 * positive
    scores[first, 1] = 5.0 * positive[first] + 0.1 * rng.normal(size=len(first))
    in_sample = auroc_matrix(scores, positive[:, None])[:, 0]
    assert int(np.argmax(in_sample)) == 1
    crossed = cross_fitted_auroc(scores, positive, n_boot=300, seed=0)
    assert crossed["channels"] == ["Z1", "Z0"]  # chosen on the first half, then on the second
    assert crossed["auroc"] < in_sample.max() - 0.1
    assert crossed["low"] < crossed["auroc"] < crossed["high"]
    assert crossed["auroc"] == pytest.approx(np.mean(crossed["fold_aurocs"]))
    assert crossed["fold_aurocs"][0] < 0.65  # channel 1 on the images it was not chosen on: near chance
    assert len(first) + len(second) == n and not set(first) & set(second)
    assert positive[first].sum() == positive[second].sum() == n // 4
