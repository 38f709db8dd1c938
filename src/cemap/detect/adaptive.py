"""The adaptive attacker (Tramer et al. 2020): PGD against the classifier *and* a differentiable detector."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..attacks.gradient import PGD
from ..models.classifier import Classifier
from .estimator import CEDetector

Features = Callable[..., torch.Tensor]  # features(images, differentiable=True) -> B x D


class AdaptivePGD(PGD):
    """PGD against classifier *and* detector (the attack a careful reviewer asks for).

    Ascends  -max(margin, -kappa) - weight * detector logit(features(x)): the hinge on the classifier's
    margin stops pulling once a sample is misclassified by ``kappa`` logits, leaving the step to the
    detector term. ``features`` is any differentiable map from images to the detector's input (the CE
    signature, or a baseline's features, whose non-differentiable parts use BPDA). Each sample returns the
    iterate that is misclassified with the lowest detector score (else the last one); ``checkpoints`` also
    records that best-so-far iterate after each listed number of steps (``self.history``), so one run
    answers "how many steps" for every listed count.
    """

    name = "adaptive-pgd"

    def __init__(
        self,
        classifier: Classifier,
        features: Features,
        detector: CEDetector,
        weight: float = 1.0,
        kappa: float = 1.0,
        checkpoints: Sequence[int] = (),
        **kw,
    ) -> None:
        super().__init__(classifier, **kw)
        self.signature, self.detector, self.weight, self.kappa = features, detector, float(weight), float(kappa)
        self.checkpoints = tuple(sorted(int(c) for c in checkpoints if 0 < int(c) <= self.steps))
        self.history: dict[int, list[torch.Tensor]] = {}

    def budget(self) -> dict:
        return {**super().budget(), "detector_weight": self.weight, "kappa": self.kappa}

    def _terms(self, x, labels, target, original) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-sample objective, classifier margin, detector logit) at ``x``."""
        margin = self.margin(self.logits(x), labels, target, original)
        score = self.detector.score_torch(self.signature(x, differentiable=True).double()).float()
        return -margin.clamp(min=-self.kappa) - self.weight * score, margin, score

    def starts_at_clean(self) -> bool:
        return False  # its terms need the clean decision up front

    def gradient(self, images, labels, target, original):
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)
            return torch.autograd.grad(self._terms(x, labels, target, original)[0].sum(), x)[0], original

    def __call__(self, images, labels=None, target=None):
        self.history = {c: [] for c in self.checkpoints}
        return super().__call__(images, labels, target)

    def perturb(self, images, labels, target, original):
        adv = self._start(images) if self.random_start else images.clone()
        best, best_score = adv.clone(), torch.full((images.shape[0],), float("inf"))
        for step in range(self.steps + 1):
            with torch.enable_grad():
                x = adv.detach().requires_grad_(True)
                objective, margin, score = self._terms(x, labels, target, original)
                grad = torch.autograd.grad(objective.sum(), x)[0] if step < self.steps else None
            better = (margin.detach() < 0) & (score.detach() < best_score)
            best[better], best_score = adv[better], torch.where(better, score.detach(), best_score)
            if step in self.history:
                self.history[step].append(
                    torch.where(torch.isinf(best_score)[:, None, None, None], adv, best).detach().clamp(0, 1)
                )
            if grad is not None:
                adv = self._step(adv, images, grad).detach()
        never = torch.isinf(best_score)
        best[never] = adv[never]
        return best, original
