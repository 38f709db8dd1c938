"""The benchmark's models and their reliance verification on held-out images."""

from __future__ import annotations

import numpy as np
import torch

from ...data.planted import PlantedDataset, synthcxr_planted
from ...evaluate.reliance import Verification, verify_reliance
from ...models import get_model
from ..audit.effects import predict
from .config import RelianceBenchmarkConfig


def heldout(cfg: RelianceBenchmarkConfig, artifact: str, mode: str = "normal") -> PlantedDataset:
    """The held-out test images of ``artifact``, drawn with the held-out generator seed (the same images for a spurious
    model and its normal twin): with ``mode="normal"`` the artifact is on about half of them independently of the
    labels;
    with ``mode="spurious"`` it follows Nodule as in the spurious training data (the harder case for an audit: within a
    label, few images differ in the artifact)."""
    return synthcxr_planted(
        split="test",
        artifact=artifact,
        mode=mode,
        size=cfg.size,
        seed=cfg.heldout_seed,
        artifact_seed=cfg.test_artifact_seed,
    )


def train_model(artifact: str, mode: str, seed: int, size: int):
    """cxr-cnn trained on planted data (cached: trained once per artifact, mode, seed and size)."""
    with torch.random.fork_rng():
        return get_model("cxr-cnn-planted", artifact=artifact, mode=mode, seed=seed, size=size)


def verify(classifier, data: PlantedDataset, n: int, seed: int = 0) -> Verification:
    """Reliance on the artifact: the same ``n`` held-out images with it added and removed (exactly)."""
    idx = np.arange(min(n, len(data)))
    p_with = predict(classifier, data.images(idx, True))[:, data.target]
    p_without = predict(classifier, data.images(idx, False))[:, data.target]
    return verify_reliance(p_with, p_without, data.target_mask().numpy()[idx], seed=seed)


def kept(mode: str, verification: Verification) -> bool:
    """A spurious model enters the benchmark when it verifiably relies; a normal one when it verifiably does not."""
    return verification.verdict == ("relies" if mode == "spurious" else "does not rely")
