"""Figures of the detection study: CE-signature histograms (clean vs adversarial) and ROC curves."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from .figures import save, subplots


def signature_histograms(
    clean: np.ndarray,
    adversarial: dict[str, np.ndarray],
    feature_names: Sequence[str],
    features: Sequence[int],
    path: Path,
    bins: int = 30,
) -> Path:
    """One row per attack, one column per chosen signature feature: clean versus adversarial distributions."""
    rows, cols = len(adversarial), len(features)
    fig, axes = subplots(rows, cols, figsize=(2.6 * cols, 2.0 * rows), squeeze=False)
    for i, (attack, adv) in enumerate(adversarial.items()):
        for j, f in enumerate(features):
            ax = axes[i, j]
            both = np.concatenate([clean[:, f], adv[:, f]])
            edges = np.histogram_bin_edges(both, bins=bins)
            ax.hist(clean[:, f], bins=edges, alpha=0.55, density=True, label="clean", color="tab:blue")
            ax.hist(adv[:, f], bins=edges, alpha=0.55, density=True, label="adversarial", color="tab:red")
            ax.set_yticks([])
            ax.tick_params(labelsize=6)
            if i == 0:
                ax.set_title(feature_names[f], fontsize=8)
            if j == 0:
                ax.set_ylabel(attack, fontsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return save(fig, path)


def roc_panels(curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]], path: Path) -> Path:
    """One panel per attack; one ROC curve (fpr, tpr, auroc) per detector, with the 5% FPR line."""
    n = len(curves)
    fig, axes = subplots(1, n, figsize=(3.2 * n, 3.1), squeeze=False)
    for ax, (attack, methods) in zip(axes[0], curves.items()):
        for method, (fpr, tpr, auc) in methods.items():
            ax.plot(fpr, tpr, label=f"{method} ({auc:.3f})", linewidth=1.2)
        ax.plot([0, 1], [0, 1], color="grey", linewidth=0.6, linestyle=":")
        ax.axvline(0.05, color="grey", linewidth=0.6, linestyle="--")
        ax.set_title(attack, fontsize=8)
        ax.set_xlabel("false-positive rate", fontsize=7)
        ax.set_ylabel("true-positive rate", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return save(fig, path)
