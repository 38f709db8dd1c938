"""Issue 26's sanity v2: the two-sided test, Arun et al.'s different-image baseline, the random-logit test, and
Efficient /
Smooth MPRT against Quantus's own implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import cemap
from cemap.evaluate.mprt import efficient_mprt, quantus_randomised, smooth_mprt
from cemap.evaluate.sanity import different_image_baseline, inside_band, random_logit_similarity, sanity_verdict
from cemap.explain import get_explainer
from cemap.explain import Explainer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::RuntimeWarning")


def _records(values_per_seed):
    return [
        {
            "seed": s,
            "spearman": torch.tensor(v),
            "spearman_abs": torch.tensor(np.abs(v) * 0.1),
            "ssim_abs": torch.tensor(v),
        }
        for s, v in enumerate(values_per_seed)
    ]


def test_signed_test_is_two_sided():
    rng = np.random.default_rng(0)
    near_zero = [0.05 * rng.standard_normal(30) for _ in range(3)]
    assert sanity_verdict(_records(near_zero))["passes"]
    anti = near_zero[:2] + [
        -0.7 + 0.05 * rng.standard_normal(30)
    ]  # one seed anti-correlated, as Grad-CAM's -0.77 in v2
    verdict = sanity_verdict(_records(anti))
    assert (
        not verdict["passes"] and verdict["per_seed"][2]["spearman"]["high"] < -0.3
    )  # v2's one-sided rule passed this
    assert "two-sided" in verdict["criterion"]
    assert (
        inside_band({"low": -0.29, "high": 0.29})
        and not inside_band({"low": -0.31, "high": 0.0})
        and not inside_band({"low": 0.0, "high": 0.3})
    )
    assert not inside_band({"low": float("nan"), "high": 0.1})


def test_sanity_verdict_resamples_images_when_given_clusters():
    v = np.repeat(np.array([0.25, 0.28, 0.2, 0.26, 0.29, 0.1, 0.27, 0.25, 0.22, 0.27]), 3)
    records = [{"seed": 0, "spearman": torch.tensor(v), "spearman_abs": torch.tensor(v), "ssim_abs": torch.tensor(v)}]
    by_pair = sanity_verdict(records)["per_seed"][0]["spearman"]
    by_image = sanity_verdict(records, clusters=np.repeat(np.arange(10), 3))["per_seed"][0]["spearman"]
    assert (
        by_image["n"] == 10
        and by_pair["n"] == 30
        and by_image["high"] - by_image["low"] > by_pair["high"] - by_pair["low"]
    )


def test_different_image_baseline_pairs_maps_of_other_images():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(16, 16, generator=g)
    maps = torch.stack([base + 0.01 * torch.rand(16, 16, generator=g) for _ in range(6)])  # anatomy shared by every map
    index = torch.tensor([0, 0, 1, 1, 2, 2])
    sims = different_image_baseline(maps, index)
    assert (
        sims["spearman"].min() > 0.9
    )  # unrelated images' maps agree through what they share: the bar a randomised map must clear
    unrelated = different_image_baseline(torch.rand(6, 16, 16, generator=g), index)
    assert unrelated["spearman"].abs().max() < 0.4
    assert torch.isnan(different_image_baseline(maps[:2], index[:2])["spearman"]).all()  # one image: no partner


def test_random_logit_flags_class_blind_maps(tiny_clf):
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0, 1, 2, 0])
    blind = random_logit_similarity(
        lambda c: get_explainer("edge", c), tiny_clf, x, t, get_explainer("edge", tiny_clf).attribute(x, t)
    )
    assert torch.allclose(blind["spearman"], torch.ones(4))
    ig = get_explainer("integrated-gradients", tiny_clf, n_steps=8)
    sensitive = random_logit_similarity(
        lambda c: get_explainer("integrated-gradients", c, n_steps=8), tiny_clf, x, t, ig.attribute(x, t)
    )
    assert sensitive["spearman"].mean() < 0.9


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 64, 3)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))


class Gradient(Explainer):
    """d logit_target / d input: what ``quantus.explain(method='Gradient')`` computes (Captum's Saliency, abs=False)."""

    def _explain(self, images, targets):
        x = images.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            self.classifier(x).gather(1, targets.view(-1, 1)).sum().backward()
        return x.grad.sum(1)


@pytest.fixture(scope="module")
def small():
    torch.manual_seed(3)
    clf = cemap.Classifier(Net(), class_names=list("abc"), head="softmax", input_shape=(1, 8, 8), name="net")
    g = torch.Generator().manual_seed(4)
    x = 0.3 + 0.4 * torch.rand(10, 1, 8, 8, generator=g)  # away from 0 and 1: clipping never acts
    y = torch.randint(0, 3, (10,), generator=g)
    return clf, x, y


def test_full_randomisation_is_quantus_and_leaves_the_global_rng_alone(small):
    from quantus.helpers.model.pytorch_model import PyTorchModel

    clf, _, _ = small
    state = torch.random.get_rng_state()
    ours = quantus_randomised(clf, 42)
    assert torch.equal(state, torch.random.get_rng_state())
    *_, (_, theirs) = PyTorchModel(clf, channel_first=True, softmax=False, device="cpu").get_random_layer_generator(
        order="bottom_up", seed=42
    )
    for (n, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(p, q), n
    assert not torch.equal(ours.model.fc.weight, clf.model.fc.weight)


def test_efficient_mprt_equals_quantus(small):
    import quantus

    clf, x, y = small
    theirs = quantus.EfficientMPRT(disable_warnings=True)(
        model=clf,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        a_batch=None,
        explain_func=quantus.explain,
        explain_func_kwargs={"method": "Gradient"},
        device="cpu",
    )
    ours = efficient_mprt(lambda c: Gradient(c), clf, x, y)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)


class SkipBlock:
    """NumPy's global RandomState as Quantus draws from it: Smooth MPRT draws a third block of noise (for its layer-0
    record) between the trained model's maps and the randomised model's; skip it to compare like with like."""

    def __init__(self, seed: int, per_block: int) -> None:
        self.rs, self.per_block, self.calls = np.random.RandomState(seed), per_block, 0

    def standard_normal(self, shape):
        if self.calls == self.per_block:
            for _ in range(self.per_block):
                self.rs.standard_normal(shape)
        self.calls += 1
        return self.rs.standard_normal(shape)


def test_smooth_mprt_equals_quantus(small):
    import quantus

    clf, x, y = small
    nr = 4
    np.random.seed(7)
    metric = quantus.SmoothMPRT(
        nr_samples=nr, noise_magnitude=0.05, skip_layers=True, return_last_correlation=True, disable_warnings=True
    )
    theirs = metric(
        model=clf,
        x_batch=x.numpy(),
        y_batch=y.numpy(),
        a_batch=None,
        explain_func=quantus.explain,
        explain_func_kwargs={"method": "Gradient"},
        device="cpu",
    )
    ours = smooth_mprt(lambda c: Gradient(c), clf, x, y, nr_samples=nr, noise_magnitude=0.05, rng=SkipBlock(7, nr - 1))
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    noisy = smooth_mprt(
        lambda c: Gradient(c), clf, x, y, nr_samples=nr, noise_magnitude=0.05, rng=np.random.RandomState(7)
    )
    assert not np.allclose(noisy, theirs, atol=1e-3)  # the comparison can tell other noise apart
