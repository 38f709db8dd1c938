"""densenet121-cxr, resnet18-cxr and resnet18-slim-cxr: deep ImageNet architectures trained from scratch on synthcxr,
the explanation benchmark's second model family beside cxr-cnn.

``densenet121-cxr`` is CheXNet's architecture (torchvision's DenseNet-121). It trains in about
10 minutes at 64 px and about 36 at 128 px on one CPU thread (8 epochs; docs/results/train_speed.txt).
Its explanation benchmark took 34 minutes at 64 px on 2 threads; at 128 px it would take hours, so
it runs on a GPU there (``cemap evaluate --benchmark --device cuda``), where the model is also
trained (the training device is part of the cache key: GPU-trained weights differ from CPU-trained ones).
``resnet18-slim-cxr`` (ResNet-18's topology at a quarter of its width) is what a 2-core machine
can benchmark at both sizes; ``resnet18-cxr`` is torchvision's full-width ResNet-18.

One input channel (the first convolution is built for 1 channel), 4 sigmoid outputs, trained on
synthcxr's train split at ``size`` px on first use and cached like cxr-cnn (keyed by the
training configuration); batch-norm stays as trained (eval mode).
"""

from __future__ import annotations

from torch import nn

from ..data.registry import get_dataset
from ..data.synthcxr import FINDINGS, GENERATOR_VERSION
from .classifier import Classifier
from .registry import register_model
from .torchvision_models import DENSENET_LAYERS
from .training import builtin_weights

TRAIN_CONFIG = {"arch": "resnet18-1ch", "epochs": 4, "lr": 2e-3, "batch_size": 32, "max_shift": 3, "seed": 0}
LAYERS = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]


def resnet18_1ch(classes: int) -> nn.Module:
    import torchvision  # on use: importing cemap stays light

    net = torchvision.models.resnet18(weights=None, num_classes=classes)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


@register_model("resnet18-cxr")
def resnet18_cxr(weights: str | None = None, train_config: dict | None = None, size: int = 128) -> Classifier:
    """ResNet-18 for synthcxr at ``size`` px, trained on first use (minutes at 64 px, longer at 128 on 2 cores)."""
    return _synthcxr_classifier(
        "resnet18-cxr", lambda: resnet18_1ch(len(FINDINGS)), {**TRAIN_CONFIG, **(train_config or {})}, size, weights
    )


DENSENET_CONFIG = {"arch": "densenet121-1ch", "epochs": 8, "lr": 2e-3, "batch_size": 32, "max_shift": 3, "seed": 0}


def densenet121_1ch(classes: int) -> nn.Module:
    import torchvision  # on use: importing cemap stays light

    net = torchvision.models.densenet121(weights=None, num_classes=classes)
    net.features.conv0 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


@register_model("densenet121-cxr")
def densenet121_cxr(weights: str | None = None, train_config: dict | None = None, size: int = 128) -> Classifier:
    """DenseNet-121 (CheXNet's architecture) for synthcxr at ``size`` px, trained on first use;
    ``train_config={"device": "cuda"}``
    trains it on a GPU (minutes; about 36 min on one CPU thread at 128 px)."""
    return _synthcxr_classifier(
        "densenet121-cxr",
        lambda: densenet121_1ch(len(FINDINGS)),
        {**DENSENET_CONFIG, **(train_config or {})},
        size,
        weights,
        layers=DENSENET_LAYERS,
        default_layer="features.transition2",
        cam_layer="features.norm5",
    )


def _synthcxr_classifier(
    name: str,
    make_net,
    config: dict,
    size: int,
    weights: str | None,
    layers: list[str] = LAYERS,
    default_layer: str = "layer2",
    cam_layer: str = "layer4",
) -> Classifier:
    """A multi-label synthcxr classifier: weights from ``weights``, the cache, or trained on first use."""
    config = {**config, "size": size, "data_version": GENERATOR_VERSION}
    net = builtin_weights(
        name,
        make_net,
        config,
        lambda: get_dataset("synthcxr", split="train", size=size),
        multilabel=True,
        weights=weights,
    )
    return Classifier(
        net,
        class_names=FINDINGS,
        head="sigmoid",
        input_shape=(1, size, size),
        layers=layers,
        default_layer=default_layer,
        cam_layer=cam_layer,
        name=name,
    )


SLIM_CONFIG = {
    "arch": "resnet18-slim-1ch-16-32-64-128",
    "epochs": 8,
    "lr": 3e-3,
    "batch_size": 32,
    "max_shift": 3,
    "seed": 0,
}


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class SlimResNet18(nn.Module):
    """ResNet-18's topology (stem, 4 stages of 2 basic blocks, global pooling, linear head) at a quarter of its
    width."""

    def __init__(self, classes: int, widths: tuple[int, ...] = (16, 32, 64, 128)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        stages, cin = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(nn.Sequential(_BasicBlock(cin, w, 1 if i == 0 else 2), _BasicBlock(w, w, 1)))
            cin = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


@register_model("resnet18-slim-cxr")
def resnet18_slim_cxr(weights: str | None = None, train_config: dict | None = None, size: int = 64) -> Classifier:
    """ResNet-18 topology at quarter width (16-32-64-128 channels, ~0.7 M parameters) for synthcxr at ``size`` px.

    The benchmark's second model family on the shared 2-core machine, where full-width ResNet-18
    (5.6 s per batch of 32 at 64 px measured on a quiet machine, several times that under the
    session's load) could not be trained in the time available; same blocks, residual
    connections, batch-norm and 1/32-resolution CAM layer as ResNet-18, 1/16 of its FLOPs.
    """
    return _synthcxr_classifier(
        "resnet18-slim-cxr", lambda: SlimResNet18(len(FINDINGS)), {**SLIM_CONFIG, **(train_config or {})}, size, weights
    )
