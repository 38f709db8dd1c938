"""PNG figures: heat-map overlays with boxes, and latent CE profile bars."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def _gray(image: torch.Tensor) -> np.ndarray:
    img = image.detach().float().cpu()
    return img.mean(0).numpy() if img.dim() == 3 else img.numpy()


def draw_boxes(ax, boxes: torch.Tensor | None, color: str = "lime") -> None:
    if boxes is None:
        return
    for x0, y0, x1, y1 in boxes.reshape(-1, 4).tolist():
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.2))


def overlay_grid(
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    path: Path,
    titles: Sequence[str] | None = None,
    boxes: Sequence[torch.Tensor] | None = None,
) -> Path:
    """One row per image: the image, then each method's map over it (symmetric colour scale, red = matters more)."""
    n, methods = images.shape[0], list(maps)
    fig, axes = plt.subplots(n, 1 + len(methods), figsize=(1.9 * (1 + len(methods)), 1.9 * n), squeeze=False)
    for i in range(n):
        gray = _gray(images[i])
        axes[i, 0].imshow(gray, cmap="gray", vmin=0, vmax=1)
        axes[i, 0].set_title(titles[i] if titles else "", fontsize=7)
        draw_boxes(axes[i, 0], boxes[i] if boxes else None)
        for j, name in enumerate(methods, start=1):
            m = maps[name][i].detach().float().cpu().numpy()
            lim = max(float(np.abs(m).max()), 1e-8)
            axes[i, j].imshow(gray, cmap="gray", vmin=0, vmax=1)
            axes[i, j].imshow(m, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.55)
            draw_boxes(axes[i, j], boxes[i] if boxes else None)
            if i == 0:
                axes[i, j].set_title(name, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def profile_bars(profiles: dict[str, torch.Tensor], path: Path, ylabel: str = "latent CE (ECE)") -> Path:
    """Mean +- std latent CE per concept channel, one bar group per condition (clean, masked, adversarial...)."""
    names = list(profiles)
    k = next(iter(profiles.values())).shape[1]
    width = 0.8 / len(names)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * k * len(names)), 3))
    for i, name in enumerate(names):
        p = profiles[name].detach().float().cpu().numpy()
        ax.bar(np.arange(k) + i * width, p.mean(0), width, yerr=p.std(0), label=f"{name} (n={len(p)})", capsize=1.5)
    ax.set_xticks(np.arange(k) + 0.4 - width / 2)
    ax.set_xticklabels([f"Z{j}" for j in range(k)], fontsize=7)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="k", linewidth=0.6)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
