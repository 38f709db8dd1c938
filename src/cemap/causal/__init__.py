"""The causal engine: split a classifier, insert an autoencoder, intervene, measure effects - and cemap's own
explanation methods (CE maps, adaptive CE maps, latent CE profiles), members of the one :class:`Explainer` family."""

from .adaptive import AdaptiveCEMap
from .autoencoder import (
    AEConfig,
    FittedAutoencoder,
    LatentAutoencoder,
    fit_autoencoder,
    restore_autoencoder,
    sized_config,
)
from .cemap_map import CEMap, paint
from .effects import class_effect, expected_effect, log_odds, log_odds_view, resolve_targets
from .explainer import Explainer, LayerExplainer
from .fidelity import Fidelity, fidelity
from .latent import LatentCE
from .masks import apply_masks, box_mask, fill_images, grid_masks
from .split import Split, split_classifier

__all__ = [
    "AEConfig",
    "AdaptiveCEMap",
    "CEMap",
    "Explainer",
    "Fidelity",
    "FittedAutoencoder",
    "LatentAutoencoder",
    "LatentCE",
    "LayerExplainer",
    "Split",
    "apply_masks",
    "box_mask",
    "class_effect",
    "expected_effect",
    "fidelity",
    "fill_images",
    "fit_autoencoder",
    "sized_config",
    "grid_masks",
    "log_odds",
    "log_odds_view",
    "paint",
    "resolve_targets",
    "restore_autoencoder",
    "split_classifier",
]
