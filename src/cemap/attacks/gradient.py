"""Gradient-sign and projected-gradient attacks: FGSM, BIM (I-FGSM) and PGD (Linf or L2)."""

from __future__ import annotations

import torch

from ..errors import CemapError
from .base import Attack

NORMS = ("linf", "l2")


def _positive(name: str, value: float) -> float:
    if not value > 0:
        raise CemapError(f"{name} must be positive, got {value}")
    return float(value)


class FGSM(Attack):
    """Goodfellow et al. 2015: one step of size ``eps`` along the sign of the gradient."""

    name = "fgsm"

    def __init__(self, classifier, eps: float = 8 / 255, **kw) -> None:
        super().__init__(classifier, **kw)
        self.eps = _positive("eps", eps)

    def budget(self) -> dict:
        return {"norm": "linf", "eps": self.eps, "loss": self.loss}

    def starts_at_clean(self) -> bool:
        return True

    def perturb(self, images, labels, target, original):
        grad, original = self.gradient(images, labels, target, original)
        return torch.clamp(images + self.eps * grad.sign(), min=0, max=1), original


class PGD(Attack):
    """Madry et al. 2018: ``steps`` steps of size ``alpha``, projected onto the ``norm`` ball of radius ``eps``.

    The Linf update is exactly torchattacks' (step, clip delta to [-eps, eps], clip to [0, 1]);
    ``alpha`` defaults to 2.5 * eps / steps. ``seed`` makes the random start reproducible.
    """

    name = "pgd"

    def __init__(
        self,
        classifier,
        eps: float = 8 / 255,
        alpha: float | None = None,
        steps: int = 10,
        norm: str = "linf",
        random_start: bool = True,
        seed: int = 0,
        **kw,
    ) -> None:
        super().__init__(classifier, **kw)
        if norm not in NORMS:
            raise CemapError(f"unknown norm {norm!r}", f"use one of {', '.join(NORMS)}")
        if steps < 1:
            raise CemapError(f"steps must be at least 1, got {steps}")
        self.eps = _positive("eps", eps)
        self.steps = int(steps)
        self.alpha = _positive("alpha", alpha) if alpha is not None else 2.5 * self.eps / self.steps
        self.norm = norm
        self.random_start = random_start
        self.seed = seed

    def budget(self) -> dict:
        return {
            "norm": self.norm,
            "eps": self.eps,
            "alpha": self.alpha,
            "steps": self.steps,
            "random_start": self.random_start,
            "loss": self.loss,
        }

    def _start(self, images: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        if self.norm == "linf":
            noise = torch.empty(images.shape).uniform_(-self.eps, self.eps, generator=gen)
        else:
            direction = torch.randn(images.shape, generator=gen)
            direction = direction / direction.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            noise = direction * self.eps * torch.rand(images.shape[0], generator=gen).view(-1, 1, 1, 1)
        return torch.clamp(images + noise.to(images), min=0, max=1)

    def _step(self, adv: torch.Tensor, images: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if self.norm == "linf":
            adv = adv + self.alpha * grad.sign()
            delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
            return torch.clamp(images + delta, min=0, max=1)
        g = grad.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        delta = adv + self.alpha * grad / g - images
        factor = (self.eps / delta.flatten(1).norm(dim=1).clamp_min(1e-12)).clamp(max=1.0).view(-1, 1, 1, 1)
        return torch.clamp(images + delta * factor, min=0, max=1)

    def starts_at_clean(self) -> bool:
        return not self.random_start

    def perturb(self, images, labels, target, original):
        adv = self._start(images) if self.random_start else images.clone()
        for _ in range(self.steps):
            grad, original = self.gradient(adv, labels, target, original)
            adv = self._step(adv, images, grad).detach()
        return adv, original


class BIM(PGD):
    """Kurakin et al. 2017 (I-FGSM): Linf PGD from the clean image, default step eps / steps * 1.25."""

    name = "bim"

    def __init__(self, classifier, eps: float = 8 / 255, alpha: float | None = None, steps: int = 10, **kw) -> None:
        super().__init__(
            classifier,
            eps=eps,
            alpha=alpha if alpha is not None else 1.25 * eps / steps,
            steps=steps,
            norm="linf",
            random_start=False,
            **kw,
        )


class MinimalPGD(PGD):
    """First-flip PGD: Linf steps of size ``alpha`` from the clean image (no random start), each sample frozen at the
    first step where it is misclassified - the smallest-budget adversarial PGD finds along its path, well inside
    ``eps`` (which only caps it). ``alpha`` defaults to eps / steps, so the path reaches the full budget at the end."""

    name = "pgd-minimal"

    def __init__(self, classifier, eps: float = 8 / 255, alpha: float | None = None, steps: int = 100, **kw) -> None:
        super().__init__(
            classifier,
            eps=eps,
            alpha=alpha if alpha is not None else eps / steps,
            steps=steps,
            norm="linf",
            random_start=False,
            **kw,
        )

    def budget(self) -> dict:
        return {**super().budget(), "stops": "at the first flip"}

    def perturb(self, images, labels, target, original):
        adv = images.clone()
        done = torch.zeros(images.shape[0], dtype=torch.bool)
        for _ in range(self.steps):
            grad, original = self.gradient(adv, labels, target, original)
            step = self._step(adv, images, grad).detach()
            adv = torch.where(done[:, None, None, None], adv, step)
            with torch.no_grad():
                done |= self.succeeded(self.logits(adv), labels, target, original)
            if bool(done.all()):
                break
        return adv, original


class ConfidenceMatchedPGD(PGD):
    """Adversarials whose confidence mirrors the clean image's: the attacked margin is driven to *minus* its clean
    value (softmax: the new class wins by as many logits as the true class did; sigmoid: the attacked finding's logit
    z becomes -z). Confidence (MSP, max |logit|, entropy) then cannot tell them from clean images.

    Linf PGD (budget ``eps``) on -(margin + clean margin)^2 with a step size that decays linearly from ``alpha`` to
    ``alpha / 20`` (sign steps overshoot a target they do not decay towards); each sample keeps the misclassified
    iterate closest to the mirrored margin (else the last one).
    """

    name = "pgd-confidence-matched"

    def __init__(self, classifier, eps: float = 8 / 255, alpha: float | None = None, steps: int = 100, **kw) -> None:
        kw.setdefault("random_start", False)
        super().__init__(
            classifier, eps=eps, alpha=alpha if alpha is not None else 2.5 * eps / steps, steps=steps, norm="linf", **kw
        )

    def budget(self) -> dict:
        return {**super().budget(), "goal": "margin = -(clean margin)"}

    def starts_at_clean(self) -> bool:
        return False

    def perturb(self, images, labels, target, original):
        with torch.no_grad():
            goal = -self.margin(self.logits(images), labels, target, original)
        adv = self._start(images) if self.random_start else images.clone()
        best, best_gap = adv.clone(), torch.full((images.shape[0],), float("inf"))
        for step in range(self.steps + 1):
            with torch.enable_grad():
                x = adv.detach().requires_grad_(True)
                margin = self.margin(self.logits(x), labels, target, original)
                gap = (margin - goal).abs()
                grad = torch.autograd.grad(-(gap**2).sum(), x)[0] if step < self.steps else None
            better = (margin.detach() < 0) & (gap.detach() < best_gap)
            best[better], best_gap = adv[better], torch.where(better, gap.detach(), best_gap)
            if grad is not None:
                alpha = self.alpha
                self.alpha = alpha * (1 - 0.95 * step / max(1, self.steps - 1))
                try:
                    adv = self._step(adv, images, grad).detach()
                finally:
                    self.alpha = alpha
        never = torch.isinf(best_gap)
        best[never] = adv[never]
        return best, original
