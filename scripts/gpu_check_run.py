"""``cemap ...`` with one more model registered: ``densenet121-1ch-random``, CheXNet's architecture (DenseNet-121,
14 sigmoid findings) on one-channel images such as synthcxr's, with seeded random weights. scripts/gpu_check.py runs
``cemap run`` through it to measure throughput at ChestX-ray14's scale without any weights file.

Usage: python scripts/gpu_check_run.py run --dataset synthcxr --data-opt size=224 --model densenet121-1ch-random ...
"""

from __future__ import annotations

import sys

import torch
import torchvision
from torch import nn

from cemap.cli import main
from cemap.data.synthcxr import FINDINGS
from cemap.models.classifier import Classifier
from cemap.models.registry import register_model
from cemap.models.torchvision_models import DENSENET_LAYERS


@register_model("densenet121-1ch-random")
def densenet121_1ch_random(size: int = 224, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    net = torchvision.models.densenet121(weights=None, num_classes=len(FINDINGS))
    net.features.conv0 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return Classifier(
        net,
        list(FINDINGS),
        head="sigmoid",
        input_shape=(1, size, size),
        layers=DENSENET_LAYERS,
        default_layer="features.transition1",
        name="densenet121-1ch-random",
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
