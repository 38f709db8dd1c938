"""Global interventions do(X = T_s(x)): a transform of the whole image at a strength s, beside the pixel masks.

Where a pixel mask asks "does this region matter?", a global intervention asks "does this property of the
whole image matter?" - its sharpness, contrast, brightness, noise level, compression, orientation, border or
framing, which scanners, hospitals and pipelines change without changing the disease. Every transform takes
and returns B x C x H x W images in [0, 1] (clipped) and is deterministic for a given ``generator``.

Strengths are in pixels of a 64-pixel image where they are lengths (blur, border) and scale with the image side,
so "blur 1.0" means the same relative blur at 28, 64 or 224 px. The battery is general: it is the list of what
acquisition changes, not a list of any planted artifact.

* Transforms (:func:`battery`) run at fixed strengths (:data:`FULL_STRENGTHS`: mild, medium and strong per
  direction), set before any audit was scored. They measure robustness to a new acquisition, and a model trained on
  clean data can be fragile to all of them whether or not it learnt a shortcut.
* Exchanges (:func:`exchanges`) swap one property - the fine or mid spatial-frequency texture, or the intensity
  histogram - from another image of the audited data. They stay within the variation the data already show, where a
  model that learnt the findings has no reason to change its mind, while a model that learnt a property tied to a
  finding (a scanner's sharpness, noise or contrast, a grid's lines) does.

``restrict(original, transformed, keep)`` keeps the pixels of ``keep`` (e.g. the annotated findings) from the
original: the intervention then changes everything *but* the findings.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CemapError
from .masks import gaussian_blur

REFERENCE_SIZE = 64


def _px(value: float, images: torch.Tensor) -> float:
    return value * images.shape[-1] / REFERENCE_SIZE


def blur(images: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    return gaussian_blur(images, max(0.2, _px(sigma, images))).clamp(0, 1)


def sharpen(images: torch.Tensor, amount: float, generator=None) -> torch.Tensor:
    """Unsharp masking: x + amount * (x - blur(x, 1 px))."""
    return (images + amount * (images - gaussian_blur(images, max(0.3, _px(1.0, images))))).clamp(0, 1)


def contrast(images: torch.Tensor, factor: float, generator=None) -> torch.Tensor:
    """Contrast scaled by ``factor`` around each image's mean grey level (< 1 flatter, > 1 harder)."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return (mean + factor * (images - mean)).clamp(0, 1)


def brightness(images: torch.Tensor, shift: float, generator=None) -> torch.Tensor:
    return (images + shift).clamp(0, 1)


def noise(images: torch.Tensor, sigma: float, generator=None) -> torch.Tensor:
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    return (images + sigma * torch.randn(images.shape, generator=g).to(images)).clamp(0, 1)


def jpeg(images: torch.Tensor, quality: float, generator=None) -> torch.Tensor:
    """JPEG compression at ``quality`` (Pillow), decoded back to [0, 1]."""
    from PIL import Image

    out = []
    for img in images.detach().cpu():
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=int(quality))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0
        out.append(torch.from_numpy(back.reshape(arr.shape)).permute(2, 0, 1))
    return torch.stack(out).to(images)


def hflip(images: torch.Tensor, strength: float = 1.0, generator=None) -> torch.Tensor:
    return images.flip(-1)


def vflip(images: torch.Tensor, strength: float = 1.0, generator=None) -> torch.Tensor:
    return images.flip(-2)


def border(images: torch.Tensor, width: float, generator=None) -> torch.Tensor:
    """A black frame ``width`` px wide (at 64 px) around the image, as a collimator or a pasted border leaves."""
    w = max(1, round(_px(width, images)))
    out = images.clone()
    out[..., :w, :] = 0
    out[..., -w:, :] = 0
    out[..., :, :w] = 0
    out[..., :, -w:] = 0
    return out


def crop(images: torch.Tensor, keep: float, generator=None) -> torch.Tensor:
    """The central ``keep`` fraction of the image, resized back to the full size (a tighter field of view)."""
    h, w = images.shape[-2:]
    ch, cw = max(2, round(h * keep)), max(2, round(w * keep))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    return F.interpolate(
        images[..., y0 : y0 + ch, x0 : x0 + cw], size=(h, w), mode="bilinear", align_corners=False
    ).clamp(0, 1)


TRANSFORMS: dict[str, Callable[..., torch.Tensor]] = {
    "blur": blur,
    "sharpen": sharpen,
    "contrast": contrast,
    "brightness": brightness,
    "noise": noise,
    "jpeg": jpeg,
    "hflip": hflip,
    "vflip": vflip,
    "border": border,
    "crop": crop,
}
GEOMETRIC = ("hflip", "vflip", "crop")  # they move the findings: never restricted to "outside the findings"

# (mild, medium, strong) per direction; fixed in advance, the same for every model and dataset
FULL_STRENGTHS: dict[str, tuple[float, ...]] = {
    "blur": (0.5, 1.0, 2.0),
    "sharpen": (0.5, 1.0, 2.0),
    "contrast": (0.9, 0.75, 0.5, 1.1, 1.25, 1.5),
    "brightness": (-0.03, -0.07, -0.15, 0.03, 0.07, 0.15),
    "noise": (0.01, 0.03, 0.06),
    "jpeg": (90, 60, 30),
    "hflip": (1,),
    "vflip": (1,),
    "border": (2, 4, 8),
    "crop": (0.95, 0.9, 0.8),
}
QUICK_STRENGTHS: dict[str, tuple[float, ...]] = {
    "blur": (1.0,),
    "sharpen": (1.0,),
    "contrast": (0.75, 1.25),
    "brightness": (-0.07, 0.07),
    "noise": (0.03,),
    "jpeg": (50,),
    "hflip": (1,),
    "border": (4,),
    "crop": (0.9,),
}


@dataclass(frozen=True)
class GlobalIntervention:
    """do(X = T(x)) with transform ``kind`` at ``strength``; ``__call__(images, generator)`` applies it."""

    kind: str
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in TRANSFORMS:
            raise CemapError(f"unknown global intervention {self.kind!r}", f"use one of {', '.join(TRANSFORMS)}")

    @property
    def geometric(self) -> bool:
        return self.kind in GEOMETRIC

    @property
    def name(self) -> str:
        return self.kind if self.kind in ("hflip", "vflip") else f"{self.kind} {self.strength:g}"

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return TRANSFORMS[self.kind](images, self.strength, generator)


def battery(quick: bool = False, kinds: tuple[str, ...] | None = None) -> list[GlobalIntervention]:
    """The audit's global transforms: every kind at its strengths (fewer with ``quick``)."""
    table = QUICK_STRENGTHS if quick else FULL_STRENGTHS
    return [
        GlobalIntervention(k, s) for k, strengths in table.items() if kinds is None or k in kinds for s in strengths
    ]


def _band(images: torch.Tensor, fine: float, coarse: float | None) -> torch.Tensor:
    """The spatial-frequency band between Gaussian scales ``fine`` and ``coarse`` (px at 64 px; fine 0 = the pixels)."""
    low = images if fine <= 0 else gaussian_blur(images, max(0.3, _px(fine, images)))
    return low - (gaussian_blur(images, max(0.3, _px(coarse, images))) if coarse else 0)


def band_swap(images: torch.Tensor, donors: torch.Tensor, fine: float, coarse: float) -> torch.Tensor:
    """Each image with its band between scales ``fine`` and ``coarse`` replaced by its donor's."""
    return (images - _band(images, fine, coarse) + _band(donors, fine, coarse)).clamp(0, 1)


def histogram_swap(images: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """Each image's grey levels replaced, rank for rank, by its donor's (exact histogram matching): the donor's
    contrast, brightness and tone curve, the image's own structure."""
    b = images.shape[0]
    flat, donor = images.reshape(b, -1), donors.reshape(b, -1)
    out = torch.empty_like(flat)
    out.scatter_(1, flat.argsort(dim=1, stable=True), donor.sort(1).values)
    return out.reshape(images.shape)


def level_swap(images: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
    """Each image's mean grey level and contrast (standard deviation) set to its donor's, per channel: an affine
    exchange that keeps the image's own tone curve (what a scanner's exposure and window change)."""
    dims = (2, 3)
    mu, sd = images.mean(dims, keepdim=True), images.std(dims, keepdim=True).clamp_min(1e-6)
    return ((images - mu) / sd * donors.std(dims, keepdim=True) + donors.mean(dims, keepdim=True)).clamp(0, 1)


# Exchanges: do(property(x) = property(x')) with x' another image of the audited data. The intervened image keeps
# everything but one property, which it takes from a real image: the intervention stays in the data's distribution.
SWAPS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "fine texture": lambda x, d: band_swap(x, d, 0.0, 1.0),  # noise, sharpness, thin lines, compression
    "mid texture": lambda x, d: band_swap(x, d, 1.0, 3.0),  # blur at a larger scale, coarse patterns
    "brightness and contrast": level_swap,  # exposure and window: mean and spread of the grey levels
}


@dataclass(frozen=True)
class Exchange:
    """Swap one property (``kind``, a key of :data:`SWAPS`) from a donor image into each image."""

    kind: str

    @property
    def name(self) -> str:
        return f"{self.kind} from another image"

    def __call__(self, images: torch.Tensor, donors: torch.Tensor) -> torch.Tensor:
        return SWAPS[self.kind](images, donors)


def exchanges() -> list[Exchange]:
    return [Exchange(k) for k in SWAPS]


def parse_intervention(text: str) -> GlobalIntervention:
    """``"blur 1.5"``, ``"blur=1.5"`` or ``"hflip"`` -> a GlobalIntervention (what a user names in known-artifact
    mode)."""
    kind, _, value = text.replace("=", " ").strip().partition(" ")
    if kind in ("hflip", "vflip") and not value.strip():
        return GlobalIntervention(kind, 1.0)
    try:
        return GlobalIntervention(kind, float(value))
    except ValueError as exc:
        raise CemapError(
            f"bad intervention {text!r}",
            "write a transform and its strength, e.g. 'blur 1.5' or 'contrast 0.8'; transforms: "
            f"{', '.join(TRANSFORMS)}",
        ) from exc


def restrict(original: torch.Tensor, transformed: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``transformed`` everywhere except where ``keep`` (B x H x W booleans) is True, where ``original`` stays."""
    return torch.where(keep[:, None].to(original.device), original, transformed)
