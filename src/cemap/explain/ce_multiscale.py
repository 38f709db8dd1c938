"""The CE map behind ``get_explainer('ce')``: the settings chosen on synthcxr's validation split, and the paper's grid
as a preset.

* ``ce`` (:class:`CEExplainer`): effects averaged over three cell sizes at half-cell offsets
  (:func:`default_cells`), on the effect scale and with the fill chosen by the explanation
  benchmark v3 on validation images (:data:`CHOSEN`; never on held-out ones). ``preset='paper'``
  gives the paper's map instead: one 7 x 7 grid (cell = side // 7, stride = cell), zero fill,
  probability effects - also registered as ``ce-paper``. Passing ``cell`` (and ``stride``) asks
  for one grid with the paper's defaults for anything not given, as before.
* ``ce-ms`` (:class:`MultiScaleCEExplainer`): the multi-scale map with issue 16's defaults
  (log-odds, blur), kept for the v2 benchmark's records.

Fills: 'zero', 'mean', 'blur', 'max', a number, or a fill object - :class:`CounterfactualFill`
(per image, e.g. synthcxr's exact lesion-free render: the oracle) or :class:`InpaintFill` (per
masked region, from :mod:`cemap.models.inpainting`: the realistic in-distribution fill).
"""

from __future__ import annotations

import hashlib

import torch

from ..causal.batching import autocast, balanced_chunks
from ..causal.cemap_map import CEMap, default_cell
from ..models.classifier import Classifier
from ..causal.explainer import Explainer
from .registry import register_explainer

CHOSEN = {
    "effect_scale": "log_odds",
    "fill": "blur",
}  # chosen on synthcxr validation images by most trainings (docs/results/evaluation_benchmark_v3.json)
PRESETS = ("paper",)


def default_cells(size: int) -> tuple[int, ...]:
    """About 1/10, 1/7 and 1/5 of the image side, rounded: 6, 9 and 13 px at 64; 13, 18 and 26 at 128; 22, 32 and 45 at
    224."""
    return tuple(sorted({max(2, round(size / d)) for d in (10, 7, 5)}))


def paper_grid(size: int) -> dict:
    """The paper's CE map: one grid of about 7 x 7 cells (the notebooks' 32-pixel cells at 224), zero fill, probability
    effects."""
    cell = default_cell(size)
    return {"cell": cell, "stride": cell, "fill": "zero", "effect_scale": "probability"}


def _key(image: torch.Tensor) -> bytes:
    return hashlib.sha1(image.detach().float().cpu().contiguous().numpy().tobytes()).digest()


class CounterfactualFill:
    """A per-image fill looked up by the image's content: ``CounterfactualFill(images, fills)`` fills ``images[i]`` with
    ``fills[i]``.

    With synthcxr's lesion-free renders as ``fills`` every masked cell shows exactly what the
    generator would have drawn there without lesions: the oracle fill (outside lesions it changes nothing).
    """

    name = "counterfactual"

    def __init__(self, images: torch.Tensor, fills: torch.Tensor) -> None:
        if images.shape != fills.shape:
            raise ValueError(f"one fill per image: {tuple(images.shape)} vs {tuple(fills.shape)}")
        self.table = {_key(x): f for x, f in zip(images, fills)}

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        try:
            return torch.stack([self.table[_key(x)] for x in images]).to(images.device)
        except KeyError as exc:
            raise ValueError("CounterfactualFill was given an image it holds no fill for") from exc


class InpaintFill:
    """A per-region fill: ``inpainter.fill(images, masks)`` fills each masked region from its context."""

    name = "inpaint"

    def __init__(self, inpainter) -> None:
        self.inpainter = inpainter


class FilledCEMap(CEMap):
    """:class:`CEMap` whose fill is a :class:`CounterfactualFill` (per image) or an :class:`InpaintFill` (per masked
    region)."""

    def __init__(self, classifier: Classifier, fill, **options) -> None:
        super().__init__(classifier, fill="zero", **options)
        self.source = fill
        self.fill = fill.name  # what plans and records see

    def pair_probabilities(
        self, images: torch.Tensor, owner: torch.Tensor, masks: torch.Tensor, which: torch.Tensor
    ) -> torch.Tensor:
        device = images.device
        owner, which, masks = owner.to(device), which.to(device), masks.to(device)
        if owner.numel() == 0:
            return images.new_zeros(0, self.classifier.num_classes)
        if isinstance(self.source, InpaintFill):
            return self._inpainted(images, owner, masks, which)
        fills = self.source(images)
        with autocast(self.precision, device):
            plan = self.plan(images, owner, masks, which, fills)
            return self._evaluate(plan, images, owner, masks, which, fills)

    def _inpainted(self, images, owner, masks, which) -> torch.Tensor:
        out = []
        with autocast(self.precision, images.device):
            for s in balanced_chunks(owner.shape[0], self.chunk_size):
                img, m = images[owner[s]], masks[which[s]]
                filled = self.source.inpainter.fill(img.cpu(), m.cpu()).to(images.device)
                out.append(self.classifier.predict_proba(torch.where(m[:, None], filled, img)).float())
        return torch.cat(out)


def build_cemap(classifier: Classifier, fill, **options) -> CEMap:
    return (
        FilledCEMap(classifier, fill, **options)
        if isinstance(fill, (CounterfactualFill, InpaintFill))
        else CEMap(classifier, fill=fill, **options)
    )


@register_explainer("ce")
class CEExplainer(Explainer):
    """The CE map chosen on validation images (:data:`CHOSEN`, multi-scale), or the paper's grid with
    ``preset='paper'``.

    Args:
        classifier: the model to explain.
        preset: None (the chosen map) or 'paper' (one ~7 x 7 grid, zero fill, probability effects).
        cell, stride: one grid of this cell size and stride (the paper's defaults for what is not given).
        cells: several cell sizes, each at a half-cell stride (default: :func:`default_cells`).
        effect_scale: 'probability' or 'log_odds'. fill: see the module docstring.
    """

    def __init__(
        self,
        classifier: Classifier,
        preset: str | None = None,
        cell: int | None = None,
        stride: int | None = None,
        cells: tuple[int, ...] | None = None,
        effect_scale: str | None = None,
        fill=None,
        blur_sigma: float | None = None,
        chunk_size: int | None = None,
        precision: str = "fp32",
        batch_size: int = 64,
    ) -> None:
        super().__init__(classifier, batch_size)
        if preset is not None and preset not in PRESETS:
            from ..errors import CemapError

            raise CemapError(
                f"unknown CE preset {preset!r}",
                f"use one of {', '.join(PRESETS)} or none (the map chosen on validation images)",
            )
        size = min(classifier.input_shape[1:])
        if preset == "paper" or cell is not None:
            base = paper_grid(size)
            grid = {"cell": cell or base["cell"], "stride": stride or cell or base["stride"]}
            scale, fill = effect_scale or base["effect_scale"], base["fill"] if fill is None else fill
        else:
            grid = {"cells": tuple(cells) if cells else default_cells(size)}
            scale, fill = effect_scale or CHOSEN["effect_scale"], CHOSEN["fill"] if fill is None else fill
        self.settings = {**grid, "effect_scale": scale, "fill": getattr(fill, "name", fill)}
        self.cemap = build_cemap(
            classifier,
            fill,
            chunk_size=chunk_size,
            precision=precision,
            blur_sigma=blur_sigma,
            effect_scale=scale,
            **grid,
        )

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.cemap.attribute(images, targets)


@register_explainer("ce-ms")
class MultiScaleCEExplainer(Explainer):
    """CE map averaged over ``cells`` (half-cell strides), effects on ``effect_scale``, masked with ``fill``."""

    def __init__(
        self,
        classifier: Classifier,
        cells: tuple[int, ...] | None = None,
        effect_scale: str = "log_odds",
        fill="blur",
        blur_sigma: float | None = None,
        chunk_size: int | None = None,
        precision: str = "fp32",
        batch_size: int = 64,
    ) -> None:
        super().__init__(classifier, batch_size)
        cells = tuple(cells) if cells else default_cells(min(classifier.input_shape[1:]))
        self.cemap = build_cemap(
            classifier,
            fill,
            chunk_size=chunk_size,
            precision=precision,
            blur_sigma=blur_sigma,
            cells=cells,
            effect_scale=effect_scale,
        )

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.cemap.attribute(images, targets)


@register_explainer("ce-paper")
class PaperCEExplainer(CEExplainer):
    """The paper's CE map: ``get_explainer('ce', clf, preset='paper')``."""

    def __init__(self, classifier: Classifier, **options) -> None:
        super().__init__(classifier, preset="paper", **options)
