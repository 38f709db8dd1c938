"""Planted artifacts: spurious signals that can be added to, or removed from, any image exactly.

Each artifact is a deterministic function ``add(images, params) -> images`` of a clean image and
per-image parameters drawn once from a seeded generator (a position, a phase, a noise seed).
Removing an artifact returns the clean image itself, so ``remove(add(x)) == x`` bit for bit and
``add`` gives the same pixels every time it is called. Images are B x C x H x W floats in [0, 1].

The kinds (Adebayo et al., ICLR 2022; the shortcuts chest X-ray models learnt in Zech et al. 2018,
Badgeley et al. 2019, DeGrave et al. 2021):

* ``tag``: synthcxr's corner marker (a bright square ring, :func:`cemap.data.synthcxr.marker_box`);
* ``letter``: a laterality-style lead letter "R" at a varying position in one of the four corners;
* ``grid``: faint thin parallel lines every few pixels, as an anti-scatter grid leaves (a texture);
* ``blur``: a slight Gaussian blur of the whole image (not visible to the eye at this strength);
* ``contrast``: a global contrast reduction around each image's mean grey level (another scanner);
* ``noise``: a higher noise level (Gaussian, seeded per image: another detector).

Strengths are given at 64 px and scaled with the image side; ``ARTIFACTS`` is the registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .filters import gaussian_blur
from ..errors import CemapError

REFERENCE_SIZE = 64  # strengths below are in pixels of a 64-pixel image and scale with the side

# A 5 x 7 bitmap "R", the laterality marker's letter
_R = ["11110", "10001", "10001", "11110", "10100", "10010", "10001"]
LETTER = torch.tensor([[c == "1" for c in row] for row in _R], dtype=torch.bool)


@dataclass(frozen=True)
class Artifact:
    """Base: ``params`` draws per-image parameters, ``add`` plants the artifact, ``region`` says where it is."""

    name: str = ""
    kind: str = ""  # "local", "texture" or "global"
    visible: bool = True

    def params(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        """n x P float parameters (one row per image); artifacts without any have P = 1 (unused)."""
        return np.zeros((n, 1))

    def add(self, images: torch.Tensor, params: np.ndarray) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def region(self, params: np.ndarray, size: int) -> torch.Tensor | None:
        """B x H x W masks of where a local artifact sits, or None for a texture / global artifact (it is
        everywhere)."""
        return None


def _scale(size: int) -> float:
    return size / REFERENCE_SIZE


@dataclass(frozen=True)
class Tag(Artifact):
    """synthcxr's shortcut marker: a bright square ring in the top-left corner (the same box in every image)."""

    name: str = "tag"
    kind: str = "local"
    outer: float = 0.95
    inner: float = 0.35

    def box(self, size: int) -> tuple[int, int, int, int]:
        from .synthcxr import marker_box

        return tuple(int(v) for v in marker_box(size))

    def add(self, images: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        x0, y0, x1, y1 = self.box(images.shape[-1])
        out = images.clone()
        out[..., y0:y1, x0:x1] = self.outer
        t = max(1, (x1 - x0) // 4)
        out[..., y0 + t : y1 - t, x0 + t : x1 - t] = self.inner
        return out

    def region(self, params: np.ndarray, size: int) -> torch.Tensor:
        x0, y0, x1, y1 = self.box(size)
        mask = torch.zeros(len(params), size, size, dtype=torch.bool)
        mask[:, y0:y1, x0:x1] = True
        return mask


@dataclass(frozen=True)
class Letter(Artifact):
    """A bright lead letter "R" in a random corner, shifted by up to an eighth of the side (position per image)."""

    name: str = "letter"
    kind: str = "local"
    value: float = 0.92

    def _dims(self, size: int) -> tuple[int, int, int]:
        k = max(1, round(_scale(size)))
        return k, 7 * k, 5 * k  # pixel scale, height, width

    def params(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        _, h, w = self._dims(size)
        margin, jitter = max(1, size // 40), max(1, size // 8)
        corner = rng.integers(0, 4, size=n)
        dx, dy = rng.integers(0, jitter + 1, size=n), rng.integers(0, jitter + 1, size=n)
        x = np.where(corner % 2 == 0, margin + dx, size - margin - w - dx)
        y = np.where(corner < 2, margin + dy, size - margin - h - dy)
        return np.stack([x, y], 1).astype(np.float64)

    def _stamp(self, size: int) -> torch.Tensor:
        k, _, _ = self._dims(size)
        return LETTER.repeat_interleave(k, 0).repeat_interleave(k, 1)

    def add(self, images: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        stamp = self._stamp(images.shape[-1])
        h, w = stamp.shape
        out = images.clone()
        for i, (x, y) in enumerate(params.astype(np.int64)):
            patch = out[i, :, y : y + h, x : x + w]
            out[i, :, y : y + h, x : x + w] = torch.where(stamp, torch.full_like(patch, self.value), patch)
        return out

    def region(self, params: np.ndarray, size: int) -> torch.Tensor:
        _, h, w = self._dims(size)
        mask = torch.zeros(len(params), size, size, dtype=torch.bool)
        for i, (x, y) in enumerate(params.astype(np.int64)):
            mask[i, y : y + h, x : x + w] = True
        return mask


@dataclass(frozen=True)
class Grid(Artifact):
    """Faint one-pixel vertical lines every ``period`` px (at 64 px), brighter by ``amplitude``, at a random phase."""

    name: str = "grid"
    kind: str = "texture"
    visible: bool = True
    period: float = 4.0
    amplitude: float = 0.035

    def _period(self, size: int) -> int:
        return max(2, round(self.period * _scale(size)))

    def params(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, self._period(size), size=(n, 1)).astype(np.float64)

    def add(self, images: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        size, period = images.shape[-1], self._period(images.shape[-1])
        cols = torch.arange(size)
        phase = torch.from_numpy(params[:, 0].astype(np.int64))
        lines = ((cols[None] + phase[:, None]) % period == 0).to(images.dtype)  # B x W
        return (images + self.amplitude * lines[:, None, None, :]).clamp(0, 1)


@dataclass(frozen=True)
class Blur(Artifact):
    """A slight Gaussian blur of the whole image (sigma in pixels at 64 px)."""

    name: str = "blur"
    kind: str = "global"
    visible: bool = False
    sigma: float = 0.7

    def add(self, images: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        return gaussian_blur(images, max(0.3, self.sigma * _scale(images.shape[-1]))).clamp(0, 1)


@dataclass(frozen=True)
class Contrast(Artifact):
    """Global contrast scaled by ``factor`` around each image's mean grey level."""

    name: str = "contrast"
    kind: str = "global"
    visible: bool = False
    factor: float = 0.8

    def add(self, images: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        return (mean + self.factor * (images - mean)).clamp(0, 1)


@dataclass(frozen=True)
class Noise(Artifact):
    """Extra Gaussian noise of standard deviation ``sigma``, drawn from each image's own seed (so adding it is
    repeatable)."""

    name: str = "noise"
    kind: str = "global"
    visible: bool = False
    sigma: float = 0.03

    def params(self, n: int, size: int, rng: np.random.Generator) -> np.ndarray:
        return rng.integers(0, 2**31 - 1, size=(n, 1)).astype(np.float64)

    def add(self, images: torch.Tensor, params: np.ndarray) -> torch.Tensor:
        out = torch.empty_like(images)
        for i, seed in enumerate(params[:, 0].astype(np.int64)):
            g = torch.Generator().manual_seed(int(seed))
            noise = torch.randn(images.shape[1:], generator=g, dtype=torch.float32).to(images)
            out[i] = (images[i] + self.sigma * noise).clamp(0, 1)
        return out


ARTIFACTS: dict[str, Artifact] = {a.name: a for a in (Tag(), Letter(), Grid(), Blur(), Contrast(), Noise())}
NON_VISIBLE = tuple(n for n, a in ARTIFACTS.items() if not a.visible)


def get_artifact(name: str) -> Artifact:
    if name not in ARTIFACTS:
        raise CemapError(f"unknown artifact {name!r}", f"use one of {', '.join(ARTIFACTS)}")
    return ARTIFACTS[name]


def plant(
    images: torch.Tensor, artifact: Artifact, params: np.ndarray, present: torch.Tensor | np.ndarray
) -> torch.Tensor:
    """``images`` (clean) with the artifact added where ``present`` (B booleans) and untouched elsewhere."""
    present = torch.as_tensor(np.asarray(present), dtype=torch.bool)
    out = images.clone()
    idx = torch.nonzero(present).flatten()
    if len(idx):
        out[idx] = artifact.add(images[idx], params[idx.numpy()])
    return out
