"""torchvision architectures by name, with weights from a local file, and the CheXNet checkpoint format.

Nothing is downloaded: every network is built with ``weights=None`` and filled from the file
passed as ``weights`` (loaded with ``weights_only=True``), or left random with
``weights="random"`` (for sanity checks). ImageNet normalisation is the Classifier's
preprocess, so inputs stay in [0, 1].

CheXNet checkpoints (the widely used arnoweng/CheXNet release) hold a DataParallel-wrapped
DenseNet-121 (``module.densenet121.`` prefix) saved with old torchvision names
(``norm.1``, ``conv.1``, ...) and a ``Linear -> Sigmoid`` head; ``convert_chexnet_state_dict``
maps them onto torchvision's current names and a plain Linear head (the Classifier applies
the sigmoid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial
from typing import Sequence

import torch
from torch import nn

from ..data.nih import CHEXNET_FINDINGS
from ..errors import CemapError
from .classifier import Classifier, Normalize
from .loading import load_into, load_state_dict_file
from .preprocessing import IMAGENET_MEAN, IMAGENET_STD
from .registry import register_model

DENSENET_LAYERS = [
    "features.conv0",
    "features.pool0",
    "features.denseblock1",
    "features.transition1",
    "features.denseblock2",
    "features.transition2",
    "features.denseblock3",
    "features.transition3",
    "features.denseblock4",
    "features.norm5",
]
RESNET_LAYERS = ["conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]


@dataclass(frozen=True)
class Arch:
    # torchvision.models function, looked up when a model is built (importing cemap does not import torchvision)
    builder: str
    head: str  # state-dict prefix of the final Linear layer
    layers: list[str]
    default_layer: str  # 128-channel layers, as in the paper's notebooks, where the architecture has one
    weights_enum: str  # torchvision's weights enum, for the ImageNet category names

    def build(self, **kwargs) -> nn.Module:
        import torchvision

        return getattr(torchvision.models, self.builder)(**kwargs)

    def categories(self) -> list[str]:
        import torchvision

        return list(getattr(torchvision.models, self.weights_enum).IMAGENET1K_V1.meta["categories"])


ARCHS = {
    "densenet121": Arch("densenet121", "classifier", DENSENET_LAYERS, "features.transition1", "DenseNet121_Weights"),
    "resnet18": Arch("resnet18", "fc", RESNET_LAYERS, "layer2", "ResNet18_Weights"),
    "resnet50": Arch("resnet50", "fc", RESNET_LAYERS, "layer2", "ResNet50_Weights"),
    "vgg16": Arch(
        "vgg16",
        "classifier.6",
        [f"features.{i}" for i in range(31)] + ["avgpool", "classifier.0", "classifier.3"],
        "features.9",
        "VGG16_Weights",
    ),
}


def convert_chexnet_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CheXNet / old-torchvision DenseNet keys -> current torchvision DenseNet keys (plain state dicts pass
    unchanged)."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^module\.", "", key)
        key = re.sub(r"^densenet121\.", "", key)
        key = re.sub(r"\.(norm|relu|conv)\.(\d+)\.", r".\1\2.", key)
        key = re.sub(r"^classifier\.0\.", "classifier.", key)
        out[key] = value
    return out


def _load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    load_into(net, state, source)


def _read_weights(arch: Arch, weights: str) -> tuple[dict[str, torch.Tensor], int]:
    state = convert_chexnet_state_dict(load_state_dict_file(weights))
    head = state.get(f"{arch.head}.weight")
    if head is None:
        raise CemapError(
            f"{weights} has no '{arch.head}.weight' (the classification head)",
            "is it a checkpoint of this architecture?",
        )
    return state, head.shape[0]


def torchvision_classifier(
    arch_name: str,
    weights: str | None = None,
    class_names: Sequence[str] | None = None,
    head: str = "softmax",
    size: int = 224,
    num_classes: int | None = None,
    default_layer: str | None = None,
) -> Classifier:
    """A torchvision ``arch_name`` as a Classifier on 3 x size x size images in [0, 1].

    The number of classes is read from the checkpoint's head; ``class_names`` default to the
    ImageNet categories for 1000 classes, else ``class_0 ...``.
    """
    arch = ARCHS[arch_name]
    if weights is None:
        raise CemapError(
            f"{arch_name} needs weights",
            "pass weights=<path to a state dict> (nothing is downloaded), or weights='random' for an untrained network",
        )
    state = None
    if weights != "random":
        state, num_classes = _read_weights(arch, weights)
    num_classes = num_classes or (len(class_names) if class_names else 1000)
    net = arch.build(weights=None, num_classes=num_classes)
    if state is not None:
        _load_into(net, state, weights)
    if class_names is None:
        class_names = arch.categories() if num_classes == 1000 else [f"class_{i}" for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise CemapError(f"{len(class_names)} class names for a {num_classes}-class head", "pass one name per output")
    return Classifier(
        net,
        class_names=class_names,
        head=head,
        input_shape=(3, size, size),
        preprocess=Normalize(IMAGENET_MEAN, IMAGENET_STD),
        layers=arch.layers,
        default_layer=default_layer or arch.default_layer,
        name=arch_name,
    )


for _name in ARCHS:
    register_model(_name)(partial(torchvision_classifier, _name))


@register_model("chexnet")
def chexnet(weights: str | None = None, size: int = 224, default_layer: str | None = None) -> Classifier:
    """CheXNet: DenseNet-121 with 14 ChestX-ray14 findings (sigmoid), from a CheXNet-format checkpoint or a plain state
    dict."""
    clf = torchvision_classifier(
        "densenet121",
        weights,
        class_names=CHEXNET_FINDINGS,
        head="sigmoid",
        size=size,
        num_classes=len(CHEXNET_FINDINGS),
        default_layer=default_layer,
    )
    clf.name = "chexnet"
    return clf
