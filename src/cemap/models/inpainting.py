"""A small inpainting network for synthcxr: the realistic, in-distribution fill of a CE map (Chang et al.'s FIDO, ICLR
2019).

A masked region is filled from its context by a U-Net-like convolutional network that sees a
crop of ``size // 2`` pixels around the region (the masked pixels zeroed, plus the mask as a
second channel) and predicts the grey levels under the mask. It is trained on synthcxr's *train*
split only - the images the classifiers learn from; nothing of the validation or held-out splits
- with random square holes, by an L1 loss on the hole. The exact lesion-free counterfactual
(:meth:`cemap.data.synthcxr.SynthCXR.without`) is the fill's limit; this network is what a user
without a generator can have.

Trained on first use and cached like the built-in classifiers (:func:`get_inpainter`).
"""

from __future__ import annotations

from typing import Callable

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..data.synthcxr import GENERATOR_VERSION
from ..progress import progress_bar
from .training import cached_weights, optimiser_step, seeded_init

log = logging.getLogger(__name__)

TRAIN_CONFIG = {
    "arch": "inpaint-unet-16-32",
    "steps": 3000,
    "batch_size": 64,
    "lr": 2e-3,
    "seed": 0,
    "hole": [1 / 16, 1 / 4],
}


class InpaintNet(nn.Module):
    """(masked crop, mask) -> crop: two stride-2 stages, two dilated convolutions, two upsampling stages with a skip."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.inp = nn.Sequential(nn.Conv2d(2, w, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, stride=2, padding=1),
            nn.ReLU(),
        )
        self.context = nn.Sequential(
            nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=4, dilation=4),
            nn.ReLU(),
        )
        self.up1 = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU())
        self.up2 = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 1, 3, padding=1))

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """image: N x 1 x S x S in [0, 1], mask: N x 1 x S x S bool (True = to fill); S a multiple of 4. Returns N x 1 x
        S x S."""
        m = mask.float()
        first = self.inp(torch.cat([image * (1 - m), m], 1))
        x = self.context(self.down(first))
        x = self.up1(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = self.up2(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), first], 1))
        return torch.sigmoid(x)


def crop_side(size: int) -> int:
    """The context crop: half the image side, a multiple of 4 (two stride-2 stages)."""
    return max(8, (size // 2) // 4 * 4)


def crop_origins(masks: torch.Tensor, side: int) -> torch.Tensor:
    """M x 2 (y0, x0): a ``side``-square crop centred on each mask's bounding box, moved inside the image."""
    h, w = masks.shape[-2:]
    rows, cols = masks.any(2), masks.any(1)
    idx_h, idx_w = torch.arange(h), torch.arange(w)
    y0 = torch.where(rows, idx_h, h).min(1).values
    y1 = torch.where(rows, idx_h, -1).max(1).values + 1
    x0 = torch.where(cols, idx_w, w).min(1).values
    x1 = torch.where(cols, idx_w, -1).max(1).values + 1
    cy = torch.div(y0 + y1, 2, rounding_mode="floor")
    cx = torch.div(x0 + x1, 2, rounding_mode="floor")
    return torch.stack([(cy - side // 2).clamp(0, h - side), (cx - side // 2).clamp(0, w - side)], 1)


def _crop_index(origins: torch.Tensor, side: int, width: int) -> torch.Tensor:
    """N x side*side flat pixel indices of each crop."""
    r = torch.arange(side)
    rows = origins[:, 0, None, None] + r[None, :, None]
    cols = origins[:, 1, None, None] + r[None, None, :]
    return (rows * width + cols).reshape(len(origins), -1)


class Inpainter:
    """``fill(images, masks)`` -> images with the masked pixels inpainted from their context (others unchanged).

    Masks whose bounding box does not fit the crop are refused (CE cells and lesion boxes of
    synthcxr fit: they are at most a fifth of the image side).
    """

    def __init__(self, net: InpaintNet, size: int) -> None:
        self.net, self.size, self.side = net.eval(), size, crop_side(size)
        for p in self.net.parameters():
            p.requires_grad_(False)

    @torch.inference_mode()
    def fill(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """images: N x 1 x H x W in [0, 1]; masks: N x H x W bool. Returns N x 1 x H x W."""
        n, c, h, w = images.shape
        if c != 1 or (h, w) != (self.size, self.size):
            raise ValueError(f"the inpainter takes 1 x {self.size} x {self.size} images, got {tuple(images.shape[1:])}")
        origins = crop_origins(masks, self.side)
        index = _crop_index(origins, self.side, w)
        flat_img, flat_mask = images.reshape(n, -1), masks.reshape(n, -1)
        crop = flat_img.gather(1, index).reshape(n, 1, self.side, self.side)
        crop_mask = flat_mask.gather(1, index).reshape(n, 1, self.side, self.side)
        if int(crop_mask.sum()) != int(masks.sum()):
            raise ValueError(f"a mask does not fit the inpainter's {self.side}-pixel context crop")
        out = torch.where(crop_mask, self.net(crop, crop_mask), crop).reshape(n, -1)
        return flat_img.scatter(1, index, out).reshape(images.shape)


def random_holes(n: int, side: int, lo: float, hi: float, size: int, generator: torch.Generator) -> torch.Tensor:
    """n x side x side masks, each one square hole of side uniform in [lo, hi] x ``size`` at a random place in the
    crop."""
    sides = (lo * size + torch.rand(n, generator=generator) * (hi - lo) * size).round().long().clamp(2, side)
    y = (torch.rand(n, generator=generator) * (side - sides + 1)).floor().long()
    x = (torch.rand(n, generator=generator) * (side - sides + 1)).floor().long()
    r = torch.arange(side)
    rows = (r[None] >= y[:, None]) & (r[None] < (y + sides)[:, None])
    cols = (r[None] >= x[:, None]) & (r[None] < (x + sides)[:, None])
    return rows[:, :, None] & cols[:, None, :]


def fit_inpainter(net: InpaintNet, images: torch.Tensor, config: dict) -> InpaintNet:
    """Train on random crops of ``images`` (N x 1 x S x S train images) with random square holes; L1 on the hole."""
    g = torch.Generator().manual_seed(config["seed"])
    size, side = images.shape[-1], crop_side(images.shape[-1])
    opt = torch.optim.Adam(net.parameters(), lr=config["lr"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config["lr"], total_steps=config["steps"])
    bar = progress_bar(config["steps"], "training the synthcxr inpainter", unit="step", leave=False)
    net.train()
    for _ in range(config["steps"]):
        b = config["batch_size"]
        pick = torch.randint(0, len(images), (b,), generator=g)
        oy = torch.randint(0, size - side + 1, (b,), generator=g)
        ox = torch.randint(0, size - side + 1, (b,), generator=g)
        index = _crop_index(torch.stack([oy, ox], 1), side, size)
        crops = images[pick].reshape(b, -1).gather(1, index).reshape(b, 1, side, side)
        holes = random_holes(b, side, *config["hole"], size, g)[:, None]
        pred = net(crops, holes)
        loss = ((pred - crops).abs() * holes).sum() / holes.sum().clamp_min(1)
        optimiser_step(opt, sched, loss, bar)
    bar.close()
    return net.eval()


def get_inpainter(size: int, train_config: dict | None = None) -> Inpainter:
    """The synthcxr inpainter for ``size``-pixel images, trained on synthcxr's seed-0 train split on first use
    (cached)."""
    from ..data import get_dataset
    from ..data.base import stack_images

    config = {**TRAIN_CONFIG, **(train_config or {}), "size": size, "data_version": GENERATOR_VERSION}
    net = seeded_init(InpaintNet, config["seed"])

    def train(n: InpaintNet) -> InpaintNet:
        log.info("training the synthcxr inpainter at %d px (first use)", size)
        return fit_inpainter(n, stack_images(get_dataset("synthcxr", split="train", size=size)), config)

    return Inpainter(cached_weights("synthcxr-inpainter", config, net, train), size)


@torch.inference_mode()
def inpainting_error(
    inpainter: Inpainter,
    images: torch.Tensor,
    reference_fill: Callable[[torch.Tensor], torch.Tensor],
    n_holes: int = 256,
    seed: int = 1,
) -> dict:
    """Mean absolute error on random holes of ``images`` (e.g. validation images): the inpainter against
    ``reference_fill`` (images -> filled images, e.g. the CE maps' blur), so the benchmark can say whether it pays."""
    g = torch.Generator().manual_seed(seed)
    size, side = images.shape[-1], inpainter.side
    pick = torch.randint(0, len(images), (n_holes,), generator=g)
    holes = random_holes(n_holes, side, *TRAIN_CONFIG["hole"], size, g)
    oy = torch.randint(0, size - side + 1, (n_holes,), generator=g)
    ox = torch.randint(0, size - side + 1, (n_holes,), generator=g)
    masks = torch.zeros(n_holes, size, size, dtype=torch.bool)
    masks.reshape(n_holes, -1).scatter_(
        1, _crop_index(torch.stack([oy, ox], 1), side, size), holes.reshape(n_holes, -1)
    )
    x = images[pick]
    filled = inpainter.fill(x, masks)
    blurred = reference_fill(x)
    m = masks[:, None]
    err = lambda y: float(((y - x).abs() * m).sum() / m.sum())  # noqa: E731
    return {"n_holes": n_holes, "mae_inpainter": err(filled), "mae_blur": err(torch.where(m, blurred, x))}
