"""synthcxr: exact boxes inside the lung field, NIH-shaped box sizes, determinism, shortcut; cxr-cnn quality (slow)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

import cemap
from cemap.data.synthcxr import FINDINGS, SynthCXR, SynthCXRConfig, generate, mask_pools, render_without
from cemap.data.synthcxr_anatomy import NIH_BOX_SCALE, lung_masks, nih_boxes
from cemap.data.synthcxr_boxes import MIN_LUNG_COVER
from cemap.errors import CemapError


@pytest.fixture(scope="module")
def test_split():
    return cemap.get_dataset("synthcxr", split="test")


def test_samples_are_grayscale_multilabel_with_a_box_per_finding(test_split):
    assert len(test_split) == 600 and test_split.class_names == FINDINGS and test_split.multilabel
    s = test_split[0]
    assert (
        s.image.shape == (1, 128, 128) and s.image.dtype == torch.float32 and 0 <= s.image.min() and s.image.max() <= 1
    )
    for i in range(len(test_split)):
        labels, box_labels = test_split.labels[i], test_split[i].box_labels
        assert sorted(box_labels.tolist()) == torch.nonzero(labels).flatten().tolist()
    positives = int(test_split.labels.sum())
    assert positives >= 200 and (test_split.labels.sum(0) >= 50).all() and (test_split.labels.sum(1) > 1).any()


def test_boxes_inside_image_and_lung_field(test_split):
    size = test_split.size
    for i in range(len(test_split)):
        boxes = test_split[i].boxes
        if len(boxes) == 0:
            continue
        lung = test_split.lung_mask(i)
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= size).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        for x0, y0, x1, y1 in boxes.tolist():
            assert lung[int((y0 + y1) / 2), int((x0 + x1) / 2)], "box centre outside the lung field"
            footprint = lung[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))]
            assert footprint.float().mean() >= MIN_LUNG_COVER


def _footprints(arrays, size):
    """Per image, the pixel footprint of each lesion, in drawing order (box rows are stored in that order)."""
    out: dict[int, list[np.ndarray]] = {}
    for i, (x0, y0, x1, y1) in zip(arrays["box_image"], arrays["boxes"]):
        m = np.zeros((size, size), dtype=bool)
        m[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
        out.setdefault(int(i), []).append(m)
    return out


def test_rendering_without_no_lesion_reproduces_every_image_bit_for_bit():
    cfg = SynthCXRConfig(size=64, n_test=300, shortcut=True)  # two chunks of the generator, tagged images too
    arrays = generate(cfg, "test")
    same = render_without(cfg, "test", [(i, ()) for i in range(300)])
    assert same.dtype == np.uint8 and np.array_equal(same, arrays["images"])
    data = SynthCXR(split="test", size=64, n_test=300, shortcut=True, use_cache=False)
    assert torch.equal(data.without([(7, []), (290, [])]), torch.stack([data[7].image, data[290].image]))


def test_removing_a_lesion_changes_pixels_only_inside_its_footprint():
    cfg = SynthCXRConfig(size=64, n_test=80)
    arrays = generate(cfg, "test")
    feet = _footprints(arrays, 64)
    several = [i for i, f in feet.items() if len(f) >= 2]
    requests = [(i, (k,)) for i in several for k in range(len(feet[i]))] + [
        (i, tuple(range(len(feet[i])))) for i in several
    ]
    rendered = render_without(cfg, "test", requests)
    changed_any = 0
    for (i, removed), img in zip(requests, rendered):
        changed = img != arrays["images"][i]
        allowed = np.logical_or.reduce([feet[i][k] for k in removed])
        assert not (changed & ~allowed).any(), f"image {i} without {removed} changed pixels outside the footprint"
        changed_any += bool(changed.any())
        if (
            len(removed) == 1
        ):  # the other lesions are untouched, pixel for pixel, where they do not overlap the removed one
            others = np.logical_or.reduce([f for k, f in enumerate(feet[i]) if k != removed[0]]) & ~allowed
            assert np.array_equal(img[others], arrays["images"][i][others])
    assert len(several) >= 10 and changed_any == len(requests)  # every removal is visible


def test_lesions_are_the_generators_and_bad_requests_are_refused():
    data = SynthCXR(split="test", size=64, n_test=40, use_cache=False)
    i = next(j for j in range(40) if len(data.lesions(j)[0]) >= 2)
    boxes, findings = data.lesions(i)
    assert torch.equal(boxes, data[i].boxes) and torch.equal(findings, data[i].box_labels)
    with pytest.raises(CemapError, match="no lesion 5"):
        data.without([(i, [5])])
    with pytest.raises(CemapError, match="40 images"):
        data.without([(40, [])])


def test_val_split_is_drawn_like_train_but_is_not_train():
    cfg = SynthCXRConfig(size=64, n_train=40, n_test=40)
    train, val, test = generate(cfg, "train"), generate(cfg, "val"), generate(cfg, "test")
    assert not np.array_equal(train["images"], val["images"]) and not np.array_equal(val["images"], test["images"])
    assert len(val["images"]) == cfg.n_test


def test_box_sizes_match_the_nih_boxes_they_are_drawn_from(test_split):
    scale = test_split.size / NIH_BOX_SCALE
    boxes = torch.cat([test_split[i].boxes for i in range(len(test_split))]).numpy()
    labels = torch.cat([test_split[i].box_labels for i in range(len(test_split))]).numpy()
    nih = nih_boxes()
    for f, name in enumerate(FINDINGS):
        ours = boxes[labels == f]
        ref = nih[name] * scale
        assert len(ours) >= 50
        for axis, (lo, hi) in enumerate([(0, 2), (1, 3)]):
            p = ks_2samp(ours[:, hi] - ours[:, lo], ref[:, 2 + axis]).pvalue
            assert p > 0.01, (
                f"{name} box {'width' if axis == 0 else 'height'} distribution differs from NIH (KS p={p:.3g})"
            )


def test_same_seed_same_images_other_seed_other_images():
    cfg = SynthCXRConfig(size=64, n_test=16, seed=3)
    a, b = generate(cfg, "test"), generate(cfg, "test")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = generate(SynthCXRConfig(size=64, n_test=16, seed=4), "test")
    assert not np.array_equal(a["images"], c["images"])


def test_train_and_test_anatomy_are_disjoint():
    pools = mask_pools(len(lung_masks()[0]))
    assert not set(pools["train"]) & set(pools["test"])
    assert len(pools["train"]) + len(pools["test"]) == len(lung_masks()[0]) >= 400


def test_shortcut_marker_correlates_with_its_finding():
    ds = SynthCXR(split="test", size=64, n_test=200, shortcut=True, shortcut_finding="Mass", use_cache=False)
    mass = ds.labels[:, FINDINGS.index("Mass")] > 0
    tagged = ds.has_shortcut
    assert tagged[mass].float().mean() > 0.75 and tagged[~mass].float().mean() < 0.15
    x0, y0, x1, y1 = ds.shortcut_box.int().tolist()
    corner = torch.stack([ds[i].image[0, y0:y1, x0:x1].max() for i in range(len(ds))])
    assert (corner[tagged] > 0.85).all() and (corner[~tagged] < 0.8).all()
    assert not ds.lung_mask(0)[y0:y1, x0:x1].any()
    clean = SynthCXR(split="test", size=64, n_test=200, use_cache=False)
    assert clean.shortcut_box is None and not clean.has_shortcut.any()


def test_bad_options():
    with pytest.raises(CemapError, match="size"):
        SynthCXR(size=512)
    with pytest.raises(CemapError, match="has no option .colour.*keys it takes"):
        SynthCXR(colour=True)
    with pytest.raises(CemapError, match="split"):
        SynthCXR(split="validation")


@pytest.mark.slow
def test_cxr_cnn_acceptance(test_split):
    """cxr-cnn: macro AUROC >= 0.95 on the test split; the demo's autoencoder keeps >= 98% of per-finding decisions."""
    from cemap.data.base import stack_images
    from cemap.studies.overview import classifier_quality

    clf = cemap.get_model("cxr-cnn")
    batch = test_split.batch(range(len(test_split)))
    assert classifier_quality(clf, batch.images, batch.labels)["macro_auroc"] >= 0.95
    fitted = cemap.fit_autoencoder(
        clf, stack_images(cemap.get_dataset("synthcxr", split="train")), data_key="synthcxr-train"
    )
    assert cemap.fidelity(fitted, clf, batch.images).agreement >= 0.98


def test_cxr_cnn_has_a_cam_ready_head_and_loads_local_weights(tmp_path):
    from torch import nn

    from cemap.models.cxr_cnn import CAM_LAYER, CxrCNN

    torch.save(CxrCNN(len(FINDINGS)).state_dict(), tmp_path / "cxr.pt")
    clf = cemap.get_model("cxr-cnn", weights=str(tmp_path / "cxr.pt"))  # no training when weights are given
    assert clf.head == "sigmoid" and clf.input_shape == (1, 128, 128) and clf.class_names == FINDINGS
    assert CAM_LAYER == f"features.{len(clf.model.features) - 1}" and isinstance(
        clf.model.get_submodule(CAM_LAYER), nn.ReLU
    )
    assert isinstance(clf.model.classifier, nn.Linear) and clf.default_layer in clf.layers and CAM_LAYER in clf.layers
    with torch.inference_mode():
        assert clf(torch.rand(2, 1, 128, 128)).shape == (2, len(FINDINGS))


def test_loaded_cxr_cnn_is_the_trained_network_with_batchnorm_folded_and_fast_pooling(tmp_path):
    """The built-in classifier (BN folded, 2 x 2 pooling by maxima without autograd) computes what the
    trained conv-BN network computes - forward, gradient and every named layer keep their meaning."""
    from torch import nn

    from cemap.models.cxr_cnn import CxrCNN

    torch.manual_seed(0)
    trained = CxrCNN(len(FINDINGS)).to(memory_format=torch.channels_last)
    for bn in (m for m in trained.modules() if isinstance(m, nn.BatchNorm2d)):  # non-trivial running statistics
        (
            bn.running_mean.uniform_(-0.5, 0.5),
            bn.running_var.uniform_(0.5, 2),
            bn.weight.data.uniform_(0.5, 1.5),
            bn.bias.data.uniform_(-0.2, 0.2),
        )
    torch.save(trained.state_dict(), tmp_path / "cxr.pt")
    clf = cemap.get_model("cxr-cnn", weights=str(tmp_path / "cxr.pt"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in clf.model.modules())
    assert isinstance(clf.model.get_submodule("features.1"), nn.Identity)
    trained.eval()
    x = torch.rand(5, 1, 128, 128)
    x[0, 0, :40, :40] = 0.5  # a flat patch: ties inside pooling windows
    with torch.inference_mode():
        reference = trained(clf.preprocess(x))
        assert torch.allclose(clf(x), reference, rtol=1e-5, atol=1e-4)
        for name in ("features.3", "features.11"):  # block outputs: conv-BN-pool-ReLU
            got = torch.nn.Sequential(*list(clf.model.features)[: int(name.split(".")[1]) + 1])(clf.preprocess(x))
            want = torch.nn.Sequential(*list(trained.features)[: int(name.split(".")[1]) + 1])(clf.preprocess(x))
            assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)
        split = cemap.causal.split_classifier(clf)  # the pooling's own branches must not push the split onto hooks
        act, extras = split.activation(x)
        assert (
            split.method == "fx"
            and extras == ()
            and torch.allclose(split.finish(act, extras), clf(x), rtol=1e-5, atol=1e-4)
        )
    grads = []
    for net in (clf.model, trained):
        xx = clf.preprocess(x).requires_grad_(True)
        grads.append(torch.autograd.grad(net(xx)[:, 0].sum(), xx)[0])
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_fast_max_pooling_equals_the_pooling_kernel():
    import torch.nn.functional as F

    from cemap.models.cxr_cnn import MaxPool2x2

    pool = MaxPool2x2()
    for shape in ((3, 8, 16, 16), (2, 5, 6, 10), (2, 1, 8, 8), (1, 4, 7, 9)):
        x = torch.randn(shape)
        x[0, 0, 0, 0] = float("nan")
        want = F.max_pool2d(x, 2)
        for layout in (torch.contiguous_format, torch.channels_last):
            with torch.no_grad():
                got = pool(x.contiguous(memory_format=layout))
            assert torch.equal(got.nan_to_num(7.0), want.nan_to_num(7.0))
