"""Global interventions over the audited images, on the whole image and, where the data have annotated findings,
outside them (the findings' pixels kept):

* the transforms of :func:`cemap.causal.global_interventions.battery` at fixed strengths, with the AUROC drop per
  finding (robustness to a new acquisition);
* the exchanges of :func:`cemap.causal.global_interventions.exchanges`: a property swapped in from another audited
  image without annotated findings (its donor). They stay in the data's distribution, and the decision rule counts
  them where they leave the findings intact (outside the findings, or on the whole image when there are no annotations).
"""

from __future__ import annotations

import numpy as np
import torch

from ...causal.global_interventions import GlobalIntervention, battery, exchanges, restrict
from .effects import Effect, predict, summarise


def _footprint(intervention: GlobalIntervention, size: int) -> float:
    """Share of pixels a transform may change (a border only touches its frame)."""
    if intervention.kind != "border":
        return 1.0
    w = max(1, round(intervention.strength * size / 64))
    return 1 - max(0, size - 2 * w) ** 2 / size**2


def donor_images(images: torch.Tensor, findings_mask: torch.Tensor | None, seed: int) -> torch.Tensor:
    """One donor per image: another audited image without annotated findings (any other image when none is free)."""
    n = len(images)
    free = np.arange(n) if findings_mask is None else np.flatnonzero(~findings_mask.flatten(1).any(1).numpy())
    pool = free if len(free) > 1 else np.arange(n)
    rng = np.random.default_rng(seed)
    pick = pool[rng.integers(0, len(pool), size=n)]
    same = pick == np.arange(n)
    pick[same] = pool[(np.searchsorted(pool, pick[same]) + 1) % len(pool)]
    return images[torch.from_numpy(pick)]


def global_effects(
    classifier,
    images: torch.Tensor,
    p0: np.ndarray,
    y: np.ndarray | None,
    findings_mask: torch.Tensor | None,
    quick: bool,
    generator: torch.Generator,
    seed: int = 0,
) -> list[Effect]:
    """One Effect per (transform or exchange, scope).

    Args:
        images: N x C x H x W audited images; ``p0`` their N x K probabilities; ``y`` N x K positives (or None).
        findings_mask: N x H x W pixels of annotated findings (None when the data have no boxes).
    """
    size = images.shape[-1]
    boxless = findings_mask is None or not bool(findings_mask.any())
    donors = donor_images(images, None if boxless else findings_mask, seed)

    def seeded() -> torch.Generator:  # each transform's own stream, drawn from the audit's
        return torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))

    runs = [(t, lambda t=t: t(images, seeded()), False) for t in battery(quick)]
    runs += [(x, lambda x=x: x(images, donors), True) for x in exchanges()]
    out = []
    for intervention, apply, in_distribution in runs:
        transformed = apply()
        fp = _footprint(intervention, size) if isinstance(intervention, GlobalIntervention) else 1.0
        out += _summaries(
            classifier, intervention, transformed, images, p0, y, findings_mask, boxless, in_distribution, fp, seed
        )
    return out


def _summaries(classifier, intervention, transformed, images, p0, y, findings_mask, boxless, in_distribution, fp, seed):
    """The intervention's Effect on the whole image, and outside the findings where it can spare them."""
    names, head = classifier.class_names, classifier.head
    family = "global" if isinstance(intervention, GlobalIntervention) else "exchange"
    common = {"seed": seed, "footprint": fp}
    whole = predict(classifier, transformed)
    out = [
        summarise(
            family,
            intervention.name,
            "whole image",
            p0,
            whole,
            names,
            head,
            y,
            preserves_findings=boxless and in_distribution,
            **common,
        )
    ]
    geometric = getattr(intervention, "geometric", False) or getattr(intervention, "kind", "") == "border"
    if not boxless and not geometric:  # a border or a flip never leaves the findings in place to spare
        p_out = predict(classifier, restrict(images, transformed, findings_mask))
        out.append(
            summarise(
                family,
                intervention.name,
                "outside findings",
                p0,
                p_out,
                names,
                head,
                y,
                preserves_findings=in_distribution,
                **common,
            )
        )
    return out
