"""Datasets with a planted artifact: synthcxr or mnist5k images, the artifact tied to one finding (or class) or not.

``mode`` says how the artifact's presence is drawn on the split:

* ``spurious``: with probability ``given_target`` on images with the target finding, ``given_other`` without
  (the artifact predicts the finding: a model can learn to cheat);
* ``normal``: with probability ``independent`` whatever the label (the artifact carries no information);
* ``flipped``: the spurious probabilities swapped (the artifact now predicts the finding's *absence*: a model that
  cheats loses here, which is how reliance is verified);
* ``added`` / ``removed``: on every image / on none.

Every image keeps its clean version and its artifact parameters, so :meth:`PlantedDataset.images` returns
any image with or without the artifact, exactly. Registered as ``synthcxr-planted`` and ``mnist5k-planted``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import CemapError
from .artifacts import ARTIFACTS, get_artifact, plant
from .base import ImageDataset, Sample
from .registry import get_dataset, register_dataset

MODES = ("spurious", "normal", "flipped", "added", "removed")
DEFAULT_TARGET = {"synthcxr": "Nodule", "mnist5k": "3"}
SPLIT_CODES = {"train": 0, "test": 1}


class PlantedDataset(ImageDataset):
    """``base`` (a built-in dataset) with ``artifact`` planted according to ``mode`` (see the module docstring).

    Args:
        split: "train" or "test".
        base: "synthcxr" or "mnist5k".
        artifact: one of :data:`cemap.data.artifacts.ARTIFACTS`.
        mode: spurious, normal, flipped, added or removed.
        target: the finding / class the artifact goes with (default: Nodule for synthcxr, 3 for mnist5k).
        given_target, given_other, independent: the presence probabilities.
        artifact_seed: seeds who gets the artifact and its parameters (a different seed = a different draw).
        **base_options: options of the base dataset (synthcxr: size, seed, n_train, n_test, ...).
    """

    def __init__(
        self,
        split: str = "test",
        base: str = "synthcxr",
        artifact: str = "tag",
        mode: str = "spurious",
        target: str | None = None,
        given_target: float = 0.9,
        given_other: float = 0.1,
        independent: float = 0.5,
        artifact_seed: int = 0,
        **base_options,
    ) -> None:
        if mode not in MODES:
            raise CemapError(f"unknown planting mode {mode!r}", f"use one of {', '.join(MODES)}")
        if base not in DEFAULT_TARGET:
            raise CemapError(
                f"artifacts are planted on synthcxr or mnist5k, not {base!r}", "use base=synthcxr or base=mnist5k"
            )
        self.base = get_dataset(base, split=split, **base_options)
        self.base_name, self.split, self.mode = base, split, mode
        self.artifact = get_artifact(artifact)
        self.class_names, self.multilabel = list(self.base.class_names), self.base.multilabel
        self.name = f"{base}-planted"
        self.target_name = str(target if target is not None else DEFAULT_TARGET[base])
        if self.target_name not in self.class_names:
            raise CemapError(
                f"target {self.target_name!r} is not a class of {base}", f"use one of {', '.join(self.class_names)}"
            )
        self.target = self.class_names.index(self.target_name)
        self.probabilities = {"given_target": given_target, "given_other": given_other, "independent": independent}
        n, size = len(self.base), self.base[0].image.shape[-1]
        rng = np.random.default_rng(
            [artifact_seed, SPLIT_CODES.get(split, 2), sorted(ARTIFACTS).index(self.artifact.name)]
        )
        self.params = self.artifact.params(n, size, rng)
        self.present = torch.from_numpy(self._draw_presence(rng.random(n)))
        self.clean = self._clean_images()

    def _draw_presence(self, u: np.ndarray) -> np.ndarray:
        has_target = self.target_mask().numpy()
        p = self.probabilities
        if self.mode == "spurious":
            prob = np.where(has_target, p["given_target"], p["given_other"])
        elif self.mode == "flipped":
            prob = np.where(has_target, p["given_other"], p["given_target"])
        elif self.mode == "normal":
            prob = np.full(len(u), p["independent"])
        else:
            prob = np.full(len(u), 1.0 if self.mode == "added" else 0.0)
        return u < prob

    def target_mask(self) -> torch.Tensor:
        """N booleans: does each image show the target finding (or belong to the target class)?"""
        labels = self.base.labels
        return labels[:, self.target] > 0 if self.multilabel else labels == self.target

    def _clean_images(self) -> torch.Tensor:
        images = getattr(self.base, "images", None)
        if images is not None and images.dtype == torch.uint8:
            return images.float() / 255.0
        if images is not None:
            return images.float()
        return torch.stack([self.base[i].image for i in range(len(self.base))])

    @property
    def labels(self) -> torch.Tensor:
        return self.base.labels

    def images(self, indices, present: bool | torch.Tensor | None = None) -> torch.Tensor:
        """Images ``indices`` with the artifact (``present=True``), without it (False) or as the split has them
        (None)."""
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long).reshape(-1)
        if present is None:
            flags = self.present[idx]
        elif isinstance(present, bool):
            flags = torch.full((len(idx),), present)
        else:
            flags = torch.as_tensor(present, dtype=torch.bool).reshape(-1)
        return plant(self.clean[idx], self.artifact, self.params[idx.numpy()], flags)

    def region(self, indices) -> torch.Tensor | None:
        """B x H x W masks of where a local artifact would sit in images ``indices`` (None for texture / global
        ones)."""
        idx = np.asarray(indices).reshape(-1)
        return self.artifact.region(self.params[idx], self.clean.shape[-1])

    def __len__(self) -> int:
        return len(self.base)

    @property
    def planted(self) -> torch.Tensor:
        """N x C x H x W: every image as the split has it (computed once)."""
        if getattr(self, "_planted", None) is None:
            self._planted = self.images(range(len(self)))
        return self._planted

    def __getitem__(self, index: int) -> Sample:
        s = self.base[index]
        image = self.planted[index]
        return Sample(
            image=image,
            labels=s.labels,
            id=f"{s.id}-{self.artifact.name}-{self.mode}",
            boxes=s.boxes,
            box_labels=s.box_labels,
        )


@register_dataset("synthcxr-planted")
def synthcxr_planted(
    split: str = "test",
    artifact: str = "tag",
    mode: str = "spurious",
    target: str | None = None,
    given_target: float = 0.9,
    given_other: float = 0.1,
    independent: float = 0.5,
    artifact_seed: int = 0,
    size: int = 64,
    seed: int = 0,
    n_train: int = 2000,
    n_test: int = 600,
) -> PlantedDataset:
    """synthcxr (64 px by default) with an artifact planted on the target finding (Nodule by default)."""
    return PlantedDataset(
        split,
        "synthcxr",
        artifact,
        mode,
        target,
        given_target,
        given_other,
        independent,
        artifact_seed,
        size=size,
        seed=seed,
        n_train=n_train,
        n_test=n_test,
    )


@register_dataset("mnist5k-planted")
def mnist5k_planted(
    split: str = "test",
    artifact: str = "tag",
    mode: str = "spurious",
    target: str | None = None,
    given_target: float = 0.9,
    given_other: float = 0.1,
    independent: float = 0.5,
    artifact_seed: int = 0,
) -> PlantedDataset:
    """mnist5k with an artifact planted on the target digit (3 by default)."""
    return PlantedDataset(
        split, "mnist5k", artifact, mode, target, given_target, given_other, independent, artifact_seed
    )
