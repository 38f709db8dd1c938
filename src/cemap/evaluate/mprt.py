"""Efficient MPRT and Smooth MPRT (Hedström et al., TMLR 2024), batched over cemap's explainers, checked against
Quantus.

Both compare the maps of the trained model with those of the model whose every layer is
re-initialised exactly as Quantus 0.6.0 does it (:func:`quantus_randomised`: a deep copy, every
module with ``reset_parameters`` in module order, each reset after ``torch.manual_seed(seed + 1)``;
here inside ``fork_rng``, so the caller's global RNG is left alone).

* **Efficient MPRT** (:func:`efficient_mprt`): the relative rise in explanation complexity,
  (H(map of the randomised model) - H(map of the trained model)) / H(map of the trained model),
  with H the discrete entropy of the map's histogram over ``n_bins`` = 100 equal bins (Quantus's
  default). Higher is better: a map that tracks the model becomes noise when the model does.
* **Smooth MPRT** (:func:`smooth_mprt`): MPRT on maps averaged over ``nr_samples`` noisy copies
  of the input (noise N(0, (``noise_magnitude`` x (max - min of the image))^2), the last copy
  noise-free), to remove the shattered-gradient noise that lets a noisy map pass; the score is
  the Spearman correlation of the |maps| of the trained and the fully randomised model. Lower is
  better. cemap's explainers take images in [0, 1], so the noisy copies are clipped to [0, 1]
  (Quantus does not clip; on images away from 0 and 1 the two agree, which the test checks).

Quantus computes Smooth MPRT's noisy maps only for its own explanation methods (``quantus.explain``),
not for a user's ``explain_func``: that is why it is re-implemented here, and tested against
Quantus on a method both can compute.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import torch
from scipy.stats import entropy

from .robustness import spearman

N_BINS = 100
QUANTUS_SEED = 42


def quantus_randomised(classifier: torch.nn.Module, seed: int = QUANTUS_SEED) -> torch.nn.Module:
    """A deep copy of ``classifier`` with every layer re-initialised as Quantus's fully randomised model (bottom-up
    order)."""
    clone = copy.deepcopy(classifier)
    with torch.random.fork_rng():
        for _, module in clone.named_modules():
            if hasattr(module, "reset_parameters"):
                torch.manual_seed(seed + 1)
                module.reset_parameters()
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone.eval()


def discrete_entropy(maps: torch.Tensor, n_bins: int = N_BINS) -> np.ndarray:
    """B entropies (nats) of each map's histogram over ``n_bins`` equal bins between its min and max (Quantus's
    complexity)."""
    out = []
    for m in maps.detach().double().cpu().numpy():
        hist, _ = np.histogram(m, bins=n_bins)
        out.append(entropy(hist))
    return np.array(out)


def _attribute(explainer, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    verb = getattr(explainer, "attribute", None) or explainer.explain
    return verb(images, targets)


def efficient_mprt(
    make_explainer: Callable,
    classifier,
    images: torch.Tensor,
    targets: torch.Tensor,
    maps: torch.Tensor | None = None,
    seed: int = QUANTUS_SEED,
    n_bins: int = N_BINS,
    randomised=None,
) -> np.ndarray:
    """B Efficient-MPRT scores (relative rise in map entropy under full randomisation; higher is better)."""
    trained = maps if maps is not None else _attribute(make_explainer(classifier), images, targets)
    model = randomised if randomised is not None else quantus_randomised(classifier, seed)
    random_maps = _attribute(make_explainer(model), images, targets)
    h0, h1 = discrete_entropy(trained, n_bins), discrete_entropy(random_maps, n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (h1 - h0) / h0


def smoothed_maps(
    explainer,
    images: torch.Tensor,
    targets: torch.Tensor,
    nr_samples: int,
    noise_magnitude: float,
    rng,
    clip: bool = True,
) -> torch.Tensor:
    """Maps averaged over ``nr_samples`` noisy copies (the last noise-free); noise from ``rng.standard_normal``
    (NumPy)."""
    x = images.detach().cpu().double()
    spread = (x.flatten(1).max(1).values - x.flatten(1).min(1).values).view(-1, *([1] * (x.dim() - 1)))
    total = None
    for n in range(nr_samples):
        eps = (
            torch.zeros_like(x)
            if n == nr_samples - 1
            else torch.from_numpy(rng.standard_normal(tuple(x.shape))) * noise_magnitude * spread
        )
        noisy = x + eps
        if clip:
            noisy = noisy.clamp(0, 1)
        a = _attribute(explainer, noisy.float().to(images.device), targets).double().cpu() / nr_samples
        total = a if total is None else total + a
    return total


def smooth_mprt(
    make_explainer: Callable,
    classifier,
    images: torch.Tensor,
    targets: torch.Tensor,
    nr_samples: int = 50,
    noise_magnitude: float = 0.1,
    seed: int = QUANTUS_SEED,
    rng=None,
    clip: bool = True,
    randomised=None,
) -> np.ndarray:
    """B Smooth-MPRT scores: Spearman correlation of the |smoothed maps| of the trained and the fully randomised model
    (lower is better).

    ``rng``: a NumPy generator (or ``RandomState``) for the noise; seeded from ``seed`` when None.
    """
    rng = rng if rng is not None else np.random.default_rng(seed)
    trained = smoothed_maps(make_explainer(classifier), images, targets, nr_samples, noise_magnitude, rng, clip)
    model = randomised if randomised is not None else quantus_randomised(classifier, seed)
    random_maps = smoothed_maps(make_explainer(model), images, targets, nr_samples, noise_magnitude, rng, clip)
    return spearman(trained.abs().float(), random_maps.abs().float()).numpy()
