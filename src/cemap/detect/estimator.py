"""The ``CEDetector``: standardisation + L2-regularised logistic regression on CE signatures.

A well-understood linear model whose few parameters are saved as a plain ``.npz`` (no pickle)
and whose score is also a torch function, so an adaptive attacker can differentiate through it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..errors import CemapError
from .signature import FORMAT_VERSION

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


class CEDetector(BaseEstimator):
    """[signed log of effect features] + standardisation + logistic regression on detector features (1 = adversarial).

    A scikit-learn estimator: the constructor stores its parameters verbatim (``clone`` works), everything
    learned by :meth:`fit` ends in ``_``. ``log_scale`` (None = raw features) and ``C`` are hyper-parameters
    (see ``select_detector``); ``log_features`` marks the columns the signed log applies to (None: all).

    * :meth:`decision_function` - the logit of "adversarial": **higher = more adversarial**;
    * :meth:`score_samples` - scikit-learn's outlier convention, **higher = more normal** (minus the logit);
    * :meth:`predict` - 1 where the logit exceeds ``threshold_``, the score that flags ``fpr`` of the clean
      fitting samples;
    * :meth:`save` / :meth:`load` - plain arrays in an .npz (no pickle).
    """

    def __init__(self, C: float = 1.0, log_scale: float | None = None, fpr: float = 0.05, feature_names: Sequence[str] | None = None,
                 log_features: Sequence[bool] | None = None, signature_config: dict | None = None) -> None:
        self.C = C
        self.log_scale = log_scale
        self.fpr = fpr
        self.feature_names = feature_names
        self.log_features = log_features
        self.signature_config = signature_config

    @property
    def n_features(self) -> int | None:
        return None if getattr(self, "coef_", None) is None else len(self.coef_)

    def _check_fitted(self) -> None:
        if getattr(self, "coef_", None) is None:
            raise CemapError("this CEDetector is not fitted yet", "call fit(signatures, is_adversarial) or CEDetector.load(path)")

    def fit(self, signatures, is_adversarial) -> "CEDetector":
        from sklearn.linear_model import LogisticRegression

        x = _as_2d(signatures, len(self.feature_names) if self.feature_names else None)
        log_features = [True] * x.shape[1] if self.log_features is None else [bool(v) for v in self.log_features]
        if len(log_features) != x.shape[1]:
            raise CemapError(f"log_features has {len(log_features)} entries for {x.shape[1]} features")
        self.log_features_ = np.asarray(log_features, dtype=bool)
        y = np.asarray(is_adversarial.cpu() if torch.is_tensor(is_adversarial) else is_adversarial).astype(int).reshape(-1)
        if len(y) != len(x) or set(np.unique(y)) != {0, 1}:
            raise CemapError("fit needs one 0/1 label per signature and both classes present", "label clean signatures 0 and adversarial ones 1")
        x = self._transform(x)
        self.mean_ = x.mean(0)
        self.scale_ = np.where(x.std(0) > 1e-12, x.std(0), 1.0)
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit((x - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        self.threshold_ = float(np.quantile(self._linear(x[y == 0]), 1 - self.fpr))
        self.feature_names_ = list(self.feature_names) if self.feature_names else [f"f{j}" for j in range(x.shape[1])]
        self.n_features_in_ = x.shape[1]
        return self

    def _transform(self, x):
        if self.log_scale is None:
            return x
        mask = self.log_features_
        return signed_log(x, self.log_scale, mask if not torch.is_tensor(x) else torch.as_tensor(mask, device=x.device))

    def _linear(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean_) / self.scale_) @ self.coef_ + self.intercept_

    def decision_function(self, signatures) -> np.ndarray:
        """Logit of 'adversarial' per sample (N x D -> N): higher = more adversarial."""
        self._check_fitted()
        return self._linear(self._transform(_as_2d(signatures, self.n_features)))

    def score_samples(self, signatures) -> np.ndarray:
        """scikit-learn's outlier convention (``IsolationForest``, ``LocalOutlierFactor``): higher = more normal, i.e.
        ``-decision_function``. For "how adversarial", use :meth:`decision_function`."""
        return -self.decision_function(signatures)

    def score_torch(self, signatures: torch.Tensor) -> torch.Tensor:
        """:meth:`decision_function` as a differentiable torch function (for adaptive attacks)."""
        self._check_fitted()
        if signatures.dim() != 2 or signatures.shape[1] != self.n_features:
            raise CemapError(f"signatures of shape {tuple(signatures.shape)} do not fit this detector", f"expected N x {self.n_features}")
        t = lambda a: torch.as_tensor(a, dtype=signatures.dtype, device=signatures.device)  # noqa: E731
        signatures = self._transform(signatures)
        return ((signatures - t(self.mean_)) / t(self.scale_)) @ t(self.coef_) + self.intercept_

    def predict(self, signatures) -> np.ndarray:
        """1 where the sample is flagged adversarial (decision above ``threshold_``)."""
        return (self.decision_function(signatures) > self.threshold_).astype(int)

    def save(self, path: str | Path) -> Path:
        """Plain arrays in an .npz (loads with allow_pickle=False: no code runs)."""
        self._check_fitted()
        path = Path(path)
        meta = {"format": FORMAT_VERSION, "C": self.C, "log_scale": self.log_scale, "log_features": self.log_features_.tolist(), "fpr": self.fpr,
                "intercept": self.intercept_, "threshold": self.threshold_, "feature_names": self.feature_names_,
                "signature_config": self.signature_config or {}}
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
        det = cls(C=meta["C"], log_scale=meta["log_scale"], fpr=meta["fpr"], feature_names=list(meta["feature_names"]),
                  log_features=list(meta["log_features"]), signature_config=meta["signature_config"])
        det.mean_, det.scale_, det.coef_ = mean, scale, coef
        det.intercept_, det.threshold_ = float(meta["intercept"]), float(meta["threshold"])
        det.log_features_ = np.asarray(meta["log_features"], dtype=bool)
        det.feature_names_, det.n_features_in_ = list(meta["feature_names"]), len(coef)
        return det


def select_detector(signatures, is_adversarial, groups, Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
                    log_scales: Sequence[float | None] = (None,), folds: int = 4, seed: int = 0,
                    **detector_kw) -> tuple[CEDetector, dict[str, float]]:
    """Pick (C, log_scale) by mean validation AUROC over ``folds`` folds of the groups (images), then refit on everything.

    ``groups`` ties a clean image to its adversarial copy so both land on the same side of every split.
    """
    from ..evaluate.detection import auroc

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
                auroc(y[v], CEDetector(C=c, log_scale=s, **detector_kw).fit(x[~v], y[~v]).decision_function(x[v])) for v in splits
            ]))
    best_c, best_s = max(scores, key=scores.get) if scores else (1.0, log_scales[0])
    return CEDetector(C=best_c, log_scale=best_s, **detector_kw).fit(x, y), {f"C={c:g} log_scale={s}": v for (c, s), v in scores.items()}
