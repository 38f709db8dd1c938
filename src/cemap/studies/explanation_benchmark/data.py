"""The benchmark's units: (image, finding) pairs of a synthcxr split, each with its lesions and their exact
counterfactuals.

A pair is one image and one finding it shows (target = the finding, truth = its box). Every
pair also carries the image's lesions in drawing order (footprints and findings), so the
ground-truth score can rank them, and three renders from the generator: the image without each
of its lesions (for the true effects) and without all of them (the oracle fill and the
counterfactual imputer). Intervals resample *images*: ``image_index`` labels each pair's cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...data import get_dataset
from ...data.synthcxr import SynthCXR
from ...evaluate.groundtruth import footprints
from ...evaluate.localisation import box_masks


@dataclass
class BenchPairs:
    """(image, finding) pairs with everything every metric needs; all tensors on the CPU."""

    images: torch.Tensor  # B x C x H x W
    targets: torch.Tensor  # B findings
    boxes: list[torch.Tensor]  # per pair: the target finding's boxes
    image_index: torch.Tensor  # B: the image of each pair (its cluster)
    lesion_feet: list[torch.Tensor]  # per pair: K x H x W footprints of the image's lesions (drawing order)
    without_each: list[torch.Tensor]  # per pair: K x C x H x W, the image without lesion k
    lesion_free: torch.Tensor  # B x C x H x W: the image without any lesion
    ids: list[str]

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def masks(self) -> torch.Tensor:
        """B x H x W: the target's box pixels."""
        return box_masks(tuple(self.images.shape[-2:]), self.boxes)

    @property
    def n_images(self) -> int:
        return int(torch.unique(self.image_index).numel())

    @property
    def several(self) -> torch.Tensor:
        """B booleans: the pair's image has two or more lesions (the ground-truth score is defined)."""
        return torch.tensor([len(f) >= 2 for f in self.lesion_feet])

    def take(self, n: int) -> "BenchPairs":
        """The first ``n`` pairs."""
        return self.select(torch.arange(min(n, len(self))))

    def select(self, idx: torch.Tensor) -> "BenchPairs":
        i = idx.tolist()
        return BenchPairs(
            self.images[idx],
            self.targets[idx],
            [self.boxes[k] for k in i],
            self.image_index[idx],
            [self.lesion_feet[k] for k in i],
            [self.without_each[k] for k in i],
            self.lesion_free[idx],
            [self.ids[k] for k in i],
        )


def choose_images(dataset: SynthCXR, n_images: int, seed: int) -> list[int]:
    """A seeded random subset of ``n_images`` images with at least one lesion (all of them when there are fewer),
    sorted."""
    eligible = [i for i in range(len(dataset)) if len(dataset.lesions(i)[0])]
    if n_images < len(eligible):
        order = torch.randperm(len(eligible), generator=torch.Generator().manual_seed(seed))[:n_images]
        eligible = sorted(eligible[int(k)] for k in order)
    return eligible


def bench_pairs(dataset: SynthCXR, n_images: int, seed: int = 0) -> BenchPairs:
    """Every (image, finding) pair of ``n_images`` seeded images of ``dataset`` with their lesions and counterfactual
    renders."""
    chosen = choose_images(dataset, n_images, seed)
    requests, owners = [], []
    for i in chosen:
        k = len(dataset.lesions(i)[0])
        requests += [(i, (j,)) for j in range(k)] + [(i, tuple(range(k)))]
        owners.append((i, k))
    renders = dataset.without(requests)
    h, w = dataset.size, dataset.size
    images, targets, boxes, index, feet, each, free, ids = [], [], [], [], [], [], [], []
    at = 0
    for i, k in owners:
        sample = dataset[i]
        lesion_boxes, findings = dataset.lesions(i)
        image_feet = footprints(lesion_boxes, h, w)
        image_each, image_free = renders[at : at + k], renders[at + k]
        at += k + 1
        for f in torch.unique(findings).tolist():
            images.append(sample.image), targets.append(f), boxes.append(lesion_boxes[findings == f]), index.append(i)
            feet.append(image_feet), each.append(image_each), free.append(image_free)
            ids.append(f"{sample.id}/{dataset.class_names[f]}")
    return BenchPairs(
        torch.stack(images), torch.tensor(targets), boxes, torch.tensor(index), feet, each, torch.stack(free), ids
    )


def heldout_split(size: int, seed: int) -> SynthCXR:
    """The held-out test split: synthcxr's test anatomy drawn from a generator seed used for nothing else."""
    return get_dataset("synthcxr", split="test", seed=seed, size=size)


def tuning_split(size: int, seed: int) -> SynthCXR:
    """The validation split every choice is made on: drawn like train (train anatomy, its own stream), never trained
    on."""
    return get_dataset("synthcxr", split="val", seed=seed, size=size)
