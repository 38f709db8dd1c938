"""CE map options of issue 16: multi-scale / offset averaging and log-odds effects; defaults unchanged."""

from __future__ import annotations

import pytest
import torch

import cemap
from cemap.causal import CEMap, log_odds
from cemap.explain import get_explainer


def test_log_odds_from_logits():
    z = torch.tensor([[2.0, -1.0, 0.5]])
    assert torch.equal(log_odds(z, "sigmoid"), z)
    p = torch.softmax(z.double(), -1)
    torch.testing.assert_close(log_odds(z, "softmax").double(), torch.log(p / (1 - p)), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_log_odds_effect_is_the_logit_drop(head):
    from conftest import TinyNet

    torch.manual_seed(0)
    clf = cemap.Classifier(
        TinyNet(), class_names=list("abcd"), head=head, input_shape=(3, 16, 16), default_layer="conv2", name="tiny"
    )
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, *clf.input_shape, generator=g)
    cm = CEMap(clf, cell=8, effect_scale="log_odds", incremental=False)
    effects, targets = cm.effects_for_masks(images, cm.masks, target=1)
    with torch.no_grad():
        base = clf(images)
        masked = torch.stack([clf(torch.where(m, torch.zeros_like(images), images)) for m in cm.masks], 1)
    if head == "sigmoid":  # a finding's log-odds are its logit
        want = base[:, None, 1] - masked[..., 1]
    else:
        want = (
            log_odds(base, "softmax")[:, None, 1]
            - log_odds(masked.reshape(-1, masked.shape[-1]), "softmax").reshape(masked.shape)[..., 1]
        )
    torch.testing.assert_close(effects, want, atol=1e-4, rtol=1e-4)
    assert clf.probabilities.__func__ is type(clf).probabilities  # the user's classifier is untouched


def test_multiscale_averages_grids_and_breaks_plateaus(tiny_clf):
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, *tiny_clf.input_shape, generator=g)
    size = tiny_clf.input_shape[-1]
    single = CEMap(tiny_clf, cell=size // 4).attribute(images, 0)
    multi = CEMap(tiny_clf, cells=(size // 4, size // 3)).attribute(images, 0)
    parts = [CEMap(tiny_clf, cell=c, stride=c // 2).attribute(images, 0) for c in (size // 4, size // 3)]
    torch.testing.assert_close(multi, (parts[0] + parts[1]) / 2, atol=1e-5, rtol=1e-5)
    ties = lambda m: int((m.flatten(1) == m.flatten(1).max(1, keepdim=True).values).sum(1).max())  # noqa: E731
    assert ties(multi) < ties(single)
    maps = get_explainer("ce-ms", tiny_clf, cells=(size // 4,)).attribute(images, 0)
    assert maps.shape == (2, size, size)
