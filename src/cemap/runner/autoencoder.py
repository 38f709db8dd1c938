"""The run's autoencoder: fitted once (through cemap's cache) on the training split, then frozen
inside the run folder, so resumed sessions and every rank use exactly the same weights.

Rank 0 calls ``ensure_autoencoder``; all ranks then ``load_autoencoder`` from the folder.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import torch

from ..cache import load_weights
from ..causal import (
    AEConfig,
    FittedAutoencoder,
    fidelity,
    fit_autoencoder,
    restore_autoencoder,
    sized_config,
    split_classifier,
)

from ..data import get_dataset
from ..data.base import ImageDataset
from ..errors import CemapError
from ..models.classifier import Classifier
from .config import RunConfig
from .layout import RunLayout, atomic_open

FIDELITY_IMAGES = 256


def readable_images(classifier: Classifier, dataset: ImageDataset, positions: list[int]) -> tuple[torch.Tensor, int]:
    """The images at ``positions`` that can be read and fit the classifier, and how many could not."""
    images, skipped = [], 0
    for i in positions:
        try:
            images.append(classifier.check_images(dataset[i].image)[0])
        except (CemapError, OSError):
            skipped += 1
    if not images:
        raise CemapError(
            f"none of {len(positions)} images of {dataset.name or 'the dataset'} could be read",
            "check the dataset's files",
        )
    return torch.stack(images), skipped


def spread(n: int, k: int) -> list[int]:
    """``k`` positions spread evenly over ``range(n)`` (all of them when k >= n): no class-sorted bias."""
    if k >= n:
        return list(range(n))
    return np.linspace(0, n - 1, k).round().astype(int).tolist()


def ensure_autoencoder(
    layout: RunLayout, classifier: Classifier, config: RunConfig, run_data: ImageDataset, n_run: int
) -> dict:
    """Fit (or take from cache) the autoencoder and store it in the run folder, unless it is already there.

    The training images are up to ``config.ae_images`` images of ``config.ae_split`` of
    ``config.ae_dataset`` (default: the run's dataset). Returns what the manifest reports about it.
    """
    if layout.autoencoder.exists():
        return _stored(layout)["info"]
    name = config.ae_dataset or config.dataset
    options = config.dataset_options if name == config.dataset else {}
    train = get_dataset(name, split=config.ae_split, **options)
    positions = spread(len(train), config.ae_images)
    images, skipped = readable_images(classifier, train, positions)
    whole_split = not options and len(positions) == len(train) and skipped == 0
    ae_config = sized_config(len(images))
    fitted = fit_autoencoder(
        classifier,
        images,
        layer=config.layer,
        config=ae_config,
        data_key=f"{name}-{config.ae_split}" if whole_split else None,
    )
    del images
    held_out, _ = readable_images(classifier, run_data, spread(n_run, FIDELITY_IMAGES))
    info = {
        "layer": fitted.layer,
        "split_method": fitted.split.method,
        "code_channels": fitted.autoencoder.code_channels,
        "config": asdict(ae_config),
        "trained_on": {
            "dataset": name,
            "split": config.ae_split,
            "images": len(positions) - skipped,
            "unreadable": skipped,
        },
        "fidelity": fidelity(classifier, fitted, held_out).as_dict(),
    }
    with atomic_open(layout.autoencoder) as fh:
        torch.save({"state_dict": fitted.autoencoder.state_dict(), "info": info}, fh)
    return info


def _stored(layout: RunLayout) -> dict:
    """The run's autoencoder file, checked (CRCs) before it is used; a damaged one is a one-line error naming it."""
    try:
        stored = load_weights(layout.autoencoder)
        stored["info"], stored["state_dict"]
    except (CemapError, KeyError, TypeError) as exc:
        reason = exc.message if isinstance(exc, CemapError) else f"{layout.autoencoder} is not a run autoencoder file"
        raise CemapError(
            reason,
            f"delete it (rm '{layout.autoencoder}') and continue with --resume: it is fitted again from the same data "
            "and seed",
        ) from exc
    return stored


def load_autoencoder(layout: RunLayout, classifier: Classifier) -> FittedAutoencoder:
    stored = _stored(layout)
    info = stored["info"]
    param = next(classifier.parameters(), None)
    device = param.device if param is not None else "cpu"
    return restore_autoencoder(
        stored["state_dict"], split_classifier(classifier, info["layer"]), AEConfig(**info["config"]), device
    )
