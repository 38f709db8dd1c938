"""Model-randomisation sanity check (Adebayo et al. 2018): a map that survives random weights explains the image, not the model.

Score = Spearman rank correlation between maps of the trained model and maps of a copy whose
weights are all re-initialised (the "full randomisation" end of Adebayo's cascade). Lower is
better: near 0 means the map depends on what the model learnt.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch

from ..models.classifier import Classifier
from .robustness import spearman


def randomised_copy(classifier: Classifier, seed: int = 0) -> Classifier:
    """A deep copy with every layer's parameters re-drawn from its default initialisation (batch-norm statistics reset too)."""
    clone = copy.deepcopy(classifier)
    torch.manual_seed(seed)
    for module in clone.model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval()


def randomisation_correlation(
    make_explainer: Callable[[Classifier], object],
    classifier: Classifier,
    images: torch.Tensor,
    targets: torch.Tensor,
    maps: torch.Tensor | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """B rank correlations between maps of ``classifier`` and of its randomised copy (``make_explainer(clf)`` builds the method)."""
    trained = maps if maps is not None else make_explainer(classifier).explain(images, targets)
    random_maps = make_explainer(randomised_copy(classifier, seed)).explain(images, targets)
    return spearman(trained, random_maps)
