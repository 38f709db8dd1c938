"""``ce``: the CE map (:class:`cemap.CEMap`) itself, registered among the explanation methods.

Explained in chunks of 64 images (targets resolved per image first), as every registered method is.
"""

from __future__ import annotations

from ..causal.cemap_map import CEMap
from .registry import register_explainer

register_explainer("ce", batch_size=64)(CEMap)
