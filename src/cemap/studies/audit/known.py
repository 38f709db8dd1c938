"""Known-artifact mode: the user names a candidate and gets its causal effect, with an interval.

A candidate is

* a global transform, written as the battery writes it (``"blur 0.7"``, ``"contrast 0.8"``, ``"hflip"``);
* a mask file (``.png`` / ``.npy``, H x W, nonzero = the candidate region, e.g. where a hospital tag sits),
  masked with the audit's fill in every image;
* ``"planted"`` on a planted-artifact dataset: every image with the artifact against the same image without it
  (exact, :mod:`cemap.data.planted`) - the same intervention that verifies reliance in the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ...causal.global_interventions import parse_intervention
from ...causal.masks import fill_images
from ...errors import CemapError
from .effects import Effect, predict, summarise


@dataclass
class Candidate:
    """``pair(images, indices) -> (before, after)``: the images without and with the intervention."""

    name: str
    pair: Callable[[torch.Tensor, np.ndarray], tuple[torch.Tensor, torch.Tensor]]
    footprint: float = 1.0


def read_mask(path: str, size: tuple[int, int]) -> torch.Tensor:
    """H x W booleans from a .npy array or an image file (resized to ``size`` by nearest neighbour)."""
    p = Path(path)
    if not p.exists():
        raise CemapError(
            f"mask file not found: {path}", "pass a .png or .npy whose nonzero pixels mark the candidate region"
        )
    if p.suffix == ".npy":
        arr = np.load(p, allow_pickle=False)
    else:
        from PIL import Image

        arr = np.asarray(Image.open(p).convert("L"))
    mask = torch.from_numpy(np.asarray(arr) != 0)
    if tuple(mask.shape) != tuple(size):
        mask = torch.nn.functional.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0] > 0.5
    return mask


def candidate(spec: str, dataset, size: tuple[int, int], fill: str = "swap", seed: int = 0) -> Candidate:
    """The Candidate a user names on the command line (see the module docstring)."""
    if spec == "planted":
        if not hasattr(dataset, "artifact"):
            raise CemapError(
                "'planted' names the artifact of a planted dataset",
                "use --dataset synthcxr-planted or mnist5k-planted, or name a transform / mask",
            )
        return Candidate(
            f"planted {dataset.artifact.name}",
            lambda images, idx: (dataset.images(idx, False), dataset.images(idx, True)),
        )
    if Path(spec).suffix in (".png", ".npy", ".jpg", ".bmp", ".tif", ".tiff"):
        mask = read_mask(spec, size)

        def masked(images, idx):
            source = (
                images.roll(1, dims=0) if fill == "swap" else fill_images(images, fill)
            )  # swap: the next audited image's pixels
            return images, torch.where(mask[None, None], source, images)

        return Candidate(f"mask {Path(spec).name}", masked, float(mask.float().mean()))
    t = parse_intervention(spec)
    return Candidate(t.name, lambda images, idx: (images, t(images, torch.Generator().manual_seed(seed))))


def known_effects(
    classifier,
    images: torch.Tensor,
    indices: np.ndarray,
    y: np.ndarray | None,
    candidates: list[Candidate],
    seed: int = 0,
) -> list[Effect]:
    """One Effect per candidate: the change from ``before`` to ``after`` on the audited images."""
    out = []
    for c in candidates:
        before, after = c.pair(images, indices)
        p_before, p_after = predict(classifier, before), predict(classifier, after)
        out.append(
            summarise(
                "known",
                c.name,
                "whole image",
                p_before,
                p_after,
                classifier.class_names,
                classifier.head,
                y,
                seed=seed,
                footprint=c.footprint,
            )
        )
    return out
