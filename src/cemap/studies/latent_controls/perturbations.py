"""Perturbations of the same size as an attack's: the controls of the adversarial experiment."""

from __future__ import annotations

import torch

from ...causal.masks import gaussian_blur

BLUR_SIGMAS = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8)


def sign_noise(x: torch.Tensor, eps: float, gen: torch.Generator) -> torch.Tensor:
    """x + eps * (random signs), clipped to [0, 1]: noise of the attack's L-inf budget."""
    return (x + eps * torch.randint(0, 2, x.shape, generator=gen).float().mul(2).sub(1)).clamp(0, 1)


def matched_gaussian(x: torch.Tensor, l2: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x + s * N(0, I), clipped to [0, 1], with s per image so that the L2 change after clipping equals ``l2``."""
    d = torch.randn(x.shape, generator=gen)
    s = (l2 / d.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    for _ in range(6):
        got = ((x + s * d).clamp(0, 1) - x).flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        s = s * (l2.view(-1, 1, 1, 1) / got.clamp_min(1e-12))
    return (x + s * d).clamp(0, 1)


def matched_blur(x: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    """Per image, the Gaussian blur (sigma in BLUR_SIGMAS) whose L2 change is closest to ``l2``."""
    blurred = torch.stack([gaussian_blur(x, s).clamp(0, 1) for s in BLUR_SIGMAS])  # S x N x C x H x W
    norms = (blurred - x[None]).flatten(2).norm(dim=2)  # S x N
    pick = (norms - l2[None]).abs().argmin(0)
    return blurred[pick, torch.arange(len(x))]
