"""One effect record for every intervention of the audit, computed from predictions before and after it.

The audit's common currency is the **mean absolute change in a finding's probability** over the audited
images (0 = the intervention never moves the model, 1 = it flips every prediction from certain to certain),
reported for the finding it moves most, with a percentile bootstrap interval over images; beside it the share
of images whose decision on that finding changes and, where labels exist, the drop in that finding's AUROC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...evaluate.bootstrap import Interval, bootstrap_mean, percentile_interval, resample_indices
from ...evaluate.reliance import _auroc

BATCH = 128
N_BOOT_AUROC = 500


@dataclass
class Effect:
    """What one intervention does to the model, on the finding it moves most.

    ``scope`` is "whole image", "outside findings" (the annotated findings' pixels kept) or "latent";
    ``preserves_findings`` marks the interventions that leave the findings themselves intact (the decision rule's);
    ``footprint`` is the share of pixels the intervention may change (1 for a global one).
    """

    family: str
    name: str
    scope: str
    finding: str
    effect: Interval
    decision_change: Interval
    auroc_drop: Interval | None = None
    preserves_findings: bool = False
    footprint: float = 1.0
    detail: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "family": self.family,
            "name": self.name,
            "scope": self.scope,
            "finding": self.finding,
            "effect": self.effect.to_json(),
            "decision_change": self.decision_change.to_json(),
            "auroc_drop": None if self.auroc_drop is None else self.auroc_drop.to_json(),
            "preserves_findings": self.preserves_findings,
            "footprint": round(self.footprint, 4),
            "detail": self.detail,
        }

    @property
    def label(self) -> str:
        where = "" if self.scope in ("whole image", "latent") else f" ({self.scope})"
        return f"{self.name}{where}"


@torch.inference_mode()
def predict(classifier, images: torch.Tensor, batch: int = BATCH) -> np.ndarray:
    """N x K probabilities, in batches."""
    return torch.cat(
        [classifier.predict_proba(images[i : i + batch]).float().cpu() for i in range(0, len(images), batch)]
    ).numpy()


def decisions(p: np.ndarray, head: str) -> np.ndarray:
    """N x K decisions: per finding p > 0.5 (sigmoid), or one-hot argmax (softmax)."""
    if head == "sigmoid":
        return p > 0.5
    return np.eye(p.shape[1], dtype=bool)[p.argmax(1)]


def positives(labels: np.ndarray | None, k: int) -> np.ndarray | None:
    """N x K booleans from multi-hot labels or class indices (None without labels)."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    return labels > 0 if labels.ndim == 2 else np.eye(k, dtype=bool)[labels.astype(int)]


def auroc_drop(
    y: np.ndarray, before: np.ndarray, after: np.ndarray, seed: int = 0, n_boot: int = N_BOOT_AUROC
) -> Interval | None:
    """AUROC(before) - AUROC(after) of one finding over the same images, paired bootstrap; None with one class only."""
    if y.all() or not y.any():
        return None
    est = _auroc(y, before) - _auroc(y, after)
    draws = np.array([_auroc(y[i], before[i]) - _auroc(y[i], after[i]) for i in resample_indices(len(y), n_boot, seed)])
    return Interval(float(est), *percentile_interval(draws), len(y))


def summarise(
    family: str,
    name: str,
    scope: str,
    p0: np.ndarray,
    p1: np.ndarray,
    class_names: list[str],
    head: str,
    y: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    seed: int = 0,
    with_auroc: bool = True,
    **extra,
) -> Effect:
    """The Effect of one intervention from N x K probabilities before (``p0``) and after (``p1``) it.

    ``rows`` (N booleans) restricts the average to some images (e.g. those where a region avoids every finding).
    """
    if rows is not None:
        p0, p1, y = p0[rows], p1[rows], None if y is None else y[rows]
    change = np.abs(p1 - p0)
    per_finding = change.mean(0) if len(change) else np.zeros(p0.shape[1])
    k = int(np.argmax(per_finding))
    flips = decisions(p0, head)[:, k] != decisions(p1, head)[:, k]
    drop = None
    if with_auroc and y is not None and len(y):
        drop = auroc_drop(y[:, k], p0[:, k], p1[:, k], seed)
    detail = {
        "per_finding": {c: round(float(v), 4) for c, v in zip(class_names, per_finding)},
        "n_images": int(len(change)),
    }
    if with_auroc and y is not None and len(y):
        detail["auroc_drop_per_finding"] = {
            c: _rounded(_auroc(y[:, j], p0[:, j]) - _auroc(y[:, j], p1[:, j])) for j, c in enumerate(class_names)
        }
    return Effect(
        family,
        name,
        scope,
        class_names[k],
        bootstrap_mean(change[:, k], seed=seed),
        bootstrap_mean(flips.astype(float), seed=seed),
        drop,
        detail={**detail, **extra.pop("detail", {})},
        **extra,
    )


def _rounded(x: float) -> float | None:
    return None if not np.isfinite(x) else round(float(x), 4)
