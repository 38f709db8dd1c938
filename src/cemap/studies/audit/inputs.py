"""The audited images: a seeded subset of the held-out split, their labels, and the annotated findings' pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...causal.autoencoder import AEConfig, fit_autoencoder
from ...causal.masks import box_mask
from .effects import positives, predict

AE_IMAGES = 2000  # at most this many train images fit the latent autoencoder


@dataclass
class AuditInputs:
    indices: np.ndarray
    images: torch.Tensor
    labels: np.ndarray  # as the dataset gives them (N x K multi-hot, or N class indices)
    image_has_boxes: np.ndarray  # N booleans
    p0: np.ndarray  # N x K probabilities as the images are
    y: np.ndarray | None  # N x K positives
    boxes_by_finding: list[list[torch.Tensor]] | None  # image i, finding k -> its boxes
    findings_mask: torch.Tensor | None  # N x H x W union of every annotated finding

    @property
    def has_boxes(self) -> bool:
        return self.findings_mask is not None


def audited_inputs(ctx, n_images: int) -> AuditInputs:
    test = ctx.test
    order = torch.randperm(len(test), generator=ctx.generator("audit-images")).numpy()
    indices = np.sort(order[: min(n_images, len(test))])
    batch = test.batch(indices.tolist())
    clf = ctx.classifier
    images = clf.check_images(batch.images)
    k = clf.num_classes
    labels = batch.labels.numpy()
    y = positives(labels, k) if labels.ndim == 2 or labels.dtype.kind in "iu" else None
    by_finding, mask = None, None
    if any(b.numel() for b in batch.boxes):
        h, w = images.shape[-2:]
        by_finding = [[b[bl == j] for j in range(k)] for b, bl in zip(batch.boxes, batch.box_labels)]
        mask = torch.stack([box_mask(h, w, b) for b in batch.boxes])
    has = np.array([b.numel() > 0 for b in batch.boxes])
    return AuditInputs(indices, images, labels, has, predict(clf, images), y, by_finding, mask)


def audit_autoencoder(ctx, steps: int):
    """The latent autoencoder at the classifier's default layer, fitted on (at most AE_IMAGES) train images; cached."""
    train = ctx.train
    idx = np.linspace(0, len(train) - 1, min(AE_IMAGES, len(train))).astype(int)
    images = torch.stack([train[int(i)].image for i in idx])
    return fit_autoencoder(ctx.classifier, images, config=AEConfig(steps=steps), data_key=f"{ctx.data_key}-{len(idx)}")
