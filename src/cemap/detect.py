"""CE-based detection of adversarial inputs: the CE signature of an image and the ``CEDetector`` on it.

Signature = latent CE profile (ECE of do(Z_j = v) for each concept channel, PAPER.md section 2)
plus summary statistics of the CE map (peak, mass concentration, entropy, ...). The detector is
standardisation + L2-regularised logistic regression: a well-understood linear model whose few
parameters are saved as a plain ``.npz`` (no pickle) and whose score is also a torch function,
so an adaptive attacker can differentiate through it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .attacks.gradient import PGD
from .causal.autoencoder import FittedAutoencoder
from .causal.batching import chunks
from .causal.cemap_map import CEMap
from .causal.latent import LatentCE
from .errors import CemapError
from .models.classifier import Classifier

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

    def __post_init__(self) -> None:
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


class CESignature:
    """``signature(images)`` -> B x D CE signature; ``differentiable=True`` keeps the graph for adaptive attacks."""

    def __init__(self, classifier: Classifier, fitted: FittedAutoencoder | None, config: SignatureConfig | None = None,
                 batch_size: int = 64, precision: str = "fp32") -> None:
        self.config = config or SignatureConfig()
        if self.config.latent and fitted is None:
            raise CemapError("the latent CE profile needs a fitted autoencoder", "pass fit_autoencoder(...) or SignatureConfig(latent=False)")
        self.classifier = classifier
        self.fitted = fitted
        self.batch_size = batch_size
        self.latent = LatentCE(classifier, fitted, value=self.config.value, precision=precision) if self.config.latent else None
        self.cemap = CEMap(classifier, cell=self.config.cell, stride=self.config.stride, fill=self.config.fill, precision=precision)

    @property
    def feature_names(self) -> list[str]:
        latent = [f"latent_Z{j}" for j in range(self.latent.k)] if self.latent else []
        return latent + [f"map_{s}" for s in self.config.map_stats]

    @property
    def dim(self) -> int:
        return len(self.feature_names)

    @property
    def effect_features(self) -> list[bool]:
        """Which features are probability changes (latent CEs, map peak/mean/mass) rather than shares."""
        return [not any(n == f"map_{s}" for s in SHARE_STATS) for n in self.feature_names]

    def _chunk(self, images: torch.Tensor, differentiable: bool) -> torch.Tensor:
        parts = []
        if self.latent is not None:
            parts.append(self.latent.attribute(images, differentiable=differentiable))
        if self.config.map_stats:
            maps = self.cemap.attribute(images, differentiable=differentiable)
            parts.append(map_statistics(maps, self.config.map_stats, self.config.top_fraction))
        return torch.cat(parts, dim=1)

    def __call__(self, images: torch.Tensor, differentiable: bool = False) -> torch.Tensor:
        images = self.classifier.check_images(images)
        if differentiable:
            return self._chunk(images, True)
        return torch.cat([self._chunk(images[s], False) for s in chunks(images.shape[0], self.batch_size)]) if len(images) else torch.zeros(0, self.dim)


def _as_2d(x, n_features: int | None, what: str = "signatures") -> np.ndarray:
    arr = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or (n_features is not None and arr.shape[1] != n_features):
        raise CemapError(f"{what} of shape {arr.shape} do not fit this detector",
                         f"expected N x {n_features if n_features is not None else 'D'}; compute them with the same SignatureConfig")
    if not np.isfinite(arr).all():
        raise CemapError(f"{what} contain NaN or infinite values")
    return arr.astype(np.float64)


def signed_log(x, scale: float, mask):
    """sign(x) log(1 + |x| / scale) on the masked columns (numpy or torch): effects span orders of magnitude
    (a confident clean image moves by 1e-5, an adversarial one by 1e-1), which a linear model sees best on a log scale."""
    lib = torch if torch.is_tensor(x) else np
    out = lib.sign(x) * lib.log1p(lib.abs(x) / scale)
    return lib.where(mask, out, x)


@dataclass
class CEDetector:
    """[signed log of effect features] + standardisation + logistic regression on CE signatures (1 = adversarial).

    ``log_scale`` (None = raw features) and ``C`` are hyper-parameters (see ``select_detector``);
    ``log_features`` marks the columns that are effects (default: all). ``score_samples`` returns the
    logit (higher = more adversarial); ``predict`` thresholds it at the score that flags ``fpr`` of the
    clean fitting signatures. ``save`` writes a plain .npz.
    """

    C: float = 1.0
    log_scale: float | None = None
    fpr: float = 0.05
    feature_names: list[str] = field(default_factory=list)
    log_features: list[bool] | None = None
    signature_config: dict = field(default_factory=dict)
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None
    coef_: np.ndarray | None = None
    intercept_: float = 0.0
    threshold_: float = 0.0

    @property
    def n_features(self) -> int | None:
        return None if self.coef_ is None else len(self.coef_)

    def _check_fitted(self) -> None:
        if self.coef_ is None:
            raise CemapError("this CEDetector is not fitted yet", "call fit(signatures, is_adversarial) or CEDetector.load(path)")

    def fit(self, signatures, is_adversarial) -> "CEDetector":
        from sklearn.linear_model import LogisticRegression

        x = _as_2d(signatures, len(self.feature_names) or None)
        if self.log_features is None:
            self.log_features = [True] * x.shape[1]
        if len(self.log_features) != x.shape[1]:
            raise CemapError(f"log_features has {len(self.log_features)} entries for {x.shape[1]} features")
        x = self._transform(x)
        y = np.asarray(is_adversarial.cpu() if torch.is_tensor(is_adversarial) else is_adversarial).astype(int).reshape(-1)
        if len(y) != len(x) or set(np.unique(y)) != {0, 1}:
            raise CemapError("fit needs one 0/1 label per signature and both classes present", "label clean signatures 0 and adversarial ones 1")
        self.mean_ = x.mean(0)
        self.scale_ = np.where(x.std(0) > 1e-12, x.std(0), 1.0)
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit((x - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        self.threshold_ = float(np.quantile(self._linear(x[y == 0]), 1 - self.fpr))
        if not self.feature_names:
            self.feature_names = [f"f{j}" for j in range(x.shape[1])]
        return self

    def _transform(self, x):
        if self.log_scale is None:
            return x
        mask = np.asarray(self.log_features, dtype=bool)
        return signed_log(x, self.log_scale, mask if not torch.is_tensor(x) else torch.as_tensor(mask, device=x.device))

    def _linear(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def score_samples(self, signatures) -> np.ndarray:
        """Logit of 'adversarial' per signature (N x D -> N)."""
        self._check_fitted()
        return self._linear(self._transform(_as_2d(signatures, self.n_features)))

    def score_torch(self, signatures: torch.Tensor) -> torch.Tensor:
        """The same logit as a differentiable torch function (for adaptive attacks)."""
        self._check_fitted()
        if signatures.dim() != 2 or signatures.shape[1] != self.n_features:
            raise CemapError(f"signatures of shape {tuple(signatures.shape)} do not fit this detector", f"expected N x {self.n_features}")
        t = lambda a: torch.as_tensor(a, dtype=signatures.dtype, device=signatures.device)  # noqa: E731
        signatures = self._transform(signatures)
        return ((signatures - t(self.mean_)) / t(self.scale_)) @ t(self.coef_) + self.intercept_

    def predict(self, signatures) -> np.ndarray:
        """1 where the signature is flagged adversarial."""
        return (self.score_samples(signatures) > self.threshold_).astype(int)

    def save(self, path: str | Path) -> Path:
        """Plain arrays in an .npz (loads with allow_pickle=False: no code runs)."""
        self._check_fitted()
        path = Path(path)
        meta = {"format": FORMAT_VERSION, "C": self.C, "log_scale": self.log_scale, "log_features": self.log_features, "fpr": self.fpr, "intercept": self.intercept_, "threshold": self.threshold_,
                "feature_names": self.feature_names, "signature_config": self.signature_config}
        with open(path, "wb") as fh:
            np.savez(fh, mean=self.mean_, scale=self.scale_, coef=self.coef_, meta=np.array(json.dumps(meta)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CEDetector":
        path = Path(path)
        if not path.exists():
            raise CemapError(f"no detector file at {path}", "pass the path CEDetector.save wrote")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                mean, scale, coef = (np.asarray(data[k], dtype=np.float64) for k in ("mean", "scale", "coef"))
        except (ValueError, KeyError, OSError) as exc:
            raise CemapError(f"{path} is not a saved CEDetector ({exc})", "detectors are .npz files written by CEDetector.save") from exc
        if meta.get("format") != FORMAT_VERSION or not (mean.shape == scale.shape == coef.shape == (len(meta["feature_names"]),)):
            raise CemapError(f"{path} has an unsupported or inconsistent detector format", "re-save it with this cemap version")
        return cls(C=meta["C"], log_scale=meta["log_scale"], log_features=list(meta["log_features"]), fpr=meta["fpr"], feature_names=list(meta["feature_names"]), signature_config=meta["signature_config"],
                   mean_=mean, scale_=scale, coef_=coef, intercept_=meta["intercept"], threshold_=meta["threshold"])


def select_detector(signatures, is_adversarial, groups, Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
                    log_scales: Sequence[float | None] = (None,), folds: int = 4, seed: int = 0,
                    **detector_kw) -> tuple[CEDetector, dict[str, float]]:
    """Pick (C, log_scale) by mean validation AUROC over ``folds`` folds of the groups (images), then refit on everything.

    ``groups`` ties a clean image to its adversarial copy so both land on the same side of every split.
    """
    from .evaluate.detection import auroc

    x = _as_2d(signatures, None)
    y = np.asarray(is_adversarial).astype(int)
    groups = np.asarray(groups)
    ids = np.random.default_rng(seed).permutation(np.unique(groups))
    fold_of = dict(zip(ids.tolist(), (np.arange(len(ids)) % max(2, folds)).tolist()))
    fold = np.array([fold_of[g] for g in groups.tolist()])
    splits = [fold == f for f in range(max(2, folds))]
    splits = [v for v in splits if len(np.unique(y[v])) == 2 and len(np.unique(y[~v])) == 2]
    scores: dict[tuple, float] = {}
    for c in Cs if splits else ():
        for s in log_scales:
            scores[(float(c), s)] = float(np.mean([
                auroc(y[v], CEDetector(C=c, log_scale=s, **detector_kw).fit(x[~v], y[~v]).score_samples(x[v])) for v in splits
            ]))
    best_c, best_s = max(scores, key=scores.get) if scores else (1.0, log_scales[0])
    return CEDetector(C=best_c, log_scale=best_s, **detector_kw).fit(x, y), {f"C={c:g} log_scale={s}": v for (c, s), v in scores.items()}


class AdaptivePGD(PGD):
    """PGD against classifier *and* detector (the attack a careful reviewer asks for).

    Ascends  -max(margin, -kappa) - weight * detector logit(CE signature): the hinge on the classifier's
    margin stops pulling once a sample is misclassified by ``kappa`` logits, leaving the step to the
    detector term; the signature (latent CE profile and CE-map statistics) is differentiated end to end.
    Each sample returns the iterate that is misclassified with the lowest detector score (else the last one).
    """

    name = "adaptive-pgd"

    def __init__(self, classifier: Classifier, signature: CESignature, detector: CEDetector, weight: float = 1.0,
                 kappa: float = 1.0, **kw) -> None:
        super().__init__(classifier, **kw)
        self.signature, self.detector, self.weight, self.kappa = signature, detector, float(weight), float(kappa)

    def budget(self) -> dict:
        return {**super().budget(), "detector_weight": self.weight, "kappa": self.kappa}

    def _terms(self, x, labels, target, original) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(per-sample objective, classifier margin, detector logit) at ``x``."""
        margin = self.margin(self.logits(x), labels, target, original)
        score = self.detector.score_torch(self.signature(x, differentiable=True).double()).float()
        return -margin.clamp(min=-self.kappa) - self.weight * score, margin, score

    def starts_at_clean(self) -> bool:
        return False  # its terms need the clean decision up front

    def gradient(self, images, labels, target, original):
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)
            return torch.autograd.grad(self._terms(x, labels, target, original)[0].sum(), x)[0], original

    def perturb(self, images, labels, target, original):
        adv = self._start(images) if self.random_start else images.clone()
        best, best_score = adv.clone(), torch.full((images.shape[0],), float("inf"))
        for step in range(self.steps + 1):
            with torch.enable_grad():
                x = adv.detach().requires_grad_(True)
                objective, margin, score = self._terms(x, labels, target, original)
                grad = torch.autograd.grad(objective.sum(), x)[0] if step < self.steps else None
            better = (margin.detach() < 0) & (score.detach() < best_score)
            best[better], best_score = adv[better], torch.where(better, score.detach(), best_score)
            if grad is not None:
                adv = self._step(adv, images, grad).detach()
        never = torch.isinf(best_score)
        best[never] = adv[never]
        return best, original
