"""Carlini & Wagner 2017, L2 variant: the smallest L2 change that wins by a logit margin ``kappa``."""

from __future__ import annotations

import torch

from ..errors import CemapError
from .base import Attack


class CarliniWagnerL2(Attack):
    """Adam on w (x' = (tanh w + 1) / 2 stays in [0, 1]) minimising ||x' - x||^2 + c * max(margin, -kappa),
    with a per-sample binary search over c. Returns the smallest successful x' found (or the clean image);
    ``max_l2`` caps the budget: candidates farther than it do not count. Pixels at exactly 0 or 1 start at
    |w| = atanh(1 - 1e-4) rather than the usual 1 - 1e-6, so that a few hundred Adam steps (lr 0.05, not the
    paper's 0.01 over 10,000 steps) can still move them.

    As in Carlini & Wagner's code, a search step stops early once its loss has not fallen by 0.01% over a
    tenth of its steps (``abort_early``). After each call, ``convergence`` holds one record per search step:
    the median c tried, the share of samples with a successful x' so far, their mean L2, and the mean final
    margin of the samples still unsuccessful - the curve a reader needs to judge whether the search converged.
    A call attacks ``batch_size`` images at a time; the record covers every such chunk (``chunk`` says which).
    """

    name = "cw"

    def __init__(
        self,
        classifier,
        kappa: float = 0.0,
        c: float = 1.0,
        steps: int = 100,
        search_steps: int = 4,
        lr: float = 0.05,
        max_l2: float | None = None,
        abort_early: bool = True,
        **kw,
    ) -> None:
        super().__init__(classifier, **kw)
        if kappa < 0 or c <= 0 or steps < 1 or search_steps < 1 or lr <= 0:
            raise CemapError("C&W needs kappa >= 0, c > 0, steps >= 1, search_steps >= 1 and lr > 0")
        if max_l2 is not None and max_l2 <= 0:
            raise CemapError(f"max_l2 must be positive, got {max_l2}")
        self.kappa, self.c, self.steps, self.search_steps, self.lr, self.max_l2 = (
            float(kappa),
            float(c),
            int(steps),
            int(search_steps),
            float(lr),
            max_l2,
        )
        self.abort_early = abort_early
        self.convergence: list[dict] = []
        self._chunk = 0

    def __call__(self, images, labels=None, target=None):
        """As :meth:`Attack.__call__`; ``convergence`` starts afresh, then gets the records of every chunk."""
        self.convergence, self._chunk = [], 0
        return super().__call__(images, labels, target)

    def budget(self) -> dict:
        return {
            "norm": "l2",
            "kappa": self.kappa,
            "max_l2": self.max_l2,
            "c0": self.c,
            "steps": self.steps,
            "search_steps": self.search_steps,
            "abort_early": self.abort_early,
        }

    def perturb(self, images, labels, target, original):
        b = images.shape[0]
        w0 = torch.atanh((images * 2 - 1).clamp(-1 + 1e-4, 1 - 1e-4))
        c = torch.full((b,), self.c)
        lower, upper = torch.zeros(b), torch.full((b,), 1e10)
        best_l2, best = torch.full((b,), float("inf")), images.clone()
        limit = float("inf") if self.max_l2 is None else self.max_l2
        for _ in range(self.search_steps):
            won, margin, steps = self._search_step(images, labels, target, original, w0, c, best, best_l2, limit)
            found = torch.isfinite(best_l2)
            self.convergence.append(
                {
                    "chunk": self._chunk,
                    "c_median": float(c.median()),
                    "steps": steps,
                    "success_rate": float(found.float().mean()),
                    "mean_l2_of_successes": float(best_l2[found].mean()) if found.any() else None,
                    "mean_margin_of_failures": float(margin[~found].mean()) if (~found).any() else None,
                }
            )
            upper = torch.where(won, torch.minimum(upper, c), upper)
            lower = torch.where(won, lower, torch.maximum(lower, c))
            c = torch.where(upper < 1e9, (lower + upper) / 2, c * 10)
        self._chunk += 1
        return best, original

    def _search_step(
        self, images, labels, target, original, w0, c, best, best_l2, limit
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Adam from the clean image at constants ``c``; updates ``best`` and ``best_l2`` in place.
        Returns (which samples succeeded at some step, the last margins, the steps taken)."""
        b = images.shape[0]
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=self.lr)
        won = torch.zeros(b, dtype=torch.bool)
        check, previous = max(1, self.steps // 10), float("inf")
        for step in range(self.steps):
            with torch.enable_grad():
                adv = (torch.tanh(w) + 1) / 2
                l2sq = (adv - images).flatten(1).pow(2).sum(1)
                margin = self.margin(self.logits(adv), labels, target, original)
                loss = (l2sq + c * margin.clamp(min=-self.kappa)).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
            opt.step()
            with torch.no_grad():
                ok = (margin <= -self.kappa) & (margin < 0)
                l2 = l2sq.sqrt()
                better = ok & (l2 < best_l2) & (l2 <= limit)
                best_l2.copy_(torch.where(better, l2, best_l2))
                best[better] = adv.detach()[better]
                won |= ok
            if self.abort_early and (step + 1) % check == 0:
                if float(loss.detach()) > previous * 0.9999:
                    return won, margin.detach(), step + 1
                previous = float(loss.detach())
        return won, margin.detach(), self.steps
