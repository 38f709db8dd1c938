"""The causal engine: split a classifier, insert an autoencoder, intervene, measure effects."""

from .adaptive import AdaptiveCEMap
from .autoencoder import AEConfig, Fidelity, FittedAutoencoder, LatentAutoencoder, fidelity, fit_autoencoder
from .cemap_map import CEMap, paint
from .effects import class_effect, expected_effect, resolve_targets
from .latent import LatentCE
from .masks import apply_masks, box_mask, fill_images, grid_masks
from .split import Split, split_classifier

__all__ = [
    "AEConfig", "AdaptiveCEMap", "CEMap", "Fidelity", "FittedAutoencoder", "LatentAutoencoder", "LatentCE", "Split",
    "apply_masks", "box_mask", "class_effect", "expected_effect", "fidelity", "fill_images", "fit_autoencoder",
    "grid_masks", "paint", "resolve_targets", "split_classifier",
]
