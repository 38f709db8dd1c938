"""cxr-cnn: a small CNN for synthcxr with a global-average-pooled linear head, so CAM applies.

``features`` is a Sequential of four conv-BN-(max-pool)-ReLU blocks (the last ReLU, ``features.14``,
is the CAM layer: 64 channels at 1/8 resolution), then global average pooling and ``classifier``
(Linear 64 -> findings), one sigmoid per finding. Trained on first use and cached; once loaded,
each batch-norm is folded into its convolution (``features.1`` etc. become identities).
"""

from __future__ import annotations

from torch import nn

from ..data.registry import get_dataset
from ..data.synthcxr import FINDINGS, GENERATOR_VERSION
from .classifier import Classifier
from .folding import fold_batchnorm
from .registry import register_model
from .training import builtin_weights

TRAIN_CONFIG = {"arch": "cxr-cnn-8-16-32-64-gap", "epochs": 20, "lr": 3e-3, "batch_size": 32, "max_shift": 3, "seed": 0}
CAM_LAYER = "features.14"
DEFAULT_LAYER = "features.11"  # the third block's output: 32 channels at 1/8 resolution, where a 16-channel code keeps per-finding decisions


def _block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
    """conv-BN-(pool)-ReLU. Max-pool and ReLU commute exactly (both are monotone), so pooling first
    gives the same outputs and gradients as conv-BN-ReLU-pool with the ReLU on a quarter of the values."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)]
    return layers + ([nn.MaxPool2d(2)] if pool else []) + [nn.ReLU()]


class CxrCNN(nn.Module):
    def __init__(self, classes: int, channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(*_block(channels, 8, True), *_block(8, 16, True), *_block(16, 32, True), *_block(32, 64, False))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(self.flatten(self.pool(self.features(x))))


def layer_names(net: CxrCNN) -> list[str]:
    return [f"features.{i}" for i in range(len(net.features))] + ["pool"]


@register_model("cxr-cnn", dataset="synthcxr")
def cxr_cnn(weights: str | None = None, train_config: dict | None = None, size: int = 128) -> Classifier:
    """Trained on synthcxr's train split at ``size`` px on first use (a few minutes on 2 cores); ``weights`` loads a state dict."""
    config = {**TRAIN_CONFIG, **(train_config or {}), "size": size, "data_version": GENERATOR_VERSION}
    net = builtin_weights(
        "cxr-cnn", lambda: CxrCNN(len(FINDINGS)), config, lambda: get_dataset("synthcxr", split="train", size=size), multilabel=True, weights=weights
    )
    fold_batchnorm(net.features)  # frozen from here on: each batch-norm becomes part of its convolution
    return Classifier(
        net,
        class_names=FINDINGS,
        head="sigmoid",
        input_shape=(1, size, size),
        layers=layer_names(net),
        default_layer=DEFAULT_LAYER,
        cam_layer=CAM_LAYER,
        name="cxr-cnn",
    )
