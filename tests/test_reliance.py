"""Reliance verification and the benchmark's measures: they catch a model trained to cheat and clear one that was
not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemap.data import get_dataset
from cemap.evaluate.reliance import choose_threshold, map_similarity, rate, verify_reliance
from cemap.models import Classifier
from torch import nn


def _tiny_mnist_model(mode: str) -> Classifier:
    """A tiny CNN trained for seconds on 1,500 mnist5k digits with a tag planted on every 3 and nowhere else
    (``mode="spurious"``: it learns to cheat) or on half the digits whatever their class (``"normal"``)."""
    train = get_dataset(
        "mnist5k-planted", split="train", artifact="tag", mode=mode, given_target=1.0, given_other=0.0, artifact_seed=5
    )
    x, y = train.planted[:1500], train.labels[:1500]
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 10),
    )
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(3):
        for i in torch.randperm(len(x)).split(50):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i]), y[i]).backward()
            opt.step()
    return Classifier(
        net.eval(),
        class_names=[str(d) for d in range(10)],
        head="softmax",
        input_shape=(1, 28, 28),
        name=f"tiny-{mode}",
    )


def _verify(clf, data):
    idx = np.arange(400)
    with torch.inference_mode():
        pw, po = clf.predict_proba(data.images(idx, True)), clf.predict_proba(data.images(idx, False))
    t = data.target
    return verify_reliance(
        pw[:, t].numpy(),
        po[:, t].numpy(),
        data.target_mask().numpy()[idx],
        decide_with=(pw.argmax(1) == t).numpy(),
        decide_without=(po.argmax(1) == t).numpy(),
        n_boot=500,
    )


def test_verification_catches_a_model_trained_to_cheat_and_clears_one_that_was_not():
    test = get_dataset("mnist5k-planted", split="test", artifact="tag", mode="normal", artifact_seed=9)
    cheat, honest = _verify(_tiny_mnist_model("spurious"), test), _verify(_tiny_mnist_model("normal"), test)
    assert cheat.verdict == "relies", cheat
    assert cheat.decision_change.low > 0.15 and cheat.auroc_drop.low > 0
    assert honest.verdict == "does not rely", honest
    assert honest.decision_change.high < 0.1


def test_verify_reliance_on_known_scores():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.3
    base = np.where(y, 0.8, 0.2) + rng.normal(0, 0.05, 300)
    v = verify_reliance(base + 0.5, base - 0.5, y, n_boot=300)  # the artifact alone decides
    assert v.verdict == "relies" and v.decision_change.estimate > 0.5 and v.auroc_flipped < v.auroc_aligned
    w = verify_reliance(base, base, y, n_boot=300)
    assert w.verdict == "does not rely" and w.decision_change.estimate == 0 and w.auroc_drop.estimate == 0


def test_rate_intervals_are_exact_binomial():
    r = rate([True, True, True])
    assert (
        r.estimate == 1 and r.high == 1 and r.low == pytest.approx(0.2924, abs=1e-3)
    )  # Clopper-Pearson 95% for 3 of 3
    r = rate([False] * 10)
    assert r.estimate == 0 and r.low == 0 and r.high == pytest.approx(0.3085, abs=1e-3)
    assert np.isnan(rate([]).estimate)


def test_thresholds_respect_the_false_alarm_budget():
    pos, neg = [0.5, 0.6, 0.7, 0.2], [0.1, 0.15, 0.3, 0.05, 0.12, 0.11, 0.13, 0.14, 0.16, 0.17]
    t = choose_threshold(
        pos, neg, max_false_alarm=0.1
    )  # one false alarm (0.3) is within the budget: every spurious score passes
    assert np.mean(np.array(neg) > t) <= 0.1 and np.mean(np.array(pos) > t) == 1.0
    strict = choose_threshold(pos, neg, max_false_alarm=0.0)
    assert strict >= 0.3 and np.mean(np.array(pos) > strict) == 0.75


def test_map_similarity_is_one_for_the_same_map_and_lower_for_another():
    a = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert np.allclose(map_similarity(a, a), 1)
    assert (map_similarity(a, a.flip(1)) < 0.9).all()
