"""The sample contract every dataset honours, and the batch it collates into.

Images are float tensors in [0, 1], shape C x H x W. Normalisation belongs to the
Classifier, so attacks, masks and metrics all work in this one pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch


@dataclass
class Sample:
    """One image with its labels and (optionally) ground-truth boxes.

    ``labels`` is a 0-d long tensor (single-label) or a float multi-hot vector (multi-label).
    ``boxes`` is N x 4 (x0, y0, x1, y1) in pixels of ``image``; ``box_labels`` holds the class
    index of each box.
    """

    image: torch.Tensor
    labels: torch.Tensor
    id: str
    boxes: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    box_labels: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))


@dataclass
class Batch:
    images: torch.Tensor
    labels: torch.Tensor
    ids: list[str]
    boxes: list[torch.Tensor]
    box_labels: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.ids)


def collate(samples: Sequence[Sample]) -> Batch:
    """DataLoader collate_fn: stack images and labels, keep boxes as per-image lists."""
    return Batch(
        images=torch.stack([s.image for s in samples]),
        labels=torch.stack([s.labels for s in samples]),
        ids=[s.id for s in samples],
        boxes=[s.boxes for s in samples],
        box_labels=[s.box_labels for s in samples],
    )


@dataclass(frozen=True)
class AttackBudgets:
    """The adversarial settings customary for a kind of image, declared by its dataset.

    ``linf``: the standard low and high L-inf budgets (8-bit images: 2/255 and 8/255; MNIST: 0.1 and 0.3), written
    as "8/255" where ``in_255ths`` else as plain numbers. ``squeeze_bits`` / ``squeeze_median``: feature squeezing's
    bit depths and median-filter sizes (Xu et al.). ``cw``: C&W-L2's first c and Adam step (the step counts are the
    study's).
    """

    linf: tuple[float, float] = (2 / 255, 8 / 255)
    in_255ths: bool = True
    squeeze_bits: tuple[int, ...] = (5,)
    squeeze_median: tuple[int, ...] = (2,)
    # C&W on 8-bit radiographs (cxr-cnn): c = 1 and lr 0.05 stop at a median margin of -2.8 logits and 10x the L2 of
    # c = 0.1, lr 0.02, 30 steps x 4 searches (margin -0.26: converged).
    cw: tuple[tuple[str, float], ...] = (("c", 0.1), ("lr", 0.02))

    def label(self, eps: float) -> str:
        """A budget as the literature writes it: ``8/255``, or ``0.3``."""
        return f"{round(eps * 255)}/255" if self.in_255ths else f"{eps:.3g}"

    @property
    def squeezers(self) -> dict:
        return {"bits": self.squeeze_bits, "median_sizes": self.squeeze_median}


class ImageDataset(torch.utils.data.Dataset):
    """Base class: subclasses set ``class_names`` and ``multilabel`` and implement __getitem__.

    A dataset also declares what the studies need to know about its images: ``attack_budgets`` (the customary
    adversarial settings) and ``region_kind``, what a latent-controls study masks in an image without boxes:
    "strokes" (bright strokes on a dark background, such as digits) or None (nothing; images with boxes mask
    their boxes).
    """

    class_names: list[str]
    multilabel: bool = False
    name: str = ""
    attack_budgets: AttackBudgets = AttackBudgets()
    region_kind: str | None = None

    def __len__(self) -> int:  # pragma: no cover - subclasses implement
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:  # pragma: no cover - subclasses implement
        raise NotImplementedError

    def batch(self, indices: Sequence[int]) -> Batch:
        return collate([self[i] for i in indices])

    def loader(self, batch_size: int = 64, shuffle: bool = False, seed: int = 0) -> torch.utils.data.DataLoader:
        gen = torch.Generator().manual_seed(seed)
        return torch.utils.data.DataLoader(
            self, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=gen
        )


def stack_images(dataset: ImageDataset, limit: int | None = None) -> torch.Tensor:
    """All (or the first ``limit``) images of a dataset as one N x C x H x W tensor."""
    n = len(dataset) if limit is None else min(limit, len(dataset))
    return torch.stack([dataset[i].image for i in range(n)])
