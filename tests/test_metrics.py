"""Each metric on hand-made maps with a known answer, and the floors at chance."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

import cemap
from cemap.evaluate.faithfulness import curve_auc, deletion_auc, insertion_auc, pixel_ranks
from cemap.evaluate.localisation import (
    IOBB_THRESHOLDS,
    best_iobb,
    detected_boxes,
    energy_pointing,
    iobb_accuracy,
    pointing_game_hits,
)
from cemap.evaluate.robustness import gaussian_noise, noise_stability, spearman
from cemap.evaluate.sanity import randomisation_correlation, randomised_copy
from cemap.evaluate.shortcut import marker_share
from cemap.explain import get_explainer

H = W = 32
BOX = torch.tensor([[8.0, 4.0, 16.0, 12.0]])  # 8 x 8 pixels: 1/16 of the image
AREA_SHARE = 64 / (H * W)


def indicator(box: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(H, W)
    x0, y0, x1, y1 = [int(v) for v in box.reshape(4)]
    m[y0:y1, x0:x1] = 1
    return m


class MeanModel(nn.Module):
    """Its one logit is the mean pixel: deletion curves can be worked out by hand."""

    def forward(self, x):
        return x.mean(dim=(1, 2, 3))[:, None]


@pytest.fixture
def mean_clf():
    return cemap.Classifier(MeanModel(), class_names=["mean"], head="sigmoid", input_shape=(1, 4, 4), name="mean")


def test_pointing_game_peak_inside_and_outside():
    inside, outside = torch.zeros(H, W), torch.zeros(H, W)
    inside[6, 10] = 1.0
    outside[20, 25] = 1.0
    hits = pointing_game_hits(torch.stack([inside, outside]), [BOX, BOX])
    assert hits.tolist() == [True, False]


def test_pointing_game_tolerance_reaches_a_nearby_peak():
    m = torch.zeros(1, H, W)
    m[0, 6, 19] = 1.0  # pixel centre 3.5 px right of the box edge
    assert not pointing_game_hits(m, [BOX])[0]
    assert not pointing_game_hits(m, [BOX], tolerance=3.0)[0]
    assert pointing_game_hits(m, [BOX], tolerance=4.0)[0]


def test_energy_pointing_uniform_map_scores_the_box_area_share():
    uniform = torch.full((1, H, W), 0.3)
    assert energy_pointing(uniform, [BOX]).item() == pytest.approx(AREA_SHARE)
    assert energy_pointing(indicator(BOX)[None], [BOX]).item() == pytest.approx(1.0)


def test_energy_pointing_ignores_negative_mass():
    m = indicator(BOX) - 2 * (1 - indicator(BOX))  # negative everywhere outside the box
    assert energy_pointing(m[None], [BOX]).item() == pytest.approx(1.0)
    assert energy_pointing(-torch.ones(1, H, W), [BOX]).item() == 0.0


def test_iobb_map_equal_to_box_is_localised_at_every_threshold():
    acc = iobb_accuracy(indicator(BOX)[None], [BOX])
    assert set(acc) == set(IOBB_THRESHOLDS)
    assert all(v.tolist() == [True] for v in acc.values())


def test_iobb_of_a_box_twice_as_large_is_one_half():
    big = torch.tensor([[8.0, 4.0, 24.0, 12.0]])  # contains BOX, twice its area
    assert best_iobb(indicator(big)[None], [BOX]).item() == pytest.approx(0.5)
    acc = iobb_accuracy(indicator(big)[None], [BOX])
    assert [bool(acc[t][0]) for t in IOBB_THRESHOLDS] == [True, True, False, False, False]


def test_iobb_uniform_map_detects_the_whole_image():
    assert detected_boxes(torch.ones(H, W)).tolist() == [[0.0, 0.0, W, H]]
    assert best_iobb(torch.ones(1, H, W), [BOX]).item() == pytest.approx(AREA_SHARE)


def test_iobb_peak_region_versus_all_regions():
    m = indicator(torch.tensor([[20.0, 20.0, 30.0, 30.0]])) * 2 + indicator(torch.tensor([[10.0, 6.0, 12.0, 8.0]]))
    assert best_iobb(m[None], [BOX], regions="peak").item() == 0.0  # the strongest region is outside
    assert best_iobb(m[None], [BOX], regions="all").item() == 1.0  # ChestX-ray8's any-box rule finds the small one
    with pytest.raises(cemap.CemapError):
        detected_boxes(m, regions="largest")


def test_random_map_scores_chance():
    """Averaged over many random maps, pointing game and energy pointing equal the box's area share; peak-region IoBB
    is chance too."""
    clf = cemap.Classifier(nn.Flatten(), class_names=["x"], head="sigmoid", input_shape=(1, H, W))
    maps = get_explainer("random", clf, seed=1).attribute(torch.zeros(4000, 1, H, W))
    boxes = [BOX] * len(maps)
    hits = pointing_game_hits(maps, boxes).float().mean().item()
    assert abs(hits - AREA_SHARE) < 4 * np.sqrt(AREA_SHARE * (1 - AREA_SHARE) / len(maps))
    assert energy_pointing(maps, boxes).mean().item() == pytest.approx(AREA_SHARE, abs=0.003)
    assert iobb_accuracy(maps[:500], boxes[:500])[0.5].float().mean().item() < 3 * AREA_SHARE


def test_pixel_ranks_order_by_importance():
    m = torch.tensor([[[0.1, 0.9], [0.5, 0.3]]])
    assert pixel_ranks(m).tolist() == [[[3, 0], [1, 2]]]


def test_deletion_auc_of_the_mean_model_by_hand(mean_clf):
    ones = torch.ones(1, 1, 4, 4)
    target = torch.zeros(1, dtype=torch.long)
    # One pixel per step: the mean falls 1 - k/16 linearly, so the area is exactly 1/2.
    auc = deletion_auc(mean_clf, ones, torch.rand(1, 4, 4), target, steps=16, output="logit")
    assert auc.item() == pytest.approx(0.5)
    # A graded image deleted brightest first: curve = (sum of the pixels not yet deleted) / 16.
    img = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4) / 15
    values = np.sort(img.flatten().numpy())[::-1]
    by_hand = np.array([values[k:].sum() / 16 for k in range(17)])
    expected = np.trapezoid(by_hand, np.linspace(0, 1, 17))
    assert deletion_auc(mean_clf, img, img[:, 0], target, steps=16, output="logit").item() == pytest.approx(
        expected, rel=1e-5
    )
    # Deleting the darkest first keeps the score up longer: a worse (higher) deletion AUC.
    assert deletion_auc(mean_clf, img, -img[:, 0], target, steps=16, output="logit").item() > expected


def test_insertion_mirrors_deletion_for_the_mean_model(mean_clf):
    img = torch.rand(3, 1, 4, 4)
    maps, target = img[:, 0], torch.zeros(3, dtype=torch.long)
    dele = deletion_auc(mean_clf, img, maps, target, steps=16, output="logit")
    ins = insertion_auc(mean_clf, img, maps, target, steps=16, fill="zero", output="logit")
    # from black, inserting pixels adds exactly what deletion removed: the two curves sum to the mean pixel
    assert torch.allclose(dele + ins, img.mean(dim=(1, 2, 3)), atol=1e-5)


def test_curve_auc_and_chunking_agree(mean_clf):
    assert curve_auc(torch.tensor([[1.0, 1.0, 1.0]])).item() == pytest.approx(1.0)
    img = torch.rand(5, 1, 4, 4)
    t = torch.zeros(5, dtype=torch.long)
    a = deletion_auc(mean_clf, img, img[:, 0], t, steps=8, chunk_size=3)
    b = deletion_auc(mean_clf, img, img[:, 0], t, steps=8, chunk_size=100)
    assert torch.allclose(a, b)


def test_spearman_matches_scipy_with_ties():
    a = torch.randint(0, 4, (3, 8, 8)).float()  # many ties
    b = a + 0.5 * torch.rand(3, 8, 8)
    ours = spearman(a, b)
    ref = [spearmanr(x.flatten(), y.flatten())[0] for x, y in zip(a.numpy(), b.numpy())]
    assert np.allclose(ours.numpy(), ref, atol=1e-6)
    assert spearman(a, -a).tolist() == pytest.approx([-1.0] * 3)
    assert torch.isnan(spearman(torch.ones(1, 4, 4), a[:1, :4, :4])).all()


def test_noise_stability_of_the_floors(mnist_clf, mnist_test):
    batch = mnist_test.batch(range(8))
    centre = noise_stability(get_explainer("centre", mnist_clf), batch.images, batch.labels)
    random = noise_stability(get_explainer("random", mnist_clf), batch.images, batch.labels)
    assert torch.allclose(centre, torch.ones(8))
    assert random.abs().max() < 0.2
    noisy = gaussian_noise(batch.images, 0.02)
    assert 0 <= noisy.min() and noisy.max() <= 1 and not torch.equal(noisy, batch.images)


def test_fgsm_stability_separates_input_blind_and_input_driven_maps(mnist_clf, mnist_test):
    from cemap.evaluate.robustness import fgsm_stability

    batch = mnist_test.batch(range(4))
    centre = fgsm_stability(get_explainer("centre", mnist_clf), batch.images, batch.labels, eps=2 / 255)
    assert torch.allclose(centre, torch.ones(4))  # a map that ignores the image cannot move
    rho = fgsm_stability(get_explainer("gradcam", mnist_clf), batch.images, batch.labels, eps=2 / 255)
    assert rho.shape == (4,) and torch.isfinite(rho).all()
    assert (rho < 1 - 1e-6).any() and rho.mean() > 0.3  # it moves, but a 2/255 step keeps it recognisable


def test_sanity_check_separates_model_dependent_maps(mnist_clf, mnist_test):
    batch = mnist_test.batch(range(8))
    rand = randomised_copy(mnist_clf, seed=3)
    assert not torch.equal(rand.model.fc2.weight, mnist_clf.model.fc2.weight)
    assert not any(p.requires_grad for p in rand.parameters())
    centre = randomisation_correlation(lambda c: get_explainer("centre", c), mnist_clf, batch.images, batch.labels)
    gradcam = randomisation_correlation(lambda c: get_explainer("gradcam", c), mnist_clf, batch.images, batch.labels)
    assert torch.allclose(centre, torch.ones(8))  # a map that ignores the model fails the check completely
    assert torch.nanmean(gradcam) < 0.6


def test_marker_share():
    marker = indicator(BOX).bool()[None]
    assert marker_share(indicator(BOX)[None], marker).item() == pytest.approx(1.0)
    assert marker_share(torch.ones(1, H, W), marker).item() == pytest.approx(AREA_SHARE)
    with pytest.raises(cemap.CemapError):
        marker_share(torch.ones(1, H, W), marker[:, :4])


def test_evaluation_study_on_mnist_writes_one_row_per_method(tmp_path):
    from cemap.report.draw import draw
    from cemap.studies.context import StudyContext
    from cemap.studies.evaluation import EvalConfig, EvaluationResult, format_table, run_evaluation

    cfg = EvalConfig(n_images=6, n_robust=3, steps=4, n_figure=3, methods=("gradcam", "random", "centre"))
    result = run_evaluation(StudyContext("mnist5k", tmp_path, draw=draw), cfg)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert EvaluationResult.from_json(saved).rows == json.loads(json.dumps(result.rows))
    assert [r["method"] for r in saved["rows"]] == ["gradcam", "random", "centre"]
    assert saved["n_images"] == 6 and all(r["n_pairs"] == 6 and r["n_robust"] == 3 for r in saved["rows"])
    assert "pointing_game" not in saved["rows"][0]  # mnist has no boxes: no localisation columns
    assert (tmp_path / "overlays.png").stat().st_size > 0
    centre = saved["rows"][2]
    assert centre["noise_spearman"] == pytest.approx(1.0) and centre["randomisation_spearman"] == pytest.approx(1.0)
    assert "gradcam" in format_table(result.rows)


def test_evaluation_pairs_one_per_finding_with_boxes():
    from cemap.data.base import ImageDataset, Sample
    from cemap.studies.evaluation import evaluation_pairs

    class Boxed(ImageDataset):
        class_names = ["a", "b"]
        multilabel = True

        def __len__(self):
            return 3

        def __getitem__(self, i):
            boxes = [
                torch.zeros(0, 4),
                torch.tensor([[0.0, 0, 4, 4], [4, 4, 8, 8], [1, 1, 2, 2]]),
                torch.tensor([[2.0, 2, 6, 6]]),
            ][i]
            labels = [torch.zeros(0, dtype=torch.long), torch.tensor([0, 1, 0]), torch.tensor([1])][i]
            return Sample(image=torch.zeros(1, 8, 8), labels=torch.zeros(2), id=f"s{i}", boxes=boxes, box_labels=labels)

    pairs = evaluation_pairs(Boxed())
    assert pairs.ids == ["s1/a", "s1/b", "s2/b"] and pairs.targets.tolist() == [0, 1, 1]
    assert [len(b) for b in pairs.boxes] == [2, 1, 1]


def test_ce_tuning_is_cached_per_model_and_reused(tmp_path, monkeypatch, tiny_clf):
    """The train-split choice of CE's settings runs once per model and data; a rerun reads it back."""
    import cemap.studies.evaluation as study

    monkeypatch.setenv("CEMAP_CACHE", str(tmp_path))
    calls = []

    def fake_tune(classifier, train, n_images, seed, cfg):
        calls.append(n_images)
        return {"fill": "blur"}, [{"options": {"fill": "blur"}, "pointing_game": 1.0}]

    monkeypatch.setattr(study, "tune_ce", fake_tune)
    # the train split is never read: tune_ce is replaced
    ctx = SimpleNamespace(classifier=tiny_clf, dataset="synthcxr", dataset_options={}, train=None)
    first = study.cached_tune_ce(ctx, study.EvalConfig())
    second = study.cached_tune_ce(ctx, study.EvalConfig())
    other_seed = study.cached_tune_ce(ctx, study.EvalConfig(seed=1))
    assert calls == [study.EvalConfig().tune_images] * 2
    assert first["chosen"] == second["chosen"] == other_seed["chosen"] == {"fill": "blur"}
    assert "from_cache" not in first and second["from_cache"].endswith(".json")


def test_evaluate_cli_rejects_an_unknown_method(tmp_path, capsys):
    from cemap.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--dataset", "mnist5k", "--methods", "gradcam,lime", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "lime" in capsys.readouterr().err


def test_marker_share_column_counts_only_tagged_images(tiny_clf):
    from cemap.studies.evaluation import EvalConfig, Pairs, _marker_masks, evaluate_method

    class Tagged:
        shortcut_box = torch.tensor([0.0, 0.0, 4.0, 4.0])
        has_shortcut = torch.tensor([True, False])

    pairs = Pairs(
        torch.rand(2, 3, 16, 16), torch.tensor([0, 1]), [torch.zeros(0, 4)] * 2, ["a", "b"], torch.tensor([0, 1])
    )
    masks = _marker_masks(Tagged(), pairs)
    assert masks[0].sum() == 16 and masks[1].sum() == 0
    row, maps = evaluate_method("centre", tiny_clf, pairs, EvalConfig(n_robust=2, steps=2), masks)
    assert row["n_marker_pairs"] == 1
    assert row["marker_share"] == pytest.approx((maps[0, :4, :4].sum() / maps[0].sum()).item())
