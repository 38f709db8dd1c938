"""Latent channel interventions on the inserted autoencoder: which concept channels carry each finding's decision,
and whether each aligns with the findings or with something else.

For every channel Z_j: do(Z_j = 0) on the audited images moves the findings' probabilities (of the model with
the autoencoder in place, so reconstruction error is never an effect); the finding it moves most, with an
interval, is its Effect. Its *alignment* is the AUROC with which the channel's pooled activation predicts that
finding's labels (max(a, 1 - a): a channel may code the finding's absence). A channel that moves a finding while
its alignment with every finding stays below :data:`ALIGNED` carries the decision on something other than the
findings. Latent effects describe the original model only when the autoencoder's fidelity holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...causal import LatentCE, fidelity
from ...evaluate.reliance import _auroc
from .effects import Effect, summarise

ALIGNED = 0.75


@dataclass
class LatentSummary:
    effects: list[Effect]
    fidelity: dict
    layer: str

    def to_json(self) -> dict:
        return {"fidelity": self.fidelity, "layer": self.layer}


@torch.inference_mode()
def _pooled_codes(fitted, images: torch.Tensor) -> np.ndarray:
    act, _ = fitted.split.activation(images)
    z, _ = fitted.autoencoder.encode(act.to(next(fitted.autoencoder.parameters()).device))
    return z.float().mean(dim=(2, 3)).cpu().numpy()


def alignment(codes: np.ndarray, y: np.ndarray | None, names: list[str]) -> list[dict[str, float]]:
    """Per channel, per finding: max(AUROC, 1 - AUROC) of the pooled code against the labels (empty without labels)."""
    if y is None:
        return [{} for _ in range(codes.shape[1])]
    out = []
    for j in range(codes.shape[1]):
        row = {}
        for k, name in enumerate(names):
            a = _auroc(y[:, k], codes[:, j])
            if np.isfinite(a):
                row[name] = round(float(max(a, 1 - a)), 4)
        out.append(row)
    return out


def latent_effects(classifier, fitted, images: torch.Tensor, y: np.ndarray | None, seed: int = 0) -> LatentSummary:
    """One Effect per code channel (scope "latent"), with its alignment in ``detail``."""
    latent = LatentCE(classifier, fitted)
    with torch.inference_mode():
        p_ae, p_do = latent.intervened_probs(images.to(classifier.device))
    p_ae, p_do = p_ae.float().cpu().numpy(), p_do.float().cpu().numpy()
    names = classifier.class_names
    aligned = alignment(_pooled_codes(fitted, images), y, names)
    effects = []
    for j in range(p_do.shape[1]):
        e = summarise(
            "latent", f"Z{j}", "latent", p_ae, p_do[:, j], names, classifier.head, y, seed=seed, with_auroc=False
        )
        best = max(aligned[j].items(), key=lambda kv: kv[1], default=(None, float("nan")))
        e.detail.update(
            {
                "alignment": aligned[j],
                "best_aligned": best[0],
                "best_alignment": best[1],
                "aligned_with_moved_finding": aligned[j].get(e.finding, float("nan")) >= ALIGNED,
                "unaligned": bool(aligned[j]) and best[1] < ALIGNED,
            }
        )
        effects.append(e)
    fid = fidelity(fitted, classifier, images, check_profiles=False).as_dict()
    return LatentSummary(effects, fid, fitted.layer)
