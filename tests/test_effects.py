"""CE and ECE against hand computations, and the documented sign convention."""

import numpy as np
import torch

from cemap.causal.effects import class_effect, expected_effect, resolve_targets


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_class_and_expected_effect_match_hand_computation_softmax():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])
    logits_do = np.array([[0.5, 0.5, -1.0], [0.1, 1.2, 0.3]])
    p, q = _softmax(logits), _softmax(logits_do)
    target = np.array([0, 1])
    hand_ce = p[np.arange(2), target] - q[np.arange(2), target]
    hand_ece = np.array([sum(p[i, y] * (p[i, y] - q[i, y]) for y in range(3)) for i in range(2)])
    pt, qt = torch.tensor(p), torch.tensor(q)
    assert torch.allclose(class_effect(pt, qt, torch.tensor(target)), torch.tensor(hand_ce))
    assert torch.allclose(expected_effect(pt, qt, "softmax"), torch.tensor(hand_ece))
    # sign convention: removing evidence for the predicted class gives a positive effect
    assert hand_ce[0] > 0 and expected_effect(pt, qt, "softmax")[0] > 0


def test_expected_effect_sigmoid_sums_bernoulli_outcomes():
    p = np.array([[0.9, 0.2]])
    q = np.array([[0.6, 0.3]])
    hand = sum(p[0, c] * (p[0, c] - q[0, c]) + (1 - p[0, c]) * ((1 - p[0, c]) - (1 - q[0, c])) for c in range(2))
    assert torch.allclose(expected_effect(torch.tensor(p), torch.tensor(q), "sigmoid"), torch.tensor([hand]))


def test_effects_broadcast_over_many_interventions():
    p = torch.softmax(torch.randn(2, 5), -1)
    q = torch.softmax(torch.randn(2, 7, 5), -1)
    t = torch.tensor([1, 3])
    ce = class_effect(p, q, t)
    assert ce.shape == (2, 7)
    assert torch.allclose(ce[1, 4], p[1, 3] - q[1, 4, 3])
    ece = expected_effect(p, q, "softmax")
    assert torch.allclose(ece[0, 2], (p[0] * (p[0] - q[0, 2])).sum())


def test_resolve_targets_defaults_to_prediction_and_checks_range():
    import pytest

    from cemap.errors import CemapError

    p = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert resolve_targets(p, None).tolist() == [1, 0]
    assert resolve_targets(p, 1).tolist() == [1, 1]
    with pytest.raises(CemapError, match="out of range"):
        resolve_targets(p, 5)
