"""Incremental masked passes give the full forward pass's numbers, and are used only where they pay."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cemap.causal import CEMap
from cemap.causal.incremental import incremental_masking, local_chain
from cemap.causal.masks import fill_images
from cemap.models.classifier import Classifier, Normalize
from cemap.models.cxr_cnn import CxrCNN
from cemap.models.folding import fold_batchnorm


def _with_running_stats(net: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net


def _cxr_like(size: int = 64) -> Classifier:
    torch.manual_seed(0)
    net = _with_running_stats(CxrCNN(3)).eval()
    fold_batchnorm(net.features)
    net = net.to(memory_format=torch.channels_last)
    return Classifier(net, ["a", "b", "c"], head="sigmoid", input_shape=(1, size, size))


class Odd(nn.Module):
    """Every kind of local layer with awkward settings: strides, dilation, padded max-pool, average pool, batch-norm."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 5, stride=2, padding=2), nn.BatchNorm2d(6), nn.LeakyReLU(0.1),
            nn.MaxPool2d(3, stride=2, padding=1), nn.Conv2d(6, 8, 3, padding=2, dilation=2), nn.Tanh(),
            nn.AvgPool2d(2), nn.Conv2d(8, 8, (3, 1), padding=(1, 0)), nn.Dropout(0.3),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6 * 6, 5))

    def forward(self, x):
        return self.head(self.body(x))


def _odd() -> Classifier:
    torch.manual_seed(1)
    net = _with_running_stats(Odd(), seed=1)
    return Classifier(net, list("vwxyz"), input_shape=(3, 45, 45), preprocess=Normalize([0.4, 0.5, 0.6], [0.2, 0.25, 0.3]))


def _full(clf: Classifier, images, owner, masks, which, fills) -> torch.Tensor:
    with torch.inference_mode():
        return clf.predict_proba(torch.where(masks[which, None], fills[owner], images[owner]))


def test_local_chain_covers_every_convolution_of_cxr_cnn():
    clf = _cxr_like()
    names = [n for n, _ in local_chain(clf)]
    assert names[0] == "preprocess" and names[-1] == "model.features.14"
    engine = incremental_masking(clf)
    assert engine is not None and engine.sizes[-1] == (8, 8)


@pytest.mark.parametrize("fill", ["zero", "mean", "blur"])
def test_incremental_probabilities_equal_full_passes_for_any_mask(fill):
    clf = _odd()
    engine = incremental_masking(clf)
    assert engine is not None
    g = torch.Generator().manual_seed(2)
    images = torch.rand(3, 3, 45, 45, generator=g)
    masks = torch.zeros(6, 45, 45, dtype=torch.bool)
    masks[1, :7, :5] = True  # a corner
    masks[2, 40:, 20:31] = True  # the bottom edge
    masks[3] = torch.rand(45, 45, generator=g) > 0.995  # scattered pixels: the bounding box is what counts
    masks[4, 10:13, 30:45] = True
    masks[5] = True  # everything
    owner = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, 0, 1, 2, 0])
    which = torch.tensor([0, 1, 2, 3, 4, 5, 5, 4, 3, 2, 1, 0, 3])
    fills = fill_images(images, fill)
    with torch.inference_mode():
        got = engine.probabilities(images, owner, masks, which, fills, chunk_size=4)
    assert torch.allclose(got, _full(clf, images, owner, masks, which, fills), atol=1e-6)


def test_ce_map_uses_windows_on_cxr_cnn_and_matches_full_passes_and_their_gradients():
    clf = _cxr_like()
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(3))
    fast, slow = CEMap(clf, cell=8, stride=4, fill="mean"), CEMap(clf, cell=8, stride=4, fill="mean", incremental=False)
    assert fast.incremental is not None and fast.incremental.worthwhile(fast.masks) and slow.incremental is None
    assert torch.allclose(fast.attribute(images), slow.attribute(images), atol=1e-6)

    def grad(engine):
        x = images.clone().requires_grad_(True)
        engine.attribute(x, target=1, differentiable=True).sum().backward()
        return x.grad

    assert torch.allclose(grad(fast), grad(slow), atol=1e-5)


def test_bf16_incremental_maps_stay_close_to_fp32():
    clf = _cxr_like()
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(4))
    fp32 = CEMap(clf, cell=16, incremental=False).attribute(images)
    bf16 = CEMap(clf, cell=16, precision="bf16").attribute(images)
    assert (bf16 - fp32).abs().max() < 0.05


def test_windows_are_skipped_where_they_do_not_pay(monkeypatch):
    clf = _cxr_like()
    cemap = CEMap(clf, cell=64)  # one cell: the whole image
    assert cemap.incremental.cost_ratio(cemap.masks) == pytest.approx(1.0) and not cemap.incremental.worthwhile(cemap.masks)

    def refuse(*_args, **_kwargs):
        raise AssertionError("windows used for a mask as large as the image")

    monkeypatch.setattr(cemap.incremental, "probabilities", refuse)
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(cemap.attribute(images), CEMap(clf, cell=64, incremental=False).attribute(images))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.branch, self.tail = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 14 * 14, 2))

    def forward(self, x):
        y = self.stem(x)
        return self.head(self.tail(y + self.branch(y)))


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv, self.head = nn.Conv2d(1, 2, 3), nn.Linear(2 * 14 * 14, 2)

    def forward(self, x):
        y = self.conv(x)
        if y.mean() > 0:  # data-dependent: fx cannot trace this
            y = -y
        return self.head(y.flatten(1))


class StandardisedConv(nn.Conv2d):
    """Weight standardisation: the layer's effective weights are not its ``weight``."""

    def forward(self, x):
        w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / (self.weight.std((1, 2, 3), keepdim=True) + 1e-5)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_a_convolution_with_its_own_forward_ends_the_local_run():
    torch.manual_seed(6)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), StandardisedConv(4, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 16 * 16, 2))
    clf = Classifier(net, ["p", "q"], input_shape=(1, 16, 16))
    assert [n for n, _ in local_chain(clf)] == ["preprocess", "model.0", "model.1"] and incremental_masking(clf) is None
    images = torch.rand(2, 1, 16, 16)
    assert torch.allclose(CEMap(clf, cell=4).attribute(images), CEMap(clf, cell=4, incremental=False).attribute(images))


def test_networks_with_convolutions_after_a_non_local_step_or_untraceable_ones_run_full_passes():
    residual = Classifier(Residual(), ["p", "q"], input_shape=(1, 16, 16))
    assert [n for n, _ in local_chain(residual)] == ["preprocess", "model.stem"]
    assert incremental_masking(residual) is None
    branchy = Classifier(Branchy(), ["p", "q"], input_shape=(1, 16, 16))
    assert incremental_masking(branchy) is None
    assert CEMap(branchy, cell=4).attribute(torch.rand(1, 1, 16, 16)).shape == (1, 16, 16)
