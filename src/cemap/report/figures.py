"""PNG figures: heat-map overlays with boxes, samples with their boxes, and latent CE profile bars.

Drawn on :class:`matplotlib.figure.Figure` objects with an Agg canvas attached, never through
``pyplot``: importing cemap leaves the user's matplotlib backend and pyplot's figure list alone.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def subplots(nrows: int = 1, ncols: int = 1, **kwargs) -> tuple[Figure, np.ndarray]:
    """Like ``pyplot.subplots`` (same arguments), but a standalone Figure with its own Agg canvas."""
    figsize = kwargs.pop("figsize", None)
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def close(fig: Figure | None = None) -> None:
    """Nothing to release: a standalone Figure is freed with its last reference (kept for ``plt.close`` callers)."""


# Drop-in for the two pyplot calls the studies use (``plt.subplots``, ``plt.close``), without pyplot.
plt = SimpleNamespace(subplots=subplots, close=close)


def save(fig: Figure, path: Path, dpi: int = 90) -> Path:
    fig.savefig(path, dpi=dpi)
    return Path(path)


def _gray(image: torch.Tensor) -> np.ndarray:
    img = image.detach().float().cpu()
    return img.mean(0).numpy() if img.dim() == 3 else img.numpy()


def _display(image: torch.Tensor) -> tuple[np.ndarray, str | None]:
    """The image in its own colours: H x W x 3 for colour images, H x W (gray colormap) otherwise."""
    img = image.detach().float().cpu().clamp(0, 1)
    if img.dim() == 3 and img.shape[0] == 3:
        return img.permute(1, 2, 0).numpy(), None
    return _gray(img), "gray"


def draw_boxes(ax, boxes: torch.Tensor | None, color: str = "lime") -> None:
    if boxes is None:
        return
    for x0, y0, x1, y1 in torch.as_tensor(boxes).reshape(-1, 4).tolist():
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=1.2))


def overlay_grid(
    images: torch.Tensor,
    maps: dict[str, torch.Tensor],
    path: Path,
    titles: Sequence[str] | None = None,
    boxes: Sequence[torch.Tensor] | None = None,
) -> Path:
    """One row per image: the image in its own colours, then each method's map over it (symmetric colour scale, red =
    matters more)."""
    n, methods = images.shape[0], list(maps)
    fig, axes = subplots(n, 1 + len(methods), figsize=(1.9 * (1 + len(methods)), 1.9 * n), squeeze=False)
    for i in range(n):
        shown, cmap = _display(images[i])
        gray = _gray(images[i])
        axes[i, 0].imshow(shown, cmap=cmap, vmin=0, vmax=1)
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
    return save(fig, path)


BOX_COLOURS = ["red", "gold", "cyan", "lime", "magenta", "orange", "deepskyblue", "white"]


def box_samples(
    images: torch.Tensor, boxes, box_labels, class_names: Sequence[str], path: Path, columns: int = 4
) -> Path:
    """Grid of images with their ground-truth boxes, one colour per finding (docs/figures/synthcxr_samples.png)."""
    rows = (len(images) + columns - 1) // columns
    fig = Figure(figsize=(2.4 * columns, 2.6 * rows))  # no pyplot: the user's backend is never touched
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, image, image_boxes, labels in zip(axes.flat, images, boxes, box_labels):
        ax.imshow(image.mean(0), cmap="gray", vmin=0, vmax=1)
        for box, label in zip(image_boxes, labels.tolist()):
            draw_boxes(ax, box, color=BOX_COLOURS[label % len(BOX_COLOURS)])
        ax.set_title(", ".join(class_names[c] for c in sorted(set(labels.tolist()))) or "no finding", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def channel_labels(k: int, concepts: dict[int, str] | Sequence[str] | None = None) -> list[str]:
    """``Z0`` .. ``Z{k-1}``, each followed by its concept where one is known (``Z2 - Effusion, AUROC 0.93``).

    ``concepts`` is either channel -> words (``{2: "Effusion, AUROC 0.93"}``) or the k full labels
    (``ConceptTable.labels()``: ``["Z0", "Z1 - Mass, AUROC 0.91", ...]``).
    """
    if isinstance(concepts, (list, tuple)):
        return [str(t) for t in concepts] if len(concepts) == k else channel_labels(k)
    concepts = concepts or {}
    return [f"Z{j} - {concepts[j]}" if concepts.get(j) else f"Z{j}" for j in range(k)]


def profile_bars(
    profiles: dict[str, torch.Tensor],
    path: Path,
    ylabel: str = "latent CE (ECE)",
    concepts: dict[int, str] | Sequence[str] | None = None,
) -> Path:
    """Mean +- std latent CE per concept channel, one bar group per condition (clean, masked, adversarial...).

    ``concepts`` (channel -> words, e.g. ``{2: "Effusion, AUROC 0.93"}``, or the k labels of
    ``ConceptTable.labels()``) labels the channels by what they respond to.
    """
    names = list(profiles)
    k = next(iter(profiles.values())).shape[1]
    width = 0.8 / len(names)
    labels = channel_labels(k, concepts)
    fig, axes = subplots(figsize=(max(6, 0.45 * k * len(names)), 3.6 if concepts else 3), squeeze=False)
    ax = axes[0, 0]
    for i, name in enumerate(names):
        p = torch.as_tensor(profiles[name]).detach().float().cpu().numpy()
        ax.bar(np.arange(k) + i * width, p.mean(0), width, yerr=p.std(0), label=f"{name} (n={len(p)})", capsize=1.5)
    ax.set_xticks(np.arange(k) + 0.4 - width / 2)
    ax.set_xticklabels(labels, fontsize=7, rotation=60 if concepts else 0, ha="right" if concepts else "center")
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="k", linewidth=0.6)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save(fig, path)
