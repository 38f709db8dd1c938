"""mnist-cnn: the notebooks' conv32-conv64-fc256-fc10 network, trained on mnist5k's train split."""

from __future__ import annotations

from torch import nn

from ..data.registry import get_dataset
from .classifier import Classifier
from .registry import register_model
from .training import builtin_weights

TRAIN_CONFIG = {
    "arch": "conv32-conv64-fc256-fc10",
    "epochs": 12,
    "lr": 2e-3,
    "batch_size": 64,
    "max_shift": 2,
    "seed": 0,
}


class MnistCNN(nn.Module):
    """Every step is a named module so any of them can be the intervention layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.drop1 = nn.Dropout(0.25)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(64 * 12 * 12, 256)
        self.relu3 = nn.ReLU()
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x):
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        x = self.flatten(self.drop1(self.pool(x)))
        return self.fc2(self.drop2(self.relu3(self.fc1(x))))


@register_model("mnist-cnn", dataset="mnist5k")
def mnist_cnn(weights: str | None = None, train_config: dict | None = None) -> Classifier:
    """Trained on first use (about a minute on 2 cores) and cached; ``weights`` loads a state dict instead."""
    config = {**TRAIN_CONFIG, **(train_config or {})}
    net = builtin_weights(
        "mnist-cnn", MnistCNN, config, lambda: get_dataset("mnist5k", split="train"), multilabel=False, weights=weights
    )
    return mnist_classifier(net, "mnist-cnn")


def mnist_classifier(net: MnistCNN, name: str) -> Classifier:
    """A trained MnistCNN as the Classifier every mnist-cnn variant is (built-in, planted)."""
    return Classifier(
        net,
        class_names=[str(d) for d in range(10)],
        head="softmax",
        input_shape=(1, 28, 28),
        layers=["conv1", "relu1", "conv2", "relu2", "pool", "fc1", "relu3"],
        default_layer="relu1",
        name=name,
    )
