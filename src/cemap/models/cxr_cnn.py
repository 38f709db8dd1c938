"""cxr-cnn: a small CNN for synthcxr with a global-average-pooled linear head, so CAM applies.

``features`` is a Sequential of four conv-BN-(max-pool)-ReLU blocks (the last ReLU, ``features.14``,
is the CAM layer: 64 channels at 1/8 resolution), then global average pooling and ``classifier``
(Linear 64 -> findings), one sigmoid per finding. Trained on first use and cached; once loaded,
each batch-norm is folded into its convolution (``features.1`` etc. become identities).
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.registry import get_dataset
from ..data.synthcxr import FINDINGS, GENERATOR_VERSION
from .classifier import Classifier
from .folding import fold_batchnorm
from .registry import register_model
from .training import builtin_weights

TRAIN_CONFIG = {"arch": "cxr-cnn-8-16-32-64-gap", "epochs": 20, "lr": 3e-3, "batch_size": 32, "max_shift": 3, "seed": 0}
CAM_LAYER = "features.14"
# the third block's output: 32 channels at 1/8 resolution, where a 16-channel code keeps per-finding decisions
DEFAULT_LAYER = "features.11"


class MaxPool2x2(nn.MaxPool2d):
    """2 x 2 max-pooling. Without autograd, a channels-last input is pooled by two elementwise maxima
    over a reshaped view of its memory: the same values, about twice as fast as the pooling kernel
    on these small feature maps (pooling was a third of cxr-cnn's forward time)."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if (
            (torch.is_grad_enabled() and x.requires_grad)
            or h % 2
            or w % 2
            or not x.is_contiguous(memory_format=torch.channels_last)
        ):
            return super().forward(x)
        rows = x.permute(0, 2, 3, 1).reshape(b, h // 2, 2, w // 2, 2 * c)  # each row of pixel pairs, channels innermost
        pairs = torch.maximum(rows[:, :, 0], rows[:, :, 1])
        return torch.maximum(pairs[..., :c], pairs[..., c:]).permute(0, 3, 1, 2)


def _block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    """conv-BN-(pool)-ReLU. Max-pool and ReLU commute exactly (both are monotone), so pooling first
    gives the same outputs and gradients as conv-BN-ReLU-pool with the ReLU on a quarter of the values."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([MaxPool2x2()] if pool else []) + [nn.ReLU()]


class CxrCNN(nn.Module):
    def __init__(self, classes: int, channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(channels, 8, True), *_block(8, 16, True), *_block(16, 32, True), *_block(32, 64, False)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))


def layer_names(net: CxrCNN) -> list[str]:
    return [f"features.{i}" for i in range(len(net.features))] + ["pool"]


@register_model("cxr-cnn", dataset="synthcxr")
def cxr_cnn(weights: str | None = None, train_config: dict | None = None, size: int = 128) -> Classifier:
    """Trained on synthcxr's train split at ``size`` px on first use (a few minutes on 2 cores); ``weights`` loads a
    state dict."""
    config = {**TRAIN_CONFIG, **(train_config or {}), "size": size, "data_version": GENERATOR_VERSION}
    net = builtin_weights(
        "cxr-cnn",
        lambda: CxrCNN(len(FINDINGS)),
        config,
        lambda: get_dataset("synthcxr", split="train", size=size),
        multilabel=True,
        weights=weights,
    )
    return cxr_classifier(net, size, "cxr-cnn")


def cxr_classifier(net: CxrCNN, size: int, name: str) -> Classifier:
    """A trained CxrCNN as the Classifier every cxr-cnn variant is (built-in, planted, permuted labels), so they
    differ only in their weights."""
    fold_batchnorm(net.features)  # frozen from here on: each batch-norm becomes part of its convolution
    return Classifier(
        net,
        class_names=FINDINGS,
        head="sigmoid",
        input_shape=(1, size, size),
        layers=layer_names(net),
        default_layer=DEFAULT_LAYER,
        cam_layer=CAM_LAYER,
        name=name,
    )
