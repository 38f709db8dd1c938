"""The adaptive attacker: PGD against the classifier *and* a differentiable detector."""

from __future__ import annotations

import torch

from ..attacks.gradient import PGD
from ..models.classifier import Classifier
from .estimator import CEDetector
from .signature import CESignature

class AdaptivePGD(PGD):
    """PGD against classifier *and* detector (the attack a careful reviewer asks for).

    Ascends  -max(margin, -kappa) - weight * detector logit(CE signature): the hinge on the classifier's
    margin stops pulling once a sample is misclassified by ``kappa`` logits, leaving the step to the
    detector term; the signature (latent CE profile and CE-map statistics) is differentiated end to end.
    Each sample returns the iterate that is misclassified with the lowest detector score (else the last one).
    """

    name = "adaptive-pgd"

    def __init__(self, classifier: Classifier, signature: CESignature, detector: CEDetector, weight: float = 1.0,
                 kappa: float = 1.0, **kw) -> None:
        super().__init__(classifier, **kw)
        self.signature, self.detector, self.weight, self.kappa = signature, detector, float(weight), float(kappa)

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
            if grad is not None:
                adv = self._step(adv, images, grad).detach()
        never = torch.isinf(best_score)
        best[never] = adv[never]
        return best, original
