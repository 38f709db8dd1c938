"""Shared fixtures. The tests never touch the user's cache: they run in a temporary one, where the built-in
models are trained once per session and reused by every test (and by the subprocesses tests start).

``CEMAP_TEST_CACHE=DIR`` reuses a developer's warm test cache instead (never set in CI).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
import torch
from torch import nn

os.environ.setdefault("CEMAP_QUIET", "1")
_OWN_CACHE = "CEMAP_TEST_CACHE" not in os.environ
os.environ["CEMAP_CACHE"] = os.environ.get("CEMAP_TEST_CACHE") or tempfile.mkdtemp(prefix="cemap-test-cache-")


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["CEMAP_CACHE"], ignore_errors=True)


torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def mnist_clf():
    import cemap

    return cemap.get_model("mnist-cnn")


@pytest.fixture(scope="session")
def mnist_test():
    import cemap

    return cemap.get_dataset("mnist5k", split="test")


@pytest.fixture(scope="session")
def mnist_ae(mnist_clf):
    """The demo's autoencoder (same cache key as `cemap demo`)."""
    import cemap
    from cemap.data.base import stack_images

    return cemap.fit_autoencoder(
        mnist_clf, stack_images(cemap.get_dataset("mnist5k", split="train")), data_key="mnist5k-train"
    )


class TinyNet(nn.Module):
    """A small random CNN with a residual connection across the usual cut point (exercises fx extras)."""

    def __init__(self, classes: int = 4, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 8, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        a = self.act1(self.conv1(x))
        b = self.act2(self.conv2(a)) + a
        return self.fc(self.pool(b).flatten(1))


@pytest.fixture
def tiny_clf():
    import cemap

    torch.manual_seed(0)
    return cemap.Classifier(
        TinyNet(), class_names=list("abcd"), head="softmax", input_shape=(3, 16, 16), default_layer="conv2", name="tiny"
    )
