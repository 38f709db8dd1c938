"""The controlled latent study: its controls are really matched, its tests find what is planted, and it runs end to
end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy import ndimage

from cemap.evaluate.paired_tests import holm, per_channel_tests
from cemap.report.draw import draw
from cemap.report.latent_figures import control_panels
from cemap.studies import latent_controls as lc
from cemap.studies.context import StudyContext
from cemap.studies.figures import ControlPanels
from cemap.studies.latent_controls.claims import claims_for
from cemap.causal.masks import box_mask, gaussian_blur
from cemap.studies.latent_controls.perturbations import BLUR_SIGMAS, matched_blur, matched_gaussian
from cemap.studies.latent_controls.regions import box_regions, stroke_regions


def fake_ctx(lung: torch.Tensor):
    return SimpleNamespace(
        test=SimpleNamespace(lung_mask=lambda i: lung), generator=lambda s: torch.Generator().manual_seed(1)
    )


def test_box_controls_stay_in_the_lung_and_off_the_lesions():
    h = w = 32
    lung = torch.zeros(h, w, dtype=torch.bool)
    lung[4:28, 2:14] = True
    lung[4:28, 18:30] = True
    images = torch.rand(2, 1, h, w)
    boxes = [torch.tensor([[4.0, 6.0, 10.0, 12.0], [20.0, 10.0, 26.0, 14.0]]), torch.tensor([[19.0, 20.0, 27.0, 27.0]])]
    box_labels = [torch.tensor([0, 3]), torch.tensor([1])]
    batch = SimpleNamespace(images=images, boxes=boxes, box_labels=box_labels)
    lesion, ctrl, fill, ctrl_fill, (share, squeezed) = box_regions(
        fake_ctx(lung), batch, [0, 1], torch.tensor([0, 1]), placements=3
    )
    assert share.tolist() == [1.0, 1.0] and squeezed == 0
    assert lesion[0].sum() == 36 and lesion[1].sum() == 56
    assert not lesion[0, 10:14, 20:26].any()  # only the chosen finding's box is masked
    for i in range(2):
        anything = box_mask(h, w, boxes[i])
        for p in range(3):
            m = ctrl[i, p]
            assert m.sum() == lesion[i].sum()  # the same area ...
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1) == m.sum()  # ... as one rectangle
            assert (m & ~lung).sum() == 0 and (m & anything).sum() == 0
    assert fill.abs().sum() == 0 and ctrl_fill.shape == (2, 3, 1, h, w)


def test_background_regions_match_the_strokes():
    ctx = SimpleNamespace(generator=lambda s: torch.Generator().manual_seed(2))
    images = torch.zeros(3, 1, 28, 28)
    images[:, 0, 8:20, 12:15] = torch.linspace(0.6, 1.0, 3)  # a vertical stroke
    images[1, 0, 8:11, 8:20] = 0.9
    strokes, ctrl, fill, ctrl_fill = stroke_regions(ctx, images, placements=2)
    near = torch.nn.functional.max_pool2d(strokes[:, None].float(), 5, 1, 2)[:, 0] > 0
    for i in range(3):
        for p in range(2):
            m = ctrl[i, p]
            assert m.sum() == strokes[i].sum()
            assert not (m & near[i]).any()
            assert ndimage.label(m.numpy())[1] == 1  # contiguous
            changed = torch.where(m, ctrl_fill[i, p], images[i]) - images[i]
            erased = torch.where(strokes[i], fill[i], images[i]) - images[i]
            assert float(changed.norm()) == pytest.approx(float(erased.norm()), rel=1e-6)  # same L2 change
            assert float(changed.abs().sum()) == pytest.approx(float(erased.abs().sum()), rel=1e-6)


def test_matched_noise_and_blur():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(5, 1, 20, 20, generator=gen)
    target = torch.tensor([0.5, 1.0, 2.0, 0.2, 1.5])
    noisy = matched_gaussian(x, target, gen)
    assert (noisy - x).flatten(1).norm(dim=1).tolist() == pytest.approx(target.tolist(), rel=1e-3)
    assert noisy.min() >= 0 and noisy.max() <= 1
    blurred = matched_blur(x, target)
    got = (blurred - x).flatten(1).norm(dim=1)
    options = torch.stack([(gaussian_blur(x, s).clamp(0, 1) - x).flatten(1).norm(dim=1) for s in BLUR_SIGMAS])
    assert torch.allclose((got - target).abs(), (options - target).abs().min(0).values)


def test_per_channel_test_finds_the_planted_channel_only():
    rng = np.random.default_rng(0)
    n, k = 40, 8
    ctrl = torch.from_numpy(rng.random((n, k)))
    cond = ctrl + torch.from_numpy(rng.normal(0, 0.05, (n, k)))
    cond[:, 5] += 0.3
    res = per_channel_tests(cond, ctrl, [f"Z{j}" for j in range(k)], "control", seed=0)
    assert [r["channel"] for r in res["channels"] if r["moves_more"]] == ["Z5"]
    assert res["n_moves_less"] == 0
    assert res["channels"][5]["difference"]["low"] > 0.25


def test_holm():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_study_on_mnist(tmp_path, mnist_clf, mnist_ae):
    """End to end on a few MNIST digits (the built-in model and autoencoder come from the cache)."""
    ctx = StudyContext("mnist5k", tmp_path, seed=0, quick=True, draw=draw)
    res = lc.run_latent_controls(
        ctx, lc.LatentControlsConfig(n_images=6, pgd_steps=3, placements=2, concept_images=40, align_images=100)
    )
    js = json.loads((tmp_path / "latent_controls.json").read_text())
    assert js == json.loads(json.dumps(res.to_json()))
    assert (tmp_path / "latent_controls.png").stat().st_size > 1000 and (
        tmp_path / "latent_concepts.png"
    ).stat().st_size > 1000
    concepts = json.loads((tmp_path / "latent_concepts.json").read_text())
    assert len(concepts["rows"]) == 16 and set(concepts["images"]).isdisjoint(js["images"])
    assert js["n_images"] == 6 and js["headline"] and js["headline"][0]["table"]
    assert set(js["claims"]) == {"lesion_specific", "adversarial_specific"}
    comp = js["masking"]["comparisons"][0]["measures"]
    assert set(comp) == set(lc.MEASURES)
    for row in comp.values():
        d = row["difference"]
        assert d["low"] <= d["estimate"] <= d["high"] and d["n"] == 6
    assert len(js["masking"]["per_channel"][0]["channels"]) == 16
    if js["adversarial"]["n"] >= 2:
        assert len(js["adversarial"]["comparisons"]) == 3
        pixels = js["adversarial"]["pixels_changed"]
        assert pixels["Gaussian noise (matched L2)"]["l2"] == pytest.approx(pixels["PGD"]["l2"], rel=1e-2)
    assert js["masking"]["pixels_changed"]["condition_l2"] == pytest.approx(
        js["masking"]["pixels_changed"]["control_l2"], rel=1e-4
    )


@pytest.mark.slow
def test_study_on_synthcxr(tmp_path):
    ctx = StudyContext("synthcxr", tmp_path, seed=0, quick=True)
    res = lc.run_latent_controls(
        ctx, lc.LatentControlsConfig(n_images=12, pgd_steps=5, placements=2, concept_images=64, align_images=200)
    )
    js = res.to_json()
    assert js["masking"]["condition"].startswith("true lesion box")
    assert "Effusion" in js["concepts"]["coverage"]["best_channel"]


def test_claims_and_figure_without_comparisons(tmp_path):
    """A dataset with neither boxes nor strokes, and an attack that never succeeded: verdicts say so, the figure still
    draws."""
    masking = {"comparisons": [], "per_channel": [], "note": "not computed: no boxes"}
    adversarial = {"comparisons": [], "per_channel": [], "note": "fewer than 2 attacks succeeded: nothing to compare"}
    headline, claims = claims_for("x", masking, adversarial, False)
    assert headline == []
    assert claims["lesion_specific"]["verdict"] == "not computed: no boxes"
    assert claims["adversarial_specific"]["verdict"].startswith("not measured: fewer than 2")
    control_panels(
        ControlPanels("f.png", "x", masking, adversarial, [f"Z{j}" for j in range(4)], 0.05), tmp_path / "f.png"
    )
    assert (tmp_path / "f.png").exists()


class StubLatent:
    """A two-class head whose p(finding 1) falls with the image's pixel spread (so noise lowers it) and three channels
    whose do() scales it: enough for profiles and measures, in microseconds."""

    classifier = SimpleNamespace(head="softmax", check_images=lambda x: x)

    def intervened_probs(self, images):
        p1 = torch.exp(-8 * images.flatten(1).std(1))
        p = torch.stack([1 - p1, p1], 1)
        p_do = torch.stack([torch.stack([1 - p1 * f, p1 * f], 1) for f in (0.9, 0.7, 0.5)], 1)
        return p, p_do


def test_output_matched_controls_change_the_output_as_much_as_the_condition():
    from cemap.studies.latent_controls.matched import OUTPUT_TOLERANCE, closest_within, output_matched
    from cemap.studies.latent_controls.measures import l2, measures, profiles

    # the rule: per image the closest candidate, matched only within the tolerance
    pick, ok = closest_within(np.array([0.4, 0.1, 0.9]), np.array([[0.0, 0.3, 0.42], [0.0, 0.2, 0.5], [0.0, 0.3, 0.5]]))
    assert pick.tolist() == [2, 0, 2] and ok.tolist() == [True, False, False]
    # on profiles: the condition lowers p(finding) by varying amounts; candidates are clean images plus noise
    gen = torch.Generator().manual_seed(0)
    latent, n = StubLatent(), 12
    x = 0.5 + 0.01 * torch.randn(n, 1, 16, 16, generator=gen)
    findings, aligned = torch.ones(n, dtype=torch.long), [[0]] * n
    clean = profiles(latent, x, findings)
    size = torch.linspace(0.5, 3.0, n)
    cond_images = matched_gaussian(x, size, gen)
    condition = measures(profiles(latent, cond_images, findings), clean, aligned, l2(cond_images, x))
    assert condition["finding_drop"].max() - condition["finding_drop"].min() > 0.3  # targets spread out
    out = output_matched(latent, x, x, (findings, clean, aligned), condition, size, gen, 0, "the image")
    assert out["n_matched"] >= n // 2 and out["tolerance"] == OUTPUT_TOLERANCE
    assert out["finding_drop"]["largest_gap_of_matched"] <= OUTPUT_TOLERANCE
    assert abs(out["finding_drop"]["condition"] - out["finding_drop"]["control"]) <= OUTPUT_TOLERANCE
    comparison = out["comparisons"][0]["measures"]["finding_drop"]
    assert comparison["condition"]["n"] == out["n_matched"]
    assert abs(comparison["difference"]["estimate"]) <= OUTPUT_TOLERANCE


def test_residual_test_separates_the_output_change_from_the_shift():
    from cemap.studies.latent_controls.matched import residual_test

    rng = np.random.default_rng(0)
    n = 60
    ctrl_drop, cond_drop = rng.uniform(0, 0.3, n), rng.uniform(0.2, 0.6, n)

    def arm(drop, extra):
        shift = 2 * drop + extra + 0.02 * rng.normal(size=n)
        return {"finding_drop": drop, "finding_l1": shift, "ece_l1": shift}

    # the condition moves the profile more only because it moves the output more: the residuals do not differ
    only_output = residual_test(arm(cond_drop, 0.0), arm(ctrl_drop, 0.0), 0, "control")
    assert only_output["measures"]["finding_l1"]["slope"] == pytest.approx(2, abs=0.1)
    assert only_output["measures"]["finding_l1"]["residual_difference"]["verdict"] == "no different"
    beyond = residual_test(arm(cond_drop, 0.2), arm(ctrl_drop, 0.0), 0, "control")
    assert beyond["measures"]["finding_l1"]["residual_difference"]["verdict"] == "better"
