"""Every explanation method behind one signature, on the built-in CNN and on torchvision's DenseNet-121."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from pytorch_grad_cam.utils.image import scale_cam_image
from torch import nn

import cemap
from cemap.explain import CloneOutput, default_cam_layer, get_explainer, gradient_safe_copy, list_explainers

METHODS = [
    "ce",
    "ce-ms",
    "ce-paper",
    "cam",
    "gradcam",
    "gradcam++",
    "scorecam",
    "occlusion",
    "integrated-gradients",
    "random",
    "centre",
    "edge",
    "contrast",
    "rise",
    "kernelshap",
]
GRADIENT_METHODS = ["cam", "gradcam", "gradcam++", "integrated-gradients"]


class GapNet(nn.Module):
    """conv -> ReLU -> global average pooling -> linear: the architecture CAM was defined for."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def gap_clf():
    torch.manual_seed(0)
    return cemap.Classifier(
        GapNet(), class_names=list("abc"), head="sigmoid", input_shape=(1, 16, 16), cam_layer="relu", name="gap"
    )


@pytest.fixture(scope="module")
def densenet():
    torch.manual_seed(0)
    net = torchvision.models.densenet121(weights=None, num_classes=3)
    return cemap.Classifier(
        net,
        class_names=["a", "b", "c"],
        head="sigmoid",
        input_shape=(3, 64, 64),
        cam_layer="features.norm5",
        name="densenet121",
    )


def test_registry_lists_every_method_and_rejects_unknown(tiny_clf):
    assert list_explainers() == METHODS
    with pytest.raises(cemap.CemapError, match="valid explanation methods"):
        get_explainer("lime", tiny_clf)


@pytest.mark.parametrize("name", [m for m in METHODS if m != "cam"])
def test_each_method_gives_finite_maps_at_input_resolution(name, mnist_clf, mnist_test):
    batch = mnist_test.batch(range(6))
    maps = get_explainer(name, mnist_clf, batch_size=4).attribute(batch.images, batch.labels)  # two chunks of images
    assert maps.shape == (6, 28, 28) and maps.dtype == torch.float32
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0


def test_cam_needs_a_pooling_head(mnist_clf):
    with pytest.raises(cemap.CemapError, match="gradcam"):
        get_explainer("cam", mnist_clf).attribute(torch.zeros(1, 1, 28, 28), 0)


def test_cam_equals_gradcam_on_a_gap_linear_model(gap_clf):
    x = torch.rand(4, 1, 16, 16)
    t = torch.tensor([0, 1, 2, 1])
    cam = get_explainer("cam", gap_clf).attribute(x, t)
    grad = get_explainer("gradcam", gap_clf).attribute(x, t)
    assert torch.allclose(cam, grad, atol=1e-5)


def test_targets_select_the_finding_of_a_multilabel_model(gap_clf):
    x = torch.rand(2, 1, 16, 16)
    for name in ["ce", "gradcam", "integrated-gradients"]:
        e = get_explainer(name, gap_clf)
        per_finding = [e.attribute(x, k) for k in range(3)]
        assert not torch.allclose(per_finding[0], per_finding[1])
        mixed = e.attribute(x, torch.tensor([0, 2]))
        assert torch.allclose(mixed[0], per_finding[0][0], atol=1e-6) and torch.allclose(
            mixed[1], per_finding[2][1], atol=1e-6
        )


def test_default_target_is_the_most_probable_class(mnist_clf, mnist_test):
    x = mnist_test.batch(range(3)).images
    e = get_explainer("gradcam", mnist_clf)
    pred = mnist_clf.predict_proba(x).argmax(1)
    assert torch.allclose(e.attribute(x), e.attribute(x, pred))


def test_ce_method_is_the_cemap(mnist_clf, mnist_test):
    x = mnist_test.batch(range(3)).images
    ours = get_explainer("ce", mnist_clf, cell=7, fill="mean").attribute(x, 2)
    assert torch.allclose(ours, cemap.CEMap(mnist_clf, cell=7, fill="mean").attribute(x, 2))


def test_floors(tiny_clf):
    x = torch.rand(3, 3, 16, 16)
    centre = get_explainer("centre", tiny_clf).attribute(x)
    assert torch.equal(centre[0], centre[2])
    assert centre[0, 7:9, 7:9].min() == centre[0].max()
    r = get_explainer("random", tiny_clf, seed=5)
    first, second = r.attribute(x), r.attribute(x)
    assert not torch.equal(first, second)
    assert torch.equal(first, get_explainer("random", tiny_clf, seed=5).attribute(x))


def test_default_cam_layer_is_the_last_spatial_layer(tiny_clf, densenet):
    assert default_cam_layer(tiny_clf) == "act2"  # the pooled 1 x 1 output after it is not a map
    assert default_cam_layer(densenet) == "features.norm5"  # the classifier's own cam_layer wins
    bare = cemap.Classifier(densenet.model, class_names=list("abc"), head="sigmoid", input_shape=(3, 64, 64))
    assert default_cam_layer(bare) == "features"  # norm5's output, before DenseNet's functional ReLU
    with pytest.raises(cemap.CemapError):
        gradient_safe_copy(tiny_clf, "nope")


def test_clone_fix_keeps_densenets_true_activation(densenet):
    """The trap: F.relu(inplace=True) in DenseNet.forward overwrites the hooked norm5 output; the copy's hooked layer
    keeps it."""
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        truth = densenet.model.features(x)
    assert truth.min() < 0

    def capture(module):
        seen = []
        handle = module.register_forward_hook(lambda _m, _i, out: seen.append(out))
        with torch.no_grad():
            densenet_like(x)
        handle.remove()
        return seen[0]

    densenet_like = densenet
    naive = capture(densenet.model.features.norm5)
    assert naive.min() >= 0  # silently ReLU'd: what the CAM libraries read without the fix
    copy_, hooked = gradient_safe_copy(densenet, "features.norm5")
    densenet_like = copy_
    assert torch.allclose(capture(hooked), truth, atol=1e-5)
    assert isinstance(copy_.model.features.norm5, CloneOutput)
    assert not isinstance(densenet.model.features.norm5, CloneOutput)  # the user's model is untouched
    with torch.no_grad():
        assert torch.allclose(copy_(x), densenet(x), atol=1e-5)


def test_gradcam_on_densenet_matches_a_hand_computation(densenet):
    x = torch.rand(2, 3, 64, 64)
    t = torch.tensor([1, 2])
    ours = get_explainer("gradcam", densenet).attribute(x, t)
    feats = densenet.model.features(x).detach().requires_grad_(True)
    logits = densenet.model.classifier(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.relu(feats), 1), 1))
    grads = torch.autograd.grad(logits.gather(1, t[:, None]).sum(), feats)[0]
    cam = torch.relu((grads.mean(dim=(2, 3), keepdim=True) * feats).sum(1)).detach().numpy()
    expected = scale_cam_image(scale_cam_image(cam, (64, 64)))
    assert np.allclose(ours.numpy(), expected, atol=1e-4)


@pytest.mark.parametrize("name", ["ce", *GRADIENT_METHODS, "occlusion"])
def test_methods_run_on_torchvision_densenet121(name, densenet):
    kw = {"occlusion": {"window": 16, "stride": 16}, "ce": {"cell": 16}, "integrated-gradients": {"n_steps": 8}}.get(
        name, {}
    )
    maps = get_explainer(name, densenet, **kw).attribute(torch.rand(2, 3, 64, 64), torch.tensor([0, 2]))
    assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all()


@pytest.mark.slow
def test_scorecam_runs_on_torchvision_densenet121(densenet):
    """Score-CAM costs one forward pass per norm5 channel (1,024) and image."""
    maps = get_explainer("scorecam", densenet).attribute(torch.rand(1, 3, 64, 64), 1)
    assert maps.shape == (1, 64, 64) and torch.isfinite(maps).all()
