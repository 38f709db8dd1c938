"""CE signature, CEDetector (fit / score / save / load), detection metrics, baselines, adaptive PGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import cemap
from cemap.causal import AEConfig, CEMap, fit_autoencoder
from cemap.detect import AdaptivePGD, CEDetector, CESignature, SignatureConfig, map_statistics, select_detector
from cemap.evaluate.detection import auroc, detection_metrics, tpr_at_fpr
from cemap.detect.baselines import feature_squeezing_score, lid, max_softmax_score, median_smooth, reduce_bit_depth


@pytest.fixture
def tiny_signature(tiny_clf):
    images = torch.rand(32, 3, 16, 16)
    fitted = fit_autoencoder(
        tiny_clf, images, config=AEConfig(code=4, hidden=8, steps=4, batch_size=16), use_cache=False
    )
    return CESignature(tiny_clf, fitted, SignatureConfig(cell=4))


def _blobs(n=80, d=6, shift=1.5, seed=0):
    rng = np.random.default_rng(seed)
    clean, adv = rng.normal(size=(n, d)), rng.normal(size=(n, d)) + shift
    return np.r_[clean, adv], np.r_[np.zeros(n), np.ones(n)]


def test_map_statistics_by_hand():
    m = torch.zeros(1, 10, 10)
    m[0, 0, :] = 1.0  # all positive mass in 10 of 100 pixels
    m[0, 5, 5] = -2.0
    s = dict(
        zip(
            ("peak", "trough", "mean", "positive_mass", "negative_mass", "concentration", "entropy"),
            map_statistics(m, ("peak", "trough", "mean", "positive_mass", "negative_mass", "concentration", "entropy"))[
                0
            ].tolist(),
        )
    )
    assert s["peak"] == 1 and s["trough"] == -2 and s["mean"] == pytest.approx(0.08)
    assert s["positive_mass"] == pytest.approx(0.1) and s["negative_mass"] == pytest.approx(0.02)
    assert s["concentration"] == pytest.approx(1.0)
    assert s["entropy"] == pytest.approx(np.log(10) / np.log(100))
    with pytest.raises(cemap.CemapError):
        SignatureConfig(map_stats=("peak", "kurtosis"))


def test_signature_batched_differentiable_and_consistent(tiny_clf, tiny_signature):
    x = torch.rand(5, 3, 16, 16)
    sig = tiny_signature.transform_torch(x)
    assert sig.shape == (5, tiny_signature.dim) == (5, 4 + len(SignatureConfig().map_stats))
    assert np.array_equal(tiny_signature.transform(x), sig.double().numpy())
    xg = x.clone().requires_grad_(True)
    diff = tiny_signature.transform_torch(xg, differentiable=True)
    assert torch.allclose(diff, sig, atol=1e-5)
    diff.sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    differentiable_map = CEMap(tiny_clf, cell=4).attribute(x.clone().requires_grad_(True), differentiable=True)
    assert differentiable_map.requires_grad
    assert torch.allclose(differentiable_map.detach(), CEMap(tiny_clf, cell=4).attribute(x), atol=1e-6)
    with pytest.raises(cemap.CemapError, match="image shape"):
        tiny_signature.transform(torch.rand(2, 1, 16, 16))


def test_detector_separates_saves_and_loads_identically(tmp_path):
    x, y = _blobs()
    x = np.exp(x) * 1e-3  # positive effects spanning orders of magnitude
    det = CEDetector(
        C=1.0,
        log_scale=1e-3,
        log_features=[True] * 5 + [False],
        feature_names=[f"f{j}" for j in range(6)],
        signature_config={"cell": 4},
    ).fit(x, y)
    scores = det.decision_function(x)
    assert auroc(y, scores) > 0.9
    assert np.mean(det.predict(x[y == 0])) <= 0.1  # threshold at 5% FPR of the clean fitting signatures
    assert np.allclose(det.score_torch(torch.from_numpy(x)).numpy(), scores)
    path = det.save(tmp_path / "det.npz")
    with np.load(path, allow_pickle=False) as data:  # plain arrays only: loading runs no code
        assert set(data.files) == {"mean", "scale", "coef", "meta"}
    loaded = CEDetector.load(path)
    assert np.array_equal(loaded.decision_function(x), scores) and np.array_equal(loaded.predict(x), det.predict(x))
    assert loaded.feature_names == det.feature_names and loaded.signature_config == {"cell": 4}
    assert loaded.log_scale == 1e-3 and loaded.log_features == det.log_features


def test_detector_errors_are_clear(tmp_path):
    x, y = _blobs()
    with pytest.raises(cemap.CemapError, match="not fitted"):
        CEDetector().decision_function(x)
    det = CEDetector().fit(x, y)
    with pytest.raises(cemap.CemapError, match="do not fit"):
        det.decision_function(x[:, :5])
    with pytest.raises(cemap.CemapError, match="do not fit"):
        det.score_torch(torch.zeros(3, 7))
    with pytest.raises(cemap.CemapError):
        det.fit(x, np.zeros(len(x)))
    bad = tmp_path / "bad.npz"
    np.savez(bad, junk=np.array([object()], dtype=object))
    with pytest.raises(cemap.CemapError):
        CEDetector.load(bad)
    with pytest.raises(cemap.CemapError):
        CEDetector.load(tmp_path / "missing.npz")


def test_select_detector_keeps_images_together():
    x, y = _blobs(n=40)
    groups = np.r_[np.arange(40), np.arange(40)]
    det, scores = select_detector(x, y, groups, Cs=(0.1, 1.0), log_scales=(None, 1e-2))
    assert len(scores) == 4 and max(scores, key=scores.get) == f"C={det.C:g} log_scale={det.log_scale}"


def test_detection_metrics():
    y = np.r_[np.zeros(100), np.ones(100)]
    s = np.r_[np.arange(100), np.arange(100) + 50.0]
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert tpr_at_fpr(y, s, 0.05) == pytest.approx(
        0.55
    )  # score >= 95 flags 5 clean (95..99) and 55 adversarial (95..149)
    m = detection_metrics(np.arange(10.0), np.arange(10.0) + 100)
    assert m["auroc"] == 1.0 and m["tpr_at_5fpr"] == 1.0 and m["n_clean"] == 10
    with pytest.raises(cemap.CemapError):
        auroc(np.zeros(5), np.arange(5))


def test_baselines(tiny_clf):
    scipy_ndimage = pytest.importorskip("scipy.ndimage")
    x = torch.rand(3, 3, 9, 9)
    for size in (2, 3):
        ref = np.stack([[scipy_ndimage.median_filter(c.numpy(), size=size) for c in img] for img in x])
        assert np.array_equal(median_smooth(x, size).numpy(), ref)
    assert set(reduce_bit_depth(x, 1).unique().tolist()) <= {0.0, 1.0}
    flat = torch.zeros(2, 3, 16, 16)
    assert torch.all(feature_squeezing_score(tiny_clf, flat) == 0)
    msp = max_softmax_score(tiny_clf, torch.rand(4, 3, 16, 16))
    assert ((msp >= 0) & (msp <= 0.75)).all()
    gen = torch.Generator().manual_seed(0)
    plane = torch.randn(500, 2, generator=gen) @ torch.randn(2, 10, generator=gen)
    space = torch.randn(500, 10, generator=gen)
    lid_plane, lid_space = lid(plane[100:], plane[:100]), lid(space[100:], space[:100])
    assert 1.0 < lid_plane.median() < 3.5 < lid_space.median()


def test_adaptive_pgd_uses_the_detector(tiny_clf, tiny_signature):
    x = torch.rand(4, 3, 16, 16)
    sig = tiny_signature.transform(x)
    det = CEDetector().fit(
        np.r_[sig, sig + np.random.default_rng(0).normal(size=sig.shape)], np.r_[np.zeros(4), np.ones(4)]
    )
    labels = tiny_clf(x).argmax(1)
    features = tiny_signature.transform_torch
    plain = AdaptivePGD(tiny_clf, features, det, weight=0.0, eps=0.05, steps=2, random_start=False)
    adaptive = AdaptivePGD(tiny_clf, features, det, weight=100.0, eps=0.05, steps=2, random_start=False)
    assert not torch.equal(plain.gradient(x, labels, None, None)[0], adaptive.gradient(x, labels, None, None)[0])
    res = adaptive(x)
    assert res.linf.max() <= 0.05 + 1e-6 and res.adversarial.min() >= 0 and res.adversarial.max() <= 1


@pytest.mark.slow
def test_detect_command_quick(tmp_path):
    import json

    from cemap.cli import main

    try:
        main(["detect", "--dataset", "mnist5k", "--out", str(tmp_path), "--quick", "--quiet"])  # returns on success
    except SystemExit as exc:
        pytest.fail(f"cemap detect exited with {exc.code}")
    report = json.loads((tmp_path / "detection.json").read_text())
    assert report["protocol"]["only_successful_adversarials"] is True
    assert {"fgsm_high", "pgd_high", "pgd_minimal", "pgd_matched", "cw"} <= set(report["attacks"])
    assert report["headline"] and all(c["claim"] and c["table"] for c in report["headline"])
    unseen = [r for r in report["transfer"]["mix"] if not r["seen"]]
    assert {r["attack"] for r in unseen} >= {"pgd_minimal", "pgd_matched", "cw"}
    for r in unseen:
        for m, cell in r["supervised"].items():
            if cell is not None:
                assert cell["auroc"]["low"] <= cell["auroc"]["estimate"] <= cell["auroc"]["high"], m
    assert set(report["adaptive"]) == {"ce", "msp", "feature_squeezing", "lid", "mahalanobis", "logit_stats"}
    for a in report["adaptive"].values():
        assert a["gradient_check"]["nonzero_share"] > 0 and 0 <= a["worst_case_per_image"]["evasion_rate"] <= 1
    assert (tmp_path / "roc_curves.png").exists() and (tmp_path / "ce_detector.npz").exists()
    features = report["detectors"][report["selection"]["mix"]["ce"]["variant"]]["features"]
    assert CEDetector.load(tmp_path / "ce_detector.npz").n_features == len(features)


def test_cedetector_is_a_scikit_learn_estimator():
    from sklearn.base import clone

    x, y = _blobs()
    det = CEDetector(C=0.1, log_scale=1e-3, feature_names=[f"f{j}" for j in range(6)])
    params = det.get_params()
    assert params == {
        "C": 0.1,
        "log_scale": 1e-3,
        "fpr": 0.05,
        "feature_names": [f"f{j}" for j in range(6)],
        "log_features": None,
        "signature_config": None,
    }
    det.fit(x, y)
    assert det.get_params() == params  # fit leaves the constructor's parameters as given; what it learns ends in "_"
    assert (
        det.log_features is None
        and det.log_features_.tolist() == [True] * 6
        and det.feature_names_ == params["feature_names"]
    )
    copy = clone(det)
    assert copy.get_params() == params and not hasattr(copy, "coef_")
    assert np.array_equal(copy.fit(x, y).decision_function(x), det.decision_function(x))
    # decision_function: higher = adversarial; score_samples: scikit-learn's outlier convention, higher = normal
    assert auroc(y, det.decision_function(x)) > 0.9
    assert np.array_equal(det.score_samples(x), -det.decision_function(x))


def test_signature_and_detector_are_one_scikit_learn_pipeline(tmp_path, tiny_clf, tiny_signature):
    from sklearn.base import clone
    from sklearn.pipeline import make_pipeline

    from cemap.detect import load_detector, save_detector

    gen = torch.Generator().manual_seed(3)
    clean = torch.rand(12, 3, 16, 16, generator=gen) * 0.5
    shifted = (clean + 0.4).clamp(0, 1)  # an "attack" the signature tells apart
    images, y = torch.cat([clean, shifted]), np.r_[np.zeros(12), np.ones(12)]
    pipe = make_pipeline(CESignature(tiny_clf, tiny_signature.fitted, SignatureConfig(cell=4)), CEDetector(C=0.1))
    pipe.fit(images, y)
    scores = pipe.decision_function(images)
    assert scores.shape == (24,) and pipe.score(images, y) == roc_auc_score(y, scores) > 0.9
    assert set(pipe.predict(images)) <= {0, 1}
    twin = clone(pipe)  # parameters stored verbatim: an unfitted copy that refits to the same detector
    assert not hasattr(twin[-1], "coef_") and np.allclose(twin.fit(images, y).decision_function(images), scores)
    loaded = load_detector(save_detector(pipe, tmp_path / "detector.npz"), tiny_clf, tiny_signature.fitted)
    assert loaded[0].signature_config == SignatureConfig(cell=4)  # the featuriser is rebuilt from the file
    assert np.allclose(loaded.decision_function(images), scores)
    other = fit_autoencoder(
        tiny_clf, images, layer="conv1", config=AEConfig(code=4, hidden=8, steps=2, batch_size=16), use_cache=False
    )
    with pytest.raises(cemap.CemapError, match="layer conv2"):
        load_detector(tmp_path / "detector.npz", tiny_clf, other)


def test_log_odds_effects_survive_saturation():
    from cemap.causal import log_odds

    z = torch.tensor([[2.0, 0.5, -1.0], [60.0, 0.0, -3.0]])
    lo = log_odds(z, "softmax")
    p = torch.softmax(z.double(), -1)
    assert torch.allclose(lo[0].double(), torch.log(p[0]) - torch.log1p(-p[0]), atol=1e-5)
    assert torch.isfinite(lo).all() and lo[1, 0] == pytest.approx(60.0 - np.log1p(np.exp(-3.0)), abs=1e-4)
    assert torch.equal(log_odds(z, "sigmoid"), z)
    # a saturated softmax: float32 probability effects of a change are exactly 0, log-odds effects are not
    moved = z.clone()
    moved[1, 0] = 50.0
    assert torch.softmax(z, -1)[1, 0] == torch.softmax(moved, -1)[1, 0] == 1.0
    assert (log_odds(z, "softmax") - log_odds(moved, "softmax"))[1, 0] == pytest.approx(10.0, abs=1e-3)


def test_log_odds_signature_shares_the_network_and_differs_from_probabilities(tiny_clf, tiny_signature):
    x = torch.rand(4, 3, 16, 16)
    sig = CESignature(tiny_clf, tiny_signature.fitted, SignatureConfig(cell=4, effect_scale="log_odds"))
    assert sig._engines[1].classifier.model is tiny_clf.model and sig.feature_names == tiny_signature.feature_names
    assert torch.equal(tiny_clf.predict_proba(x), torch.softmax(tiny_clf(x), -1))  # the user's classifier is untouched
    s = sig.transform(x)
    assert s.shape == tiny_signature.transform(x).shape and not np.allclose(s, tiny_signature.transform(x))
    with pytest.raises(cemap.CemapError, match="effect_scale"):
        SignatureConfig(effect_scale="logit")


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_every_detectors_features_are_differentiable_and_agree(head):
    from conftest import TinyNet
    from cemap.detect import METHODS, DetectorFeatures

    torch.manual_seed(0)
    clf = cemap.Classifier(
        TinyNet(), class_names=list("abcd"), head=head, input_shape=(3, 16, 16), default_layer="conv2", name="tiny"
    )
    images = torch.rand(40, 3, 16, 16)
    fitted = fit_autoencoder(clf, images, config=AEConfig(code=4, hidden=8, steps=4, batch_size=16), use_cache=False)
    feats = DetectorFeatures(
        clf, fitted, images[:30], {"bits": (1,), "median_sizes": (2,)}, lid_k=5, signature=SignatureConfig(cell=4)
    )
    x = images[30:]
    arrays = feats(x)
    assert set(arrays) == set(METHODS)
    for m, v in arrays.items():
        assert v.shape == (10, len(feats.info[m].feature_names))
        xg = x.clone().requires_grad_(True)
        t = feats.torch(m, xg)
        assert np.allclose(t.detach().numpy(), v, atol=1e-6), m
        g = torch.autograd.grad(t.sum(), xg)[0]
        assert g.abs().sum() > 0, f"{m}: zero input gradient"
        if feats.info[m].unsupervised is not None:
            assert feats.info[m].unsupervised(v).shape == (10,)


def test_mahalanobis_by_hand():
    from cemap.detect.baselines import Mahalanobis

    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(200, 2, generator=gen), torch.randn(200, 2, generator=gen) + torch.tensor([10.0, 0.0])
    m = Mahalanobis(shrinkage=0.0).fit(torch.cat([a, b]), torch.cat([torch.zeros(200), torch.ones(200)]))
    d = m.distance(torch.tensor([[0.0, 0.0], [10.0, 3.0], [5.0, 0.0]]))
    assert d[0] < 0.3 and d[1] == pytest.approx(3.0, rel=0.15) and d[2] > 4


def test_vectorised_intervals_equal_one_roc_per_resample():
    """The matrix-product AUROC / TPR intervals against a plain loop of scikit-learn ROCs over the same resamples."""
    from sklearn.metrics import roc_auc_score, roc_curve

    from cemap.evaluate.bootstrap import (
        bootstrap_auroc,
        bootstrap_tpr_at_fpr,
        paired_auroc_difference,
        percentile_interval,
        stratified_indices,
    )

    rng = np.random.default_rng(3)
    c, a = np.round(rng.normal(size=30), 1), np.round(rng.normal(size=25) + 0.8, 1)  # rounded: ties on purpose
    c2, a2 = rng.normal(size=30), rng.normal(size=25) + 1.5
    y = np.r_[np.zeros(30), np.ones(25)]

    def auc(clean, adv):
        return roc_auc_score(y, np.r_[clean, adv])

    def tpr(clean, adv):
        f, t, _ = roc_curve(y, np.r_[clean, adv], drop_intermediate=False)
        return t[f <= 0.05 + 1e-12].max()

    ic, ia = stratified_indices(30, 25, 300, 0)
    for fast, reference, estimate in (
        (bootstrap_auroc(c, a, 300), [auc(c[i], a[j]) for i, j in zip(ic, ia)], auc(c, a)),
        (bootstrap_tpr_at_fpr(c, a, 0.05, 300), [tpr(c[i], a[j]) for i, j in zip(ic, ia)], tpr(c, a)),
        (
            paired_auroc_difference(c, a, c2, a2, 300),
            [auc(c[i], a[j]) - auc(c2[i], a2[j]) for i, j in zip(ic, ia)],
            auc(c, a) - auc(c2, a2),
        ),
    ):
        low, high = percentile_interval(np.array(reference))
        assert (
            fast.estimate == pytest.approx(estimate)
            and fast.low == pytest.approx(low)
            and fast.high == pytest.approx(high)
        )


def test_headline_reads_the_verdict_from_the_interval():
    from cemap.studies.detection import headline

    def cell(est, low, high):
        return {
            "auroc": {"estimate": est, "low": low, "high": high, "n": 40, "level": 0.95},
            "tpr_at_5fpr": {"estimate": 0.5, "low": 0.3, "high": 0.7, "n": 40, "level": 0.95},
        }

    def row(attack, kind, low, high):
        return {
            "attack": attack,
            "label": attack,
            "kind": kind,
            "fit_on": "mix",
            "seen": False,
            "n_adversarial": 40,
            "supervised": {"ce": cell(0.8, 0.7, 0.9), "msp": cell(0.6, 0.5, 0.7)},
            "unsupervised": {},
            "ce_minus_best_baseline": {
                "baseline": "msp",
                "estimate": (low + high) / 2,
                "low": low,
                "high": high,
                "verdict": "better" if low > 0 else "worse" if high < 0 else "no different",
            },
        }

    rows = [
        row("pgd_minimal", "minimal", 0.05, 0.3),
        row("pgd_matched", "confidence-matched", -0.1, 0.2),
        row("cw", "converged C&W", -0.3, -0.01),
        row("pgd_high", "standard", 0.1, 0.2),
    ]
    claims = headline("toy", {"mix": rows, "pgd_high": []}, {})
    assert [c["claim"].split("CE is ")[1] for c in claims] == [
        "better than it.",
        "no different from it.",
        "worse than it.",
    ]
    assert "0.800 [0.700, 0.900]" in claims[0]["claim"] and claims[0]["table"][0]["attack"] == "pgd_minimal"
