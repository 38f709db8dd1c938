"""The CE signature of an image: its latent CE profile plus summary statistics of its CE map.

Signature = latent CE profile (ECE of do(Z_j = v) for each concept channel, PAPER.md section 2)
plus summary statistics of the CE map (peak, mass concentration, entropy, ...). :class:`CESignature`
is a scikit-learn transformer (images -> N x D signatures), so ``make_pipeline(CESignature(...),
CEDetector())`` is the whole detector, and also a torch function of the image
(:meth:`CESignature.transform_torch`), so an adaptive attacker can differentiate through it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from functools import cached_property
from typing import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin

from ..causal.autoencoder import FittedAutoencoder
from ..causal.batching import chunks
from ..causal.cemap_map import CEMap
from ..causal.effects import check_effect_scale, log_odds_view
from ..causal.latent import LatentCE
from ..errors import CemapError
from ..models.classifier import Classifier

MAP_STATS = ("peak", "trough", "mean", "positive_mass", "negative_mass", "concentration", "entropy")
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
        check_effect_scale(self.effect_scale)
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
        """The configuration in ``d``; other keys (a saved detector also records model, layer and data) are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(
            **{k: v for k, v in d.items() if k in known and k != "map_stats"},
            map_stats=tuple(d.get("map_stats", MAP_STATS)),
        )


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


class CESignature(TransformerMixin, BaseEstimator):
    """images -> N x D CE signatures: a scikit-learn transformer over a classifier and its latent autoencoder.

    The constructor stores its parameters verbatim (``sklearn.base.clone`` works); there is nothing to learn,
    so :meth:`fit` only returns the transformer, and the CE map and latent sweep are built on first use.

    Args:
        classifier: the model whose predictions are explained.
        fitted: its latent autoencoder (``fit_autoencoder``); None only with ``SignatureConfig(latent=False)``.
        config: which parts make up the signature (None: :class:`SignatureConfig`'s defaults).
        batch_size: images per chunk of :meth:`transform`.
        precision: "fp32" or "bf16" for the CE map and latent sweep.
        incremental: recompute only the windows a masked cell changes (same numbers as full passes).

    Example::

        detector = make_pipeline(CESignature(clf, fitted), CEDetector()).fit(images, is_adversarial)
        detector.decision_function(new_images)   # N scores, higher = more adversarial
    """

    def __init__(
        self,
        classifier: Classifier,
        fitted: FittedAutoencoder | None,
        config: SignatureConfig | None = None,
        batch_size: int = 64,
        precision: str = "fp32",
        incremental: bool = True,
    ) -> None:
        self.classifier = classifier
        self.fitted = fitted
        self.config = config
        self.batch_size = batch_size
        self.precision = precision
        self.incremental = incremental
        self._engines  # a latent signature without an autoencoder is refused here, not at the first transform

    @property
    def signature_config(self) -> SignatureConfig:
        """The configuration in use (``config``, or the defaults)."""
        return self.config or SignatureConfig()

    @cached_property
    def _engines(self) -> tuple[LatentCE | None, CEMap]:
        """(the latent sweep or None, the CE map), on the configured effect scale. On the log-odds scale both run
        through a
        view whose "probabilities" are log-odds, and the latent part is then the class effect on the predicted class
        (the
        ECE's probability weights have no log-odds counterpart)."""
        cfg = self.signature_config
        if cfg.latent and self.fitted is None:
            raise CemapError(
                "the latent CE profile needs a fitted autoencoder",
                "pass fit_autoencoder(...) or SignatureConfig(latent=False)",
            )
        scaled = self.classifier if cfg.effect_scale == "probability" else log_odds_view(self.classifier)
        latent = LatentCE(scaled, self.fitted, value=cfg.value, precision=self.precision) if cfg.latent else None
        cemap = CEMap(
            scaled,
            cell=cfg.cell,
            stride=cfg.stride,
            fill=cfg.fill,
            precision=self.precision,
            incremental=self.incremental,
        )
        return latent, cemap

    @property
    def feature_names(self) -> list[str]:
        latent = self._engines[0]
        return ([f"latent_Z{j}" for j in range(latent.k)] if latent else []) + [
            f"map_{s}" for s in self.signature_config.map_stats
        ]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The signature's column names (scikit-learn's name for :attr:`feature_names`)."""
        return np.asarray(self.feature_names, dtype=object)

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    @property
    def effect_features(self) -> list[bool]:
        """Which features are effects (latent CEs, map peak/mean/mass) rather than shares."""
        return [not any(n == f"map_{s}" for s in SHARE_STATS) for n in self.feature_names]

    def fit(self, images=None, y=None) -> "CESignature":
        """Nothing to learn (the autoencoder is fitted beforehand): returns the transformer, for pipelines."""
        return self

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def _chunk(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        latent, cemap = self._engines
        cfg = self.signature_config
        parts = []
        if latent is not None:
            effect = "ece" if cfg.effect_scale == "probability" else "class"
            parts.append(latent.attribute(images, effect=effect, differentiable=differentiable))
        if cfg.map_stats:
            maps = cemap.attribute(images, differentiable=differentiable)
            parts.append(map_statistics(maps, cfg.map_stats, cfg.top_fraction))
        return torch.cat(parts, dim=1)

    def transform_torch(self, images: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
        """N x D signatures as a torch tensor; ``differentiable=True`` keeps the graph (for adaptive attacks).

        Args:
            images: N x C x H x W in [0, 1].
        Returns:
            N x D float32 signatures (columns: :attr:`feature_names`).
        """
        images = self.classifier.check_images(images)
        if differentiable:
            return self._chunk(images, True)
        if not len(images):
            return torch.zeros(0, self.dim)
        return torch.cat([self._chunk(images[s], False) for s in chunks(images.shape[0], self.batch_size)])

    def transform(self, images) -> np.ndarray:
        """N x D float64 signatures of N x C x H x W images in [0, 1] (a tensor or an array)."""
        return self.transform_torch(torch.as_tensor(images)).double().numpy()
