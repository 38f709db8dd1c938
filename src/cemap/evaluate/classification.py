"""How good is the classifier itself: accuracy (softmax) or macro AUROC over findings (sigmoid)."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import roc_auc_score


def accuracy(probs: torch.Tensor, labels: torch.Tensor) -> float:
    return float((probs.argmax(-1) == labels).float().mean())


def per_class_auroc(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> dict[str, float]:
    """AUROC of each finding that has both positives and negatives."""
    y, s = labels.numpy(), probs.numpy()
    return {
        name: float(roc_auc_score(y[:, c], s[:, c])) for c, name in enumerate(class_names) if 0 < y[:, c].sum() < len(y)
    }


def macro_auroc(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> float:
    scores = per_class_auroc(probs, labels, class_names)
    return float(np.mean(list(scores.values()))) if scores else float("nan")
