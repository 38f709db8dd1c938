"""Every detector's input, computed the same way for all of them: a differentiable map images -> N x D features.

The study fits the *same* supervised model (``CEDetector``: signed log, standardisation, logistic regression,
hyper-parameters chosen by grouped cross-validation) on each method's features, and an adaptive attacker
differentiates through each of them (BPDA for bit-depth reduction). The unsupervised form of each baseline is
one fixed score with the direction its paper gives (higher = more adversarial).

=================  ===============================================================  =========================
method             features                                                         unsupervised score
=================  ===============================================================  =========================
ce                 CE signature, probability effects (latent ECE + CE-map stats)    - (supervised only)
ce_log_odds        CE signature, log-odds effects (do not vanish when saturated)    - (supervised only)
msp                1 - confidence (Hendrycks & Gimpel 2017)                         the feature
feature_squeezing  L1 change of the prediction per squeezer (Xu et al. 2018)        max over squeezers
lid                LID at the intervention layer and at the logits (Ma et al. 2018)  LID at the layer
mahalanobis        min class-conditional Mahalanobis distance, pooled layer and      the layer's distance
                   logits (Lee et al. 2018)
logit_stats        max / mean / min |logit| and output entropy                      max |logit|
=================  ===============================================================  =========================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..causal.autoencoder import FittedAutoencoder
from ..causal.batching import chunks
from .baselines import (
    LOGIT_STATS,
    Mahalanobis,
    confidence_features,
    feature_squeezing_features,
    lid,
    logit_statistics,
    pooled,
)
from ..models.classifier import Classifier
from .signature import CESignature, SignatureConfig

CE_METHODS = ("ce", "ce_log_odds")
BASELINE_METHODS = ("msp", "feature_squeezing", "lid", "mahalanobis", "logit_stats")
METHODS = CE_METHODS + BASELINE_METHODS


@dataclass(frozen=True)
class MethodInfo:
    """What a detector's features are: their names, which columns the signed log may apply to, its unsupervised
    score."""

    name: str
    feature_names: tuple[str, ...]
    log_features: tuple[bool, ...]
    unsupervised: Callable[[np.ndarray], np.ndarray] | None
    unsupervised_description: str | None


class DetectorFeatures:
    """``features(images)`` -> {method: N x D array}; ``features.torch(method, images)`` keeps the graph.

    Args:
        classifier, fitted: the model and its latent autoencoder (whose split layer LID and Mahalanobis read).
        reference: clean train images (disjoint from every image scored): LID's neighbours, Mahalanobis' Gaussians.
        squeezers: feature-squeezing settings, ``{"bits": (...), "median_sizes": (...)}``.
        signature: the CE signature's configuration (its ``effect_scale`` is set per CE method).
    """

    def __init__(
        self,
        classifier: Classifier,
        fitted: FittedAutoencoder,
        reference: torch.Tensor,
        squeezers: dict,
        lid_k: int = 20,
        signature: SignatureConfig | None = None,
        batch_size: int = 64,
        methods: tuple[str, ...] = METHODS,
    ) -> None:
        self.classifier, self.fitted, self.squeezers, self.lid_k, self.batch_size = (
            classifier,
            fitted,
            squeezers,
            lid_k,
            batch_size,
        )
        self.methods = tuple(methods)
        base = signature or SignatureConfig()
        self.signatures = {
            "ce": CESignature(
                classifier,
                fitted,
                SignatureConfig(**{**base.__dict__, "effect_scale": "probability"}),
                batch_size=batch_size,
            ),
            "ce_log_odds": CESignature(
                classifier,
                fitted,
                SignatureConfig(**{**base.__dict__, "effect_scale": "log_odds"}),
                batch_size=batch_size,
            ),
        }
        self.split = fitted.split
        with torch.inference_mode():
            act, logits = self._act_logits(reference)
        self.ref_layer, self.ref_logits = act.flatten(1).double(), logits.double()
        classes = logits.argmax(-1)
        self.maha_layer = Mahalanobis().fit(pooled(act), classes)
        self.maha_logits = Mahalanobis().fit(logits, classes)
        n_sq = len(squeezers.get("bits", ())) + len(squeezers.get("median_sizes", ()))
        sq_names = [f"bits{b}" for b in squeezers.get("bits", ())] + [
            f"median{m}" for m in squeezers.get("median_sizes", ())
        ]
        effect = {m: tuple(s.effect_features) for m, s in self.signatures.items()}
        self.info = {
            "ce": MethodInfo("ce", tuple(self.signatures["ce"].feature_names), effect["ce"], None, None),
            "ce_log_odds": MethodInfo(
                "ce_log_odds", tuple(self.signatures["ce_log_odds"].feature_names), effect["ce_log_odds"], None, None
            ),
            "msp": MethodInfo(
                "msp",
                ("one_minus_confidence",),
                (True,),
                lambda f: f[:, 0],
                "1 - max softmax probability (sigmoid: 1 - mean max(p, 1-p))",
            ),
            "feature_squeezing": MethodInfo(
                "feature_squeezing",
                tuple(sq_names),
                (True,) * n_sq,
                lambda f: f.max(1),
                "max L1 change over the squeezers",
            ),
            "lid": MethodInfo(
                "lid",
                ("lid_layer", "lid_logits"),
                (True, True),
                lambda f: f[:, 0],
                f"LID (k={lid_k}) of the layer activation",
            ),
            "mahalanobis": MethodInfo(
                "mahalanobis",
                ("maha_layer", "maha_logits"),
                (True, True),
                lambda f: f[:, 0],
                "min class-conditional Mahalanobis distance of the channel-pooled layer activation",
            ),
            "logit_stats": MethodInfo(
                "logit_stats", LOGIT_STATS, (True,) * len(LOGIT_STATS), lambda f: f[:, 0], "max |logit|"
            ),
        }

    def _act_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        act, extras = self.split.activation(images)
        return act, self.split.finish(act, extras).float()

    def torch(self, method: str, images: torch.Tensor) -> torch.Tensor:
        """N x D features of ``method`` with the autograd graph kept (for adaptive attacks)."""
        if method in self.signatures:
            return self.signatures[method].transform_torch(images, differentiable=True).double()
        clf = self.classifier
        if method == "feature_squeezing":
            return feature_squeezing_features(clf, images, **self.squeezers).double()
        act, logits = self._act_logits(images)
        if method == "msp":
            return confidence_features(logits, clf.head).double()
        if method == "logit_stats":
            return logit_statistics(logits, clf.head).double()
        if method == "lid":
            return torch.stack(
                [lid(self.ref_layer, act.flatten(1), k=self.lid_k), lid(self.ref_logits, logits, k=self.lid_k)], dim=1
            )
        if method == "mahalanobis":
            return torch.stack([self.maha_layer.distance(pooled(act)), self.maha_logits.distance(logits)], dim=1)
        raise KeyError(method)

    def differentiable(self, method: str) -> Callable[..., torch.Tensor]:
        """``f(images, differentiable=True)`` for :class:`~cemap.detect.AdaptivePGD`."""
        return lambda images, differentiable=True: self.torch(method, images)

    def __call__(self, images: torch.Tensor, methods: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
        methods = methods or self.methods
        out: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        for s in chunks(len(images), self.batch_size):
            for m in methods:
                if m in self.signatures:
                    out[m].append(self.signatures[m].transform(images[s]))
                else:
                    with torch.inference_mode():
                        out[m].append(self.torch(m, images[s]).double().numpy())
        return {m: np.concatenate(v) if v else np.zeros((0, len(self.info[m].feature_names))) for m, v in out.items()}
