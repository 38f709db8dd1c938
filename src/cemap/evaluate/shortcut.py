"""Shortcut exposure: how much of a map sits on a spurious marker (synthcxr's ``shortcut`` variant).

A model that learnt the marker instead of the finding shows it here, whatever the map method;
a method that hides the marker when the model uses it is unfaithful.
"""

from __future__ import annotations

import torch

from ..errors import CemapError
from .localisation import mass_share


def marker_share(maps: torch.Tensor, marker_masks: torch.Tensor) -> torch.Tensor:
    """B shares of each map's positive mass on its marker (``marker_masks``: B x H x W booleans)."""
    if marker_masks.shape != maps.shape:
        raise CemapError(
            f"marker masks of shape {tuple(marker_masks.shape)} do not match maps {tuple(maps.shape)}",
            "pass one H x W mask per map",
        )
    return mass_share(maps, marker_masks.bool())
