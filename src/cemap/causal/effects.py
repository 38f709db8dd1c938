"""Causal effects of interventions on a classifier's prediction.

Sign convention (one, everywhere): an effect is the *drop* in probability that the
intervention causes, so **higher = the intervened part matters more for the prediction**.

    CE_t = p(t|x) - p_do(t|x)
    ECE  = sum_y p(y|x) * (p(y|x) - p_do(y|x))

ECE is the negative of the notebooks' ``dot(causal_score - score, score)``. For a sigmoid
head each finding is a Bernoulli variable, so ECE sums over findings and both outcomes:
sum_c (2 p_c - 1) (p_c - q_c).

Shapes: ``p`` is B x K (the unintervened prediction); ``p_do`` is B x K or B x M x K (M
interventions per input); ``target`` is B class indices. Results are B or B x M.

Effects can also be read on the log-odds scale (``effect_scale="log_odds"`` of CE maps and CE
signatures): the drop in logit(p) rather than in p. A float32 probability is exactly 1.0 beyond
about 17 logits of margin, so every probability effect of a saturated output is 0; its log-odds
effects still move with every intervention. :func:`log_odds_view` gives any computation that reads
``classifier.probabilities`` that scale, without copying the network.
"""

from __future__ import annotations

import copy

import torch

from ..errors import CemapError
from ..models.classifier import Classifier

EFFECT_SCALES = ("probability", "log_odds")


def class_effect(p: torch.Tensor, p_do: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CE_t = p(t|x) - p_do(t|x)."""
    t = target.view(-1, 1)
    p_t = p.gather(-1, t).squeeze(-1)
    if p_do.dim() == 2:
        return p_t - p_do.gather(-1, t).squeeze(-1)
    q_t = p_do.gather(-1, t[:, :, None].expand(-1, p_do.shape[1], 1)).squeeze(-1)
    return p_t[:, None] - q_t


def expected_effect(p: torch.Tensor, p_do: torch.Tensor, head: str) -> torch.Tensor:
    """ECE; ``head`` is 'softmax' or 'sigmoid'."""
    if p_do.dim() == 3:
        p = p[:, None]
    weight = p if head == "softmax" else 2 * p - 1
    return (weight * (p - p_do)).sum(-1)


def resolve_targets(probs: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """B class indices: the predicted class (or most probable finding) when ``target`` is None."""
    b, k = probs.shape
    if target is None:
        return probs.argmax(-1)
    t = torch.as_tensor(target, dtype=torch.long).reshape(-1)
    if t.numel() == 1:
        t = t.expand(b)
    if t.numel() != b:
        raise CemapError(f"got {t.numel()} targets for {b} images", "pass one target per image, a single int, or None")
    if (t < 0).any() or (t >= k).any():
        raise CemapError(f"target {t.tolist()} out of range", f"classes are 0..{k - 1}")
    return t.clone()


def check_effect_scale(scale: str) -> str:
    """``scale`` when it is one of :data:`EFFECT_SCALES`, else a CemapError naming them."""
    if scale not in EFFECT_SCALES:
        raise CemapError(f"unknown effect_scale {scale!r}", f"use one of {', '.join(EFFECT_SCALES)}")
    return scale


def log_odds(logits: torch.Tensor, head: str) -> torch.Tensor:
    """B x K log-odds log(p / (1 - p)) of each class, from logits without saturating (computed in float32 at least):
    the logits themselves for a sigmoid head; z_k - logsumexp of the other logits for a softmax head."""
    z = logits.float()
    if head == "sigmoid":
        return z
    k = z.shape[-1]
    others = (
        z[..., None, :].expand(*z.shape, k).masked_fill(torch.eye(k, dtype=torch.bool, device=z.device), -float("inf"))
    )
    return z - torch.logsumexp(others, dim=-1)


def log_odds_view(classifier: Classifier) -> Classifier:
    """A shallow copy of ``classifier`` (same network, parameters shared, nothing copied) whose ``probabilities``
    (and so ``predict_proba``) return per-class log-odds: effects computed through it are drops in log-odds.
    The user's classifier is untouched (the override is an attribute of the copy)."""
    view = copy.copy(classifier)
    head = classifier.head
    object.__setattr__(view, "probabilities", lambda logits: log_odds(logits, head))
    return view
