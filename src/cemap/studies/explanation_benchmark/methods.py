"""Building each benchmarked method for a classifier: the tuned options, the CE fills, fresh seeds for randomised
copies."""

from __future__ import annotations

import inspect

from ...explain import get_explainer
from ...explain.ce_multiscale import CounterfactualFill, InpaintFill
from ...explain.registry import _EXPLAINERS
from .data import BenchPairs

SEEDED = ("rise", "kernelshap", "random")


def takes_seed(method: str) -> bool:
    """Does the method draw random numbers from a ``seed`` option (RISE's masks, Kernel SHAP's coalitions, the random
    map)?"""
    return method in _EXPLAINERS and "seed" in inspect.signature(_EXPLAINERS[method].__init__).parameters


class MethodFactory:
    """``factory(method, classifier, pairs)`` -> an explainer with the run's chosen options.

    ``ce-oracle`` and ``ce-inpaint`` are the chosen CE map with another fill: the pairs' exact
    lesion-free renders, or the inpainter (trained on first use). ``seed_offset`` gives seeded
    methods fresh random numbers (a randomised model's RISE must not reuse the trained model's masks).
    """

    def __init__(self, options: dict[str, dict], size: int, seed: int = 0) -> None:
        self.options, self.size, self.seed = options, size, seed
        self._inpainter = None

    def inpainter(self):
        if self._inpainter is None:
            from ...models.inpainting import get_inpainter

            self._inpainter = get_inpainter(self.size)
        return self._inpainter

    def __call__(
        self,
        method: str,
        classifier,
        pairs: BenchPairs | None = None,
        seed_offset: int = 0,
        options: dict | None = None,
    ):
        opts = dict(self.options.get(method, {}) if options is None else options)
        if method in ("ce-oracle", "ce-inpaint"):
            ce = {k: v for k, v in self.options.get("ce", {}).items() if k != "fill"}
            if method == "ce-oracle":
                if pairs is None:
                    raise ValueError("ce-oracle needs the pairs whose lesion-free renders it fills with")
                return get_explainer("ce", classifier, **ce, fill=CounterfactualFill(pairs.images, pairs.lesion_free))
            return get_explainer("ce", classifier, **ce, fill=InpaintFill(self.inpainter()))
        if takes_seed(method):
            opts["seed"] = self.seed + opts.get("seed", 0) + 7919 * seed_offset
        return get_explainer(method, classifier, **opts)
