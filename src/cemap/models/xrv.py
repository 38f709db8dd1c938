"""torchxrayvision models by name (``xrv-densenet121-res224-all``, ...), from weights already on disk.

torchxrayvision keeps its weights under ``~/.torchxrayvision/models_data/`` and downloads
them when missing; cemap never downloads, so a missing file is a CemapError naming the exact
path to put it at. The adapter

* maps cemap's [0, 1] pixels to torchxrayvision's [-1024, 1024] in the Classifier's preprocess
  (one grayscale channel, ``input_resolution`` pixels, no silent resizing);
* returns **logits**: torchxrayvision's forward applies a sigmoid and, with ``op_threshs``, a
  piecewise-linear "operating point" rescaling; both are stripped. By default the
  probabilities are the plain sigmoid of the logits - the network's own estimate, which is
  what CEs are differences of. ``operating_point=True`` instead returns the logit of
  torchxrayvision's rescaled output, so that 0.5 is each finding's calibrated operating point
  (findings without a threshold are unchanged).
* names unused outputs (empty labels in torchxrayvision) ``unused_<i>``.

Weights files are read with ``weights_only=True``: a plain state dict, or torchxrayvision's own
release files (pickled whole modules), which are unpickled with an allowlist of exactly the
torchxrayvision and torch.nn classes a DenseNet/ResNet is made of - never arbitrary code.
"""

from __future__ import annotations

import os
import warnings
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CemapError
from .classifier import Classifier
from .loading import load_state_dict_file
from .registry import register_model_family
from .torchvision_models import DENSENET_LAYERS, RESNET_LAYERS

XRV_RANGE = 1024.0


def _xrv():
    """torchxrayvision, imported on first use; its import-time ``warnings.filterwarnings("ignore")`` is undone."""
    with warnings.catch_warnings():
        import torchxrayvision

    return torchxrayvision


def xrv_weight_names() -> list[str]:
    """torchxrayvision's classifier weights with an explicit architecture in the name."""
    return [k for k in _xrv().models.model_urls if k.startswith(("densenet121-", "resnet50-"))]


def expected_path(weights: str) -> Path:
    """Where torchxrayvision looks for (and would download) the file of ``weights``."""
    url = _xrv().models.model_urls[weights]["weights_url"]
    return Path(os.path.expanduser(os.path.join(_xrv().utils.get_cache_dir(), os.path.basename(url))))


class ToXrvRange(nn.Module):
    """[0, 1] -> [-1024, 1024], torchxrayvision's input convention."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (2 * XRV_RANGE) - XRV_RANGE


class OperatingPointLogits(nn.Module):
    """logit(op_norm(sigmoid(z))): torchxrayvision's operating-point rescaling, expressed as logits."""

    def __init__(self, op_threshs: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("op_threshs", op_threshs.float())

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        t = torch.nan_to_num(self.op_threshs, nan=0.5)  # a 0.5 threshold maps p to itself
        q = torch.where(p < t, p / (2 * t), 1 - (1 - p) / (2 * (1 - t)))
        return torch.logit(q, eps=1e-7)


class XrvDenseNetLogits(nn.Module):
    """torchxrayvision's DenseNet without its resize check, sigmoid and op_norm; same module names (features.*,
    classifier)."""

    def __init__(self, net: nn.Module, op_head: nn.Module | None = None) -> None:
        super().__init__()
        self.features, self.classifier = net.features, net.classifier
        self.op_head = op_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1))
        return self.op_head(logits) if self.op_head is not None else logits


class XrvResNetLogits(nn.Module):
    """torchxrayvision's ResNet is a one-channel torchvision ResNet (its ``.model``); its module names stay at the top
    level."""

    def __init__(self, resnet: nn.Module, op_head: nn.Module | None = None) -> None:
        super().__init__()
        for name, child in resnet.named_children():
            self.add_module(name, child)
        self.op_head = op_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.avgpool(self.layer4(self.layer3(self.layer2(self.layer1(x))))).flatten(1)
        logits = self.fc(x)
        return self.op_head(logits) if self.op_head is not None else logits


def _allowed_classes() -> list:
    import torchvision

    xrv = _xrv()
    m = xrv.models
    return [
        m.DenseNet,
        m._DenseBlock,
        m._DenseLayer,
        m._Transition,
        m.ResNet,
        torchvision.models.ResNet,
        torchvision.models.resnet.Bottleneck,
        nn.Conv2d,
        nn.BatchNorm2d,
        nn.ReLU,
        nn.MaxPool2d,
        nn.AvgPool2d,
        nn.AdaptiveAvgPool2d,
        nn.Linear,
        nn.Sequential,
        nn.ModuleDict,
        torch.nn.parameter.Parameter,
        set,
    ]


def read_xrv_weights(path: Path) -> dict[str, torch.Tensor]:
    """State dict from a plain state dict file or a torchxrayvision release file, both weights-only."""
    return load_state_dict_file(path, allowed=_allowed_classes())


def xrv_classifier(weights: str, operating_point: bool = False, default_layer: str | None = None) -> Classifier:
    """torchxrayvision model ``weights`` (e.g. 'densenet121-res224-all') as a Classifier on 1 x R x R images in [0,
    1]."""
    xrv = _xrv()
    info = xrv.models.model_urls[weights]
    path = expected_path(weights)
    if not path.is_file():
        raise CemapError(
            f"torchxrayvision weights for {weights} not found at {path}",
            f"cemap does not download; fetch {info['weights_url']} and save it at that path",
        )
    labels = list(info["labels"])
    op_head = (
        OperatingPointLogits(torch.tensor(info["op_threshs"])) if operating_point and "op_threshs" in info else None
    )
    state = read_xrv_weights(path)
    state = {k: v for k, v in state.items() if k != "op_threshs"}
    if weights.startswith("densenet121"):
        net = xrv.models.DenseNet(weights=None, num_classes=len(labels), in_channels=1)
        model, layers, layer = XrvDenseNetLogits(net, op_head), DENSENET_LAYERS, "features.transition1"
    else:
        import torchvision

        net = torchvision.models.resnet50(weights=None, num_classes=len(labels))
        net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        state = {k.removeprefix("model."): v for k, v in state.items()}
        model, layers, layer = XrvResNetLogits(net, op_head), RESNET_LAYERS, "layer2"
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes differ
        raise CemapError(
            f"{path} does not fit torchxrayvision {weights}: {str(exc).splitlines()[1].strip()[:160]}",
            "is the file for this model?",
        ) from exc
    if missing or unexpected:
        raise CemapError(
            f"{path} does not fit torchxrayvision {weights} (missing {missing[:3]}, unexpected {unexpected[:3]})",
            "is the file for this model?",
        )
    res = info.get("input_resolution", 224)
    return Classifier(
        model.eval(),
        class_names=[lab or f"unused_{i}" for i, lab in enumerate(labels)],
        head="sigmoid",
        input_shape=(1, res, res),
        preprocess=ToXrvRange(),
        layers=layers,
        default_layer=default_layer or layer,
        name=f"xrv-{weights}",
    )


register_model_family(lambda: {f"xrv-{w}": partial(xrv_classifier, w) for w in xrv_weight_names()})
