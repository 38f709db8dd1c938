"""Paired tests over many outcomes at once: Holm's correction, and a per-channel Wilcoxon test of condition vs control.

Used where a study compares a condition with its control on the same images channel by channel (the latent
controls study): each channel gets its paired bootstrap interval and a Wilcoxon signed-rank p-value, and the
k p-values are Holm-corrected so that "moves more" means the same whatever k is.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .bootstrap import paired_difference

ALPHA = 0.05


def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the order of ``p``."""
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def per_channel_tests(
    cond: torch.Tensor, ctrl: torch.Tensor, labels: Sequence[str], control: str, seed: int, alpha: float = ALPHA
) -> dict:
    """Per channel (N x k each, paired per row): mean condition and control, paired bootstrap interval of the
    difference, Wilcoxon p (zero-split) and Holm-adjusted p; ``moves_more`` / ``moves_less`` where the adjusted p is
    below ``alpha``. ``labels`` names each channel in words (its concept)."""
    from scipy.stats import wilcoxon

    a, b = cond.numpy(), ctrl.numpy()
    k = a.shape[1]
    p = np.ones(k)
    for j in range(k):
        d = a[:, j] - b[:, j]
        if np.any(d != 0) and len(d) >= 2:
            p[j] = float(wilcoxon(a[:, j], b[:, j], zero_method="zsplit").pvalue)
    adj = holm(p)
    rows = []
    for j in range(k):
        diff = paired_difference(a[:, j], b[:, j], seed=seed + j)
        rows.append(
            {
                "channel": f"Z{j}",
                "label": labels[j],
                "condition": float(a[:, j].mean()),
                "control": float(b[:, j].mean()),
                "difference": diff.to_json(),
                "p": float(p[j]),
                "p_holm": float(adj[j]),
                "moves_more": bool(adj[j] < alpha and diff.estimate > 0),
                "moves_less": bool(adj[j] < alpha and diff.estimate < 0),
            }
        )
    return {
        "control": control,
        "test": "Wilcoxon signed-rank, paired per image, Holm-corrected over channels",
        "channels": rows,
        "n_moves_more": sum(r["moves_more"] for r in rows),
        "n_moves_less": sum(r["moves_less"] for r in rows),
    }
