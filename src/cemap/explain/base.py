"""The one verb every explanation method shares: ``attribute(images, target=None) -> B x H x W``.

The same verb as :class:`cemap.CEMap`, :class:`cemap.AdaptiveCEMap` and Captum; ``explain`` is an alias.

Maps are float tensors at input resolution where **higher = more important for the target**
(the same convention as CE maps). ``target`` is one class (or, for a multi-label model, one
finding) per image: an int, a tensor of B indices, or None for the predicted class / most
probable finding. Each method only says how one chunk of images becomes maps.
"""

from __future__ import annotations

import torch

from ..causal.batching import chunks, default_chunk
from ..causal.effects import resolve_targets
from ..models.classifier import Classifier


class Explainer:
    """Base class: ``explain`` validates, resolves targets and chunks; subclasses implement ``_explain``."""

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

    def explain(self, images: torch.Tensor, target: int | torch.Tensor | None = None) -> torch.Tensor:
        """Alias of :meth:`attribute`."""
        return self.attribute(images, target)

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
