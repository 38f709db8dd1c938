"""The detection study's corrections (issue 29): the effect-scale tie-break, CE against the best detector in any form,
converging C&W with its record, intervals that resample images with both their scores."""

from __future__ import annotations

import numpy as np
import torch
import pytest

from cemap.evaluate.bootstrap import bootstrap_auroc, bootstrap_tpr_at_fpr
from cemap.studies.detection import DetectionConfig, headline
from cemap.studies.detection.attacks import convergence, study_attacks
from cemap.studies.detection.config import CW_MIN_SEARCH_STEPS, CW_MIN_STEPS, SCALE_TIE
from cemap.studies.detection.protocol import best_other, choose_variant, detection_cell


def test_a_tie_between_effect_scales_goes_to_log_odds():
    # both scales at 1.0 (saturated outputs): not the first tried, the scale fixed in advance, and the record says so
    assert choose_variant({"ce": 1.0, "ce_log_odds": 1.0}) == ("ce_log_odds", True)
    assert choose_variant({"ce": 0.95, "ce_log_odds": 0.95 - SCALE_TIE / 2}) == ("ce_log_odds", True)
    # a difference beyond the tolerance is no tie: the better scale wins, whichever it is
    assert choose_variant({"ce": 0.95, "ce_log_odds": 0.95 - 2 * SCALE_TIE}) == ("ce", False)
    assert choose_variant({"ce": 0.80, "ce_log_odds": 0.90}) == ("ce_log_odds", False)
    assert choose_variant({"ce": float("nan"), "ce_log_odds": 0.7}) == ("ce_log_odds", False)
    assert choose_variant({"msp": 0.7}) == ("msp", False)


def _cell(estimate: float) -> dict:
    return {
        "auroc": {"estimate": estimate, "low": estimate - 0.05, "high": estimate + 0.05, "n": 40, "level": 0.95},
        "tpr_at_5fpr": {"estimate": 0.5, "low": 0.3, "high": 0.7, "n": 40, "level": 0.95},
    }


def test_ce_is_compared_with_the_best_detector_in_any_form():
    row = {
        "attack": "cw",
        "label": "C&W",
        "kind": "converged C&W",
        "fit_on": "mix",
        "seen": False,
        "n_adversarial": 40,
        "supervised": {"ce": _cell(0.74), "feature_squeezing": _cell(0.70), "msp": _cell(0.72), "lid": None},
        "unsupervised": {"feature_squeezing": {**_cell(0.875), "reversed": False}, "msp": {**_cell(0.6)}},
    }
    assert best_other(row) == ("feature_squeezing", "unsupervised")
    row["ce_minus_best_baseline"] = {
        "baseline": "feature_squeezing",
        "form": "unsupervised",
        "estimate": -0.135,
        "low": -0.2,
        "high": -0.07,
        "verdict": "worse",
    }
    (claim,) = headline("toy", {"mix": [row], "pgd_high": []}, {})
    text = claim["claim"]
    assert "unsupervised feature_squeezing: AUROC 0.875 [0.825, 0.925]" in text and text.endswith(
        "CE is worse than it."
    )
    # among supervised detectors only, CE would have looked best: the unsupervised form is what it loses to
    assert best_other({**row, "unsupervised": {}}) == ("msp", "supervised")
    assert best_other({"supervised": {"ce": _cell(0.9)}, "unsupervised": {"msp": None}}) is None


def test_detection_intervals_resample_an_images_two_scores_together():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=60) * 3  # images differ a lot; an attack moves each one's score a little
    adv = clean + 0.5 + 0.1 * rng.normal(size=60)
    cell = detection_cell(clean, adv, n_boot=400, seed=0)
    paired = bootstrap_auroc(clean, adv, 400, 0, paired=True)
    apart = bootstrap_auroc(clean, adv, 400, 0, paired=False)
    assert cell["auroc"] == paired.to_json() and cell["auroc"] != apart.to_json()
    assert cell["tpr_at_5fpr"] == bootstrap_tpr_at_fpr(clean, adv, 0.05, 400, 0, paired=True).to_json()
    # drawing image i brings both its scores: an image's adversarial always outscores its own clean score, so in
    # every paired resample at least the drawn pairs are won; independent draws break the pairs and vary more
    assert paired.high - paired.low < apart.high - apart.low
    with pytest.raises(ValueError, match="one clean and one adversarial score per image"):
        detection_cell(clean, adv[:-1], n_boot=10, seed=0)


def test_study_cw_converges_and_keeps_its_record(mnist_clf, mnist_test):
    from cemap.data.base import stack_images

    for cfg in (DetectionConfig.sized("demo"), DetectionConfig.sized("full")):
        cw = study_attacks(mnist_clf, mnist_test.attack_budgets, cfg)["cw"].attack
        # the study's step counts win over the dataset's C&W settings (which give only c and the Adam step)
        assert cw.steps >= CW_MIN_STEPS and cw.search_steps >= CW_MIN_SEARCH_STEPS and cw.c == 10.0
    # the record, on a short run (convergence itself is tests/test_attacks.py's): two chunks, both recorded
    cw.steps, cw.batch_size = 5, 2
    cw(stack_images(mnist_test)[:4])
    record = convergence(cw)
    assert len(record) == 2 * cw.search_steps and {r["chunk"] for r in record} == {0, 1}
    assert all(r["steps"] <= cw.steps for r in record)
    record[0]["steps"] = -1  # a copy: the study's JSON does not change with the attack's next call
    assert cw.convergence[0]["steps"] != -1
    assert convergence(study_attacks(mnist_clf, mnist_test.attack_budgets, cfg)["pgd_high"].attack) is None


def test_a_training_seed_trains_another_model_and_refuses_a_model_cemap_does_not_train(tmp_path, monkeypatch):
    """Studies repeat over trainings: ``train_seed`` reaches the built-in model's training config; a model cemap only
    loads (no training config) is one clear error, not a silent seed-0 model."""
    from cemap.errors import CemapError
    from cemap.models import registry
    from cemap.studies.context import StudyContext

    seen = []

    def fake_mnist_cnn(weights=None, train_config=None):
        seen.append(train_config)
        return torch.nn.Identity()

    monkeypatch.setitem(registry._MODELS, "mnist-cnn", fake_mnist_cnn)
    StudyContext("mnist5k", tmp_path).classifier
    StudyContext("mnist5k", tmp_path, train_seed=2).classifier
    assert seen == [None, {"seed": 2}]  # seed 0 is the built-in model itself: the same cache key as ever
    with pytest.raises(CemapError, match="no training seed"):
        StudyContext("mnist5k", tmp_path, model="resnet18", train_seed=1).classifier
