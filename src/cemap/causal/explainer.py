"""The one family of explanation methods and its one verb: ``attribute(images, target=None)``.

Every method - cemap's own (:class:`~cemap.CEMap`, :class:`~cemap.AdaptiveCEMap`,
:class:`~cemap.LatentCE`) and the baselines of :mod:`cemap.explain` (CAMs, Captum's Occlusion and
Integrated Gradients, RISE, Kernel SHAP, the floors) - is an :class:`Explainer`, with Captum's verb.
It lives here, below the baselines, because cemap's own methods are part of the causal engine.

Pixel attributions (:class:`Explainer`) are float maps at input resolution, B x H x W, where **higher
= more important for the target** (the CE maps' convention). Layer attributions
(:class:`LayerExplainer`, Captum's ``LayerAttribution``) score the channels of a layer instead:
B x k. ``target`` is one class (or, for a multi-label model, one finding) per image: an int, a
tensor of B indices, or None for the predicted class / most probable finding. A method only says
how one chunk of images becomes maps (``_explain``); validation, targets and chunking are shared.
"""

from __future__ import annotations

import torch

from ..models.classifier import Classifier
from .batching import chunks, default_chunk
from .effects import resolve_targets


class Explainer:
    """Base class: ``attribute`` validates, resolves targets and chunks; subclasses implement ``_explain``.

    Args:
        classifier: the model explained.
        batch_size: images explained per chunk (None: a size chosen from the input shape).
    """

    name: str = ""

    def __init__(self, classifier: Classifier, batch_size: int | None = None) -> None:
        self.classifier = classifier
        self.batch_size = batch_size or default_chunk(classifier.input_shape)

    def attribute(self, images: torch.Tensor, target: int | torch.Tensor | None = None) -> torch.Tensor:
        """Maps of ``images`` for ``target``.

        Args:
            images: B x C x H x W (or C x H x W) in [0, 1].
            target: one class / finding for all images, B of them, or None for the model's own choice.
        Returns:
            B x H x W float maps, higher = more important for the target.
        """
        images = self.classifier.check_images(images)
        targets = self.resolve_targets(images, target)
        maps = [self._explain(images[s], targets[s]) for s in chunks(len(images), self.batch_size)]
        return torch.cat(maps).float()

    def resolve_targets(self, images: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
        """B class indices; the model's own choice when ``target`` is None."""
        if target is not None:
            return resolve_targets(torch.zeros(len(images), self.classifier.num_classes), target)
        with torch.inference_mode():
            probs = torch.cat([self.classifier.predict_proba(images[s]) for s in chunks(len(images), self.batch_size)])
        return resolve_targets(probs, None)

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.classifier.name or 'classifier'})"


class LayerExplainer(Explainer):
    """Attributions to the k channels of a layer rather than to pixels (Captum's ``LayerAttribution``): B x k.

    ``layer`` names the layer whose channels are scored.
    """

    layer: str = ""
