"""Perturbation and path attributions through Captum: Occlusion and Integrated Gradients.

Both explain the target's logit and sum the per-channel attribution into one map. Captum
takes gradients of the input only (no layer hooks), so DenseNet's in-place ReLUs are harmless
here; the classifier is used as it is.
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients, Occlusion

from ..causal.batching import default_chunk
from ..causal.cemap_map import default_cell
from ..models.classifier import Classifier
from ..causal.explainer import Explainer
from .registry import register_explainer


def _baseline(images: torch.Tensor, fill: str | float) -> torch.Tensor | float:
    """A number stays a number (Captum broadcasts it); 'zero', 'blur', 'mean', 'max' become one image per input."""
    if isinstance(fill, (int, float)):
        return float(fill)
    from ..causal.masks import fill_images

    return fill_images(images, fill)


@register_explainer("occlusion")
class OcclusionExplainer(Explainer):
    """Zeiler & Fergus occlusion: zero a ``window`` square every ``stride`` px (default half a window, overlapping) and
    record the logit drop.

    ``batch_size`` images are explained together, ``chunk_size`` occluded images per forward pass.

    It differs from a CE map in what it measures (the logit, not the probability) and in the
    overlapping sliding window; with probability output and stride = window it would be CE.
    """

    def __init__(
        self,
        classifier: Classifier,
        window: int | None = None,
        stride: int | None = None,
        batch_size: int | None = None,
        chunk_size: int | None = None,
        fill: str | float = 0.0,
    ) -> None:
        super().__init__(classifier, batch_size)
        _, h, w = classifier.input_shape
        self.window = window or default_cell(min(h, w))
        self.stride = stride or max(1, self.window // 2)
        # 0.0 (Zeiler & Fergus), a grey level, or an image fill: 'blur', 'mean' (cemap.causal.masks.fill_images)
        self.fill = fill
        self.chunk_size = chunk_size or default_chunk(classifier.input_shape)
        self.method = Occlusion(classifier)

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        c = images.shape[1]
        with torch.no_grad():
            attr = self.method.attribute(
                images,
                sliding_window_shapes=(c, self.window, self.window),
                strides=(c, self.stride, self.stride),
                baselines=_baseline(images, self.fill),
                target=targets,
                perturbations_per_eval=max(
                    1, self.chunk_size // len(images)
                ),  # ~chunk_size occluded images per forward pass
            )
        return attr.sum(1)


@register_explainer("integrated-gradients")
class IntegratedGradientsExplainer(Explainer):
    """Sundararajan et al. 2017 from ``baseline`` (a grey level - 0.0, black, by default - or 'blur' / 'mean', an image
    of the input's own), ``n_steps`` Gauss-Legendre points, ``internal_batch_size`` images per backward pass."""

    def __init__(
        self,
        classifier: Classifier,
        n_steps: int = 32,
        baseline: float | str = 0.0,
        batch_size: int | None = None,
        internal_batch_size: int = 128,
    ) -> None:
        super().__init__(classifier, batch_size)
        self.n_steps = n_steps
        self.baseline = baseline
        self.internal_batch_size = internal_batch_size
        self.method = IntegratedGradients(classifier)

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            attr = self.method.attribute(
                images,
                baselines=_baseline(images, self.baseline),
                target=targets,
                n_steps=self.n_steps,
                internal_batch_size=self.internal_batch_size,
            )
        return attr.detach().sum(1)
