"""The CE signature of an image: its latent CE profile plus summary statistics of its CE map.

Signature = latent CE profile (ECE of do(Z_j = v) for each concept channel, PAPER.md section 2)
plus summary statistics of the CE map (peak, mass concentration, entropy, ...). It is a torch
function of the image, so an adaptive attacker can differentiate through it.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from ..causal.autoencoder import FittedAutoencoder
from ..causal.batching import chunks
from ..causal.cemap_map import CEMap
from ..causal.latent import LatentCE
from ..errors import CemapError
from ..models.classifier import Classifier

MAP_STATS = ("peak", "trough", "mean", "positive_mass", "negative_mass", "concentration", "entropy")
EFFECT_SCALES = ("probability", "log_odds")
SHARE_STATS = ("concentration", "entropy")  # shares in [0, 1]; every other feature is a probability change
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SignatureConfig:
    """Which parts make up the signature. ``cell``/``stride``/``fill`` configure the CE map (None = CEMap default);
    ``top_fraction`` is the pixel share used by 'concentration'; ``value`` the latent intervention value."""

    latent: bool = True
    map_stats: tuple[str, ...] = MAP_STATS
    cell: int | None = None
    stride: int | None = None
    fill: str | float = "zero"
    top_fraction: float = 0.1
    value: str | float = "zero"
    effect_scale: str = "probability"

    def __post_init__(self) -> None:
        if self.effect_scale not in EFFECT_SCALES:
            raise CemapError(f"unknown effect_scale {self.effect_scale!r}", f"use one of {', '.join(EFFECT_SCALES)}")
        unknown = [s for s in self.map_stats if s not in MAP_STATS]
        if unknown:
            raise CemapError(f"unknown CE-map statistic(s) {unknown}", f"choose from {', '.join(MAP_STATS)}")
        if not self.latent and not self.map_stats:
            raise CemapError("an empty signature", "enable the latent profile or name at least one CE-map statistic")
        if not 0 < self.top_fraction <= 1:
            raise CemapError(f"top_fraction must be in (0, 1], got {self.top_fraction}")

    def as_dict(self) -> dict:
        return {**asdict(self), "map_stats": list(self.map_stats)}

    @classmethod
    def from_dict(cls, d: dict) -> "SignatureConfig":
        return cls(**{**d, "map_stats": tuple(d.get("map_stats", ()))})


def map_statistics(maps: torch.Tensor, stats: Sequence[str], top_fraction: float = 0.1) -> torch.Tensor:
    """B x len(stats) summaries of B x H x W CE maps (differentiable).

    concentration = share of the positive mass in the top ``top_fraction`` pixels;
    entropy = entropy of the normalised positive map divided by log(H W) (1 = spread evenly).
    """
    flat = maps.flatten(1).float()
    pos, neg = flat.clamp(min=0), (-flat).clamp(min=0)
    mass = pos.sum(1)
    top = max(1, math.ceil(top_fraction * flat.shape[1]))
    q = pos / mass.clamp_min(1e-12)[:, None]
    values = {
        "peak": lambda: flat.amax(1),
        "trough": lambda: flat.amin(1),
        "mean": lambda: flat.mean(1),
        "positive_mass": lambda: pos.mean(1),
        "negative_mass": lambda: neg.mean(1),
        "concentration": lambda: pos.topk(top, dim=1).values.sum(1) / mass.clamp_min(1e-12),
        "entropy": lambda: -(q * torch.log(q.clamp_min(1e-12))).sum(1) / math.log(flat.shape[1]),
    }
    return torch.stack([values[s]() for s in stats], dim=1)


def log_odds(logits: torch.Tensor, head: str) -> torch.Tensor:
    """Per-class log-odds from logits, exact in float32 however saturated the output: the logit itself for a
    sigmoid head; z_c - logsumexp_{j != c} z_j for a softmax head (log p_c - log(1 - p_c))."""
    if head != "softmax":
        return logits
    k = logits.shape[-1]
    others = logits[..., None, :].expand(*logits.shape, k).masked_fill(torch.eye(k, dtype=torch.bool, device=logits.device), float("-inf"))
    return logits - others.logsumexp(-1)


def log_odds_view(classifier: Classifier) -> Classifier:
    """The same network (parameters shared, nothing copied) whose ``probabilities`` / ``predict_proba`` return
    per-class log-odds instead of probabilities: CE maps and latent class effects computed through it are
    differences of log-odds. A float32 probability is exactly 1.0 beyond about 17 logits of margin, so every
    probability effect of a saturated output is 0; its log-odds effects still move with every intervention."""
    view = copy.copy(classifier)
    head = classifier.head
    object.__setattr__(view, "probabilities", lambda logits: log_odds(logits, head))
    return view


class CESignature:
    """``signature(images)`` -> B x D CE signature; ``differentiable=True`` keeps the graph for adaptive attacks."""

    def __init__(self, classifier: Classifier, fitted: FittedAutoencoder | None, config: SignatureConfig | None = None,
                 batch_size: int = 64, precision: str = "fp32", incremental: bool = True) -> None:
        self.config = config or SignatureConfig()
        if self.config.latent and fitted is None:
            raise CemapError("the latent CE profile needs a fitted autoencoder", "pass fit_autoencoder(...) or SignatureConfig(latent=False)")
        self.classifier = classifier
        self.fitted = fitted
        self.batch_size = batch_size
        # log-odds scale: effects through a view whose "probabilities" are log-odds; the latent part is then the class
        # effect on the predicted class (the ECE's probability weights have no log-odds counterpart)
        scaled = classifier if self.config.effect_scale == "probability" else log_odds_view(classifier)
        self._latent_effect = "ece" if self.config.effect_scale == "probability" else "class"
        self.latent = LatentCE(scaled, fitted, value=self.config.value, precision=precision) if self.config.latent else None
        self.cemap = CEMap(scaled, cell=self.config.cell, stride=self.config.stride, fill=self.config.fill, precision=precision,
                           incremental=incremental)

    @property
    def feature_names(self) -> list[str]:
        latent = [f"latent_Z{j}" for j in range(self.latent.k)] if self.latent else []
        return latent + [f"map_{s}" for s in self.config.map_stats]

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    @property
    def effect_features(self) -> list[bool]:
        """Which features are effects (latent CEs, map peak/mean/mass) rather than shares."""
        return [not any(n == f"map_{s}" for s in SHARE_STATS) for n in self.feature_names]

    def _chunk(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        parts = []
        if self.latent is not None:
            parts.append(self.latent.attribute(images, effect=self._latent_effect, differentiable=differentiable))
        if self.config.map_stats:
            maps = self.cemap.attribute(images, differentiable=differentiable)
            parts.append(map_statistics(maps, self.config.map_stats, self.config.top_fraction))
        return torch.cat(parts, dim=1)

    def __call__(self, images: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
        images = self.classifier.check_images(images)
        if differentiable:
            return self._chunk(images, True)
        return torch.cat([self._chunk(images[s], False) for s in chunks(images.shape[0], self.batch_size)]) if len(images) else torch.zeros(0, self.dim)
