"""Models trained on planted-artifact data: ``cxr-cnn-planted`` (synthcxr, 64 px) and ``mnist-cnn-planted``.

A *spurious* model is trained where the artifact predicts the target finding (``mode="spurious"``);
a *normal* model where the artifact is independent of every label (``mode="normal"``). The training
seed fixes both the network's initial weights and who gets the artifact; each (artifact, mode, seed)
is trained once on first use and cached like the built-in models. cxr-cnn trains at 64 px in under a
minute on one CPU thread (12 epochs of 2,000 images).
"""

from __future__ import annotations

from ..data.planted import synthcxr_planted, mnist5k_planted
from ..data.synthcxr import FINDINGS, GENERATOR_VERSION
from .classifier import Classifier
from .cxr_cnn import CxrCNN, cxr_classifier
from .mnist_cnn import MnistCNN, mnist_classifier
from .registry import register_model
from .training import builtin_weights

CXR_CONFIG = {"arch": "cxr-cnn-8-16-32-64-gap", "epochs": 12, "lr": 3e-3, "batch_size": 32, "max_shift": 2}
MNIST_CONFIG = {"arch": "conv32-conv64-fc256-fc10", "epochs": 8, "lr": 2e-3, "batch_size": 64, "max_shift": 0}
PLANTED_VERSION = 1  # bump when the artifacts' drawing changes, so cached models retrain


def planting(artifact: str, mode: str, seed: int, target: str | None = None) -> dict:
    """The training data's planting options for a model (the artifact's draw follows the training seed)."""
    if mode not in ("spurious", "normal"):
        from ..errors import CemapError

        raise CemapError(f"a planted model is 'spurious' or 'normal', not {mode!r}", "use mode=spurious or mode=normal")
    out = {"artifact": artifact, "mode": mode, "artifact_seed": 1000 + seed}
    return out if target is None else {**out, "target": target}


@register_model("cxr-cnn-planted")
def cxr_cnn_planted(
    artifact: str = "tag",
    mode: str = "spurious",
    seed: int = 0,
    size: int = 64,
    target: str | None = None,
    weights: str | None = None,
    train_config: dict | None = None,
) -> Classifier:
    """cxr-cnn trained on ``synthcxr-planted`` (the artifact tied to Nodule when ``mode='spurious'``) at ``size`` px."""
    plant = planting(artifact, mode, seed, target)
    config = {
        **CXR_CONFIG,
        **(train_config or {}),
        "seed": seed,
        "size": size,
        "data_version": GENERATOR_VERSION,
        "planted": plant,
        "planted_version": PLANTED_VERSION,
    }
    net = builtin_weights(
        "cxr-cnn-planted",
        lambda: CxrCNN(len(FINDINGS)),
        config,
        lambda: synthcxr_planted(split="train", size=size, **plant),
        multilabel=True,
        weights=weights,
    )
    return cxr_classifier(net, size, f"cxr-cnn-planted-{artifact}-{mode}-{seed}")


@register_model("mnist-cnn-planted")
def mnist_cnn_planted(
    artifact: str = "tag",
    mode: str = "spurious",
    seed: int = 0,
    target: str | None = None,
    weights: str | None = None,
    train_config: dict | None = None,
) -> Classifier:
    """mnist-cnn trained on ``mnist5k-planted`` (the artifact tied to the digit 3 when ``mode='spurious'``)."""
    plant = planting(artifact, mode, seed, target)
    config = {
        **MNIST_CONFIG,
        **(train_config or {}),
        "seed": seed,
        "planted": plant,
        "planted_version": PLANTED_VERSION,
    }
    net = builtin_weights(
        "mnist-cnn-planted",
        MnistCNN,
        config,
        lambda: mnist5k_planted(split="train", **plant),
        multilabel=False,
        weights=weights,
    )
    return mnist_classifier(net, f"mnist-cnn-planted-{artifact}-{mode}-{seed}")
