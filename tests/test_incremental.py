"""Incremental masked passes give the full forward pass's numbers, and are used only where they pay."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cemap.causal import CEMap
import torchvision

from cemap.causal import incremental as inc
from cemap.causal.incremental import incremental_masking, local_node_names
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
            nn.Conv2d(3, 6, 5, stride=2, padding=2),
            nn.BatchNorm2d(6),
            nn.LeakyReLU(0.1),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Conv2d(6, 8, 3, padding=2, dilation=2),
            nn.Tanh(),
            nn.AvgPool2d(2),
            nn.Conv2d(8, 8, (3, 1), padding=(1, 0)),
            nn.Dropout(0.3),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(8 * 6 * 6, 5))

    def forward(self, x):
        return self.head(self.body(x))


def _odd() -> Classifier:
    torch.manual_seed(1)
    net = _with_running_stats(Odd(), seed=1)
    return Classifier(
        net, list("vwxyz"), input_shape=(3, 45, 45), preprocess=Normalize([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    )


def _full(clf: Classifier, images, owner, masks, which, fills) -> torch.Tensor:
    with torch.inference_mode():
        return clf.predict_proba(torch.where(masks[which, None], fills[owner], images[owner]))


def test_the_local_part_covers_every_convolution_of_cxr_cnn():
    clf = _cxr_like()
    names = local_node_names(clf)
    assert names[:2] == ["x", "preprocess"] and names[-1] == "model_features_14"
    engine = incremental_masking(clf)
    assert engine is not None and engine.nodes[-1].size == (8, 8)


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
    assert cemap.incremental.cost_ratio(cemap.masks) == pytest.approx(1.0) and not cemap.incremental.worthwhile(
        cemap.masks
    )

    def refuse(*_args, **_kwargs):
        raise AssertionError("windows used for a mask as large as the image")

    monkeypatch.setattr(cemap.incremental, "probabilities", refuse)
    images = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(cemap.attribute(images), CEMap(clf, cell=64, incremental=False).attribute(images))


class Residual(nn.Module):
    """A residual block (addition of a branch and the identity) and a downsampling one (1 x 1 stride-2 shortcut)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.branch, self.tail = (
            nn.Conv2d(1, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3),
        )
        self.down, self.short = (
            nn.Sequential(
                nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.Conv2d(6, 6, 3, padding=1)
            ),
            nn.Conv2d(4, 6, 1, stride=2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(6 * 7 * 7, 2))

    def forward(self, x):
        y = self.stem(x)
        y = self.tail(y + self.branch(y))
        y = self.down(y) + self.short(y)
        return self.head(torch.relu(y))


class Dense(nn.Module):
    """Channel concatenation of branches whose windows differ (two 3 x 3 convolutions deep, one, none)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(4, 3, 3, padding=1), nn.Conv2d(7, 3, 3, padding=1), nn.Conv2d(10, 4, 1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        x = torch.cat([x, x * 0.5], 1)
        y = torch.cat([x, F.relu(self.a(x), inplace=True)], 1)
        y = torch.cat([y, self.b(y)], 1)
        return self.pool(self.c(y)).mean((2, 3))


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
        w = (self.weight - self.weight.mean((1, 2, 3), keepdim=True)) / (
            self.weight.std((1, 2, 3), keepdim=True) + 1e-5
        )
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def _masks(size: int, seed: int = 0) -> torch.Tensor:
    """Empty, corner, edges, a thin strip, scattered pixels, a centre cell and the whole image."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(8, size, size, dtype=torch.bool)
    c = max(1, size // 7)
    masks[1, :c, :c] = True
    masks[2, size - c :, size // 3 : size // 3 + c] = True
    masks[3, size // 2 : size // 2 + c, size - c :] = True
    masks[4, 3:5, :] = True
    masks[5] = torch.rand(size, size, generator=g) > 0.997
    masks[6, size // 2 - c // 2 : size // 2 + c - c // 2, size // 2 - c // 2 : size // 2 + c - c // 2] = True
    masks[7] = True
    return masks


def _check_equal(
    clf: Classifier, masks: torch.Tensor, images: torch.Tensor, fill: str = "mean", atol: float = 1e-5
) -> float:
    engine = incremental_masking(clf)
    assert engine is not None
    b, m = images.shape[0], masks.shape[0]
    owner, which = torch.arange(b).repeat_interleave(m), torch.arange(m).repeat(b)
    fills = fill_images(images, fill)
    with torch.inference_mode():
        got = engine.probabilities(images, owner, masks, which, fills, chunk_size=5)
        want = _full(clf, images, owner, masks, which, fills)
    diff = (got - want).abs().max().item()
    assert diff <= atol, diff
    return diff


@pytest.mark.parametrize(
    "full_area", [0.0, 0.55, 1.01]
)  # whole maps from the start, the default switch, windows throughout
def test_residual_additions_and_downsampling_shortcuts_equal_full_passes(monkeypatch, full_area):
    monkeypatch.setattr(inc, "FULL_AREA", full_area)
    torch.manual_seed(7)
    clf = Classifier(Residual(), ["p", "q"], input_shape=(1, 16, 16))
    assert "add" in local_node_names(clf) and "add_1" in local_node_names(clf)
    _check_equal(clf, _masks(16), torch.rand(2, 1, 16, 16))


@pytest.mark.parametrize("full_area", [0.0, 0.55, 1.01])
def test_channel_concatenation_of_branches_with_different_windows_equals_full_passes(monkeypatch, full_area):
    monkeypatch.setattr(inc, "FULL_AREA", full_area)
    torch.manual_seed(8)
    clf = Classifier(Dense(), ["p", "q", "r", "s"], input_shape=(2, 20, 20), head="sigmoid")
    engine = incremental_masking(clf)
    assert [n.kind for n in engine.nodes].count("merge") == 3 and engine.nodes[-1].name == "model_pool"
    plan = engine.plan(_masks(20)[1:2])  # one corner cell: the concatenations read some branches around their windows
    assert full_area < 1 or not all(all(d) for d in plan.direct)
    _check_equal(clf, _masks(20), torch.rand(2, 2, 20, 20))


def _tiny_densenet() -> Classifier:
    torch.manual_seed(9)
    net = torchvision.models.DenseNet(
        growth_rate=8, block_config=(2, 3, 2), num_init_features=16, bn_size=2, num_classes=3
    )
    return Classifier(
        _with_running_stats(net.eval(), 9),
        list("abc"),
        head="sigmoid",
        input_shape=(3, 64, 64),
        preprocess=Normalize([0.5] * 3, [0.25] * 3),
    )


def _tiny_resnet() -> Classifier:
    torch.manual_seed(10)
    net = torchvision.models.resnet.ResNet(
        torchvision.models.resnet.Bottleneck, [1, 2, 1, 1], num_classes=3, width_per_group=16
    )
    return Classifier(
        _with_running_stats(net.eval(), 10),
        list("abc"),
        head="sigmoid",
        input_shape=(3, 64, 64),
        preprocess=Normalize([0.5] * 3, [0.25] * 3),
    )


@pytest.mark.parametrize("build", [_tiny_densenet, _tiny_resnet])
@pytest.mark.parametrize("full_area", [0.55, 1.01])
def test_densenet_and_resnet_like_networks_equal_full_passes_up_to_their_global_pooling(monkeypatch, build, full_area):
    monkeypatch.setattr(inc, "FULL_AREA", full_area)
    clf = build()
    engine = incremental_masking(clf)
    kinds = [n.kind for n in engine.nodes]
    assert kinds.count("window") == sum(
        isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)) for m in clf.modules()
    )  # every one
    assert engine.nodes[-1].size in ((4, 4), (2, 2)) and kinds.count("merge") > 0  # the last map before global pooling
    _check_equal(clf, _masks(64), torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(11)))


def test_windows_switch_to_whole_maps_where_they_cover_most_of_them_and_the_estimate_follows_the_mask_size():
    engine = incremental_masking(_tiny_resnet())
    small, large = engine.plan(_masks(64)[1:2]), engine.plan(_masks(64)[6:7] | _masks(64)[1:2])
    assert not small.whole[5] and small.whole[-1] and large.whole.index(True) < small.whole.index(True)
    assert small.cost < large.cost < engine.plan(_masks(64)[7:]).cost == pytest.approx(1.0)


@pytest.mark.parametrize("arch", ["densenet121", "resnet50"])
def test_real_densenet121_and_resnet50_ce_maps_equal_full_passes(arch):
    torch.manual_seed(12)
    net = _with_running_stats(getattr(torchvision.models, arch)(weights=None, num_classes=4).eval(), 12)
    clf = Classifier(
        net, list("abcd"), head="sigmoid", input_shape=(3, 64, 64), preprocess=Normalize([0.5] * 3, [0.25] * 3)
    )
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(13))
    fast, slow = CEMap(clf, cell=16), CEMap(clf, cell=16, incremental=False)
    assert fast.incremental is not None and len(fast.incremental.nodes) > 100
    assert (fast.attribute(images) - slow.attribute(images)).abs().max() <= 1e-5


def test_a_convolution_with_its_own_forward_ends_the_local_part():
    torch.manual_seed(6)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        StandardisedConv(4, 4, 3, padding=1),
        nn.Flatten(),
        nn.Linear(4 * 16 * 16, 2),
    )
    clf = Classifier(net, ["p", "q"], input_shape=(1, 16, 16))
    assert local_node_names(clf) == ["x", "preprocess", "model_0", "model_1"]
    images = torch.rand(2, 1, 16, 16)
    assert torch.allclose(
        CEMap(clf, cell=4).attribute(images), CEMap(clf, cell=4, incremental=False).attribute(images), atol=1e-6
    )


def test_untraceable_networks_run_full_passes():
    branchy = Classifier(Branchy(), ["p", "q"], input_shape=(1, 16, 16))
    assert incremental_masking(branchy) is None
    assert CEMap(branchy, cell=4).attribute(torch.rand(1, 1, 16, 16)).shape == (1, 16, 16)
