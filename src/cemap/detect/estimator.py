"""The ``CEDetector``: standardisation + L2-regularised logistic regression on CE signatures.

A well-understood linear model whose few parameters are saved as a plain ``.npz`` (no pickle)
and whose score is also a torch function, so an adaptive attacker can differentiate through it.
Behind a :class:`~cemap.detect.CESignature` in a scikit-learn pipeline it is a detector of images;
:func:`save_detector` / :func:`load_detector` keep such a pipeline, the signature's configuration
included, so that a loaded detector rebuilds its own featuriser.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline

from ..causal.autoencoder import FittedAutoencoder
from ..errors import CemapError
from ..models.classifier import Classifier
from .signature import FORMAT_VERSION, CESignature, SignatureConfig


def _as_2d(x, n_features: int | None, what: str = "signatures") -> np.ndarray:
    arr = x.detach().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or (n_features is not None and arr.shape[1] != n_features):
        raise CemapError(
            f"{what} of shape {arr.shape} do not fit this detector",
            f"expected N x {n_features if n_features is not None else 'D'}; compute them with the same SignatureConfig",
        )
    if not np.isfinite(arr).all():
        raise CemapError(f"{what} contain NaN or infinite values")
    return arr.astype(np.float64)


def signed_log(x, scale: float, mask):
    """sign(x) log(1 + |x| / scale) on the masked columns (numpy or torch): effects span orders of magnitude
    (a confident clean image moves by 1e-5, an adversarial one by 1e-1), which a linear model sees best on a log
    scale."""
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

    def __init__(
        self,
        C: float = 1.0,
        log_scale: float | None = None,
        fpr: float = 0.05,
        feature_names: Sequence[str] | None = None,
        log_features: Sequence[bool] | None = None,
        signature_config: dict | None = None,
    ) -> None:
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
            raise CemapError(
                "this CEDetector is not fitted yet", "call fit(signatures, is_adversarial) or CEDetector.load(path)"
            )

    def fit(self, signatures, is_adversarial) -> "CEDetector":
        from sklearn.linear_model import LogisticRegression

        x = _as_2d(signatures, len(self.feature_names) if self.feature_names else None)
        log_features = [True] * x.shape[1] if self.log_features is None else [bool(v) for v in self.log_features]
        if len(log_features) != x.shape[1]:
            raise CemapError(f"log_features has {len(log_features)} entries for {x.shape[1]} features")
        self.log_features_ = np.asarray(log_features, dtype=bool)
        y = (
            np.asarray(is_adversarial.cpu() if torch.is_tensor(is_adversarial) else is_adversarial)
            .astype(int)
            .reshape(-1)
        )
        if len(y) != len(x) or set(np.unique(y)) != {0, 1}:
            raise CemapError(
                "fit needs one 0/1 label per signature and both classes present",
                "label clean signatures 0 and adversarial ones 1",
            )
        x = self._transform(x)
        self.mean_ = x.mean(0)
        self.scale_ = np.where(x.std(0) > 1e-12, x.std(0), 1.0)
        model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000).fit(
            (x - self.mean_) / self.scale_, y
        )
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
            raise CemapError(
                f"signatures of shape {tuple(signatures.shape)} do not fit this detector",
                f"expected N x {self.n_features}",
            )
        t = lambda a: torch.as_tensor(a, dtype=signatures.dtype, device=signatures.device)  # noqa: E731
        signatures = self._transform(signatures)
        return ((signatures - t(self.mean_)) / t(self.scale_)) @ t(self.coef_) + self.intercept_

    def predict(self, signatures) -> np.ndarray:
        """1 where the sample is flagged adversarial (decision above ``threshold_``)."""
        return (self.decision_function(signatures) > self.threshold_).astype(int)

    def score(self, signatures, is_adversarial) -> float:
        """AUROC of :meth:`decision_function` for the 0/1 labels (what ``select_detector`` and pipelines score by)."""
        return float(
            roc_auc_score(np.asarray(is_adversarial).astype(int).reshape(-1), self.decision_function(signatures))
        )

    def save(self, path: str | Path, signature_config: dict | None = None) -> Path:
        """Plain arrays in an .npz (loads with allow_pickle=False: no code runs); ``signature_config`` (default: the
        detector's own) is stored with it, so that :func:`load_detector` rebuilds the featuriser."""
        self._check_fitted()
        path = Path(path)
        config = self.signature_config if signature_config is None else signature_config
        meta = {
            "format": FORMAT_VERSION,
            "C": self.C,
            "log_scale": self.log_scale,
            "log_features": self.log_features_.tolist(),
            "fpr": self.fpr,
            "intercept": self.intercept_,
            "threshold": self.threshold_,
            "feature_names": self.feature_names_,
            "signature_config": config or {},
        }
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
            raise CemapError(
                f"{path} is not a saved CEDetector ({exc})", "detectors are .npz files written by CEDetector.save"
            ) from exc
        if meta.get("format") != FORMAT_VERSION or not (
            mean.shape == scale.shape == coef.shape == (len(meta["feature_names"]),)
        ):
            raise CemapError(
                f"{path} has an unsupported or inconsistent detector format", "re-save it with this cemap version"
            )
        det = cls(
            C=meta["C"],
            log_scale=meta["log_scale"],
            fpr=meta["fpr"],
            feature_names=list(meta["feature_names"]),
            log_features=list(meta["log_features"]),
            signature_config=meta["signature_config"],
        )
        det.mean_, det.scale_, det.coef_ = mean, scale, coef
        det.intercept_, det.threshold_ = float(meta["intercept"]), float(meta["threshold"])
        det.log_features_ = np.asarray(meta["log_features"], dtype=bool)
        det.feature_names_, det.n_features_in_ = list(meta["feature_names"]), len(coef)
        return det


def select_detector(
    signatures,
    is_adversarial,
    groups,
    Cs: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    log_scales: Sequence[float | None] = (None,),
    folds: int = 4,
    seed: int = 0,
    **detector_kw,
) -> tuple[CEDetector, dict[str, float]]:
    """Pick (C, log_scale) by mean validation AUROC with ``GridSearchCV`` over grouped folds, then refit on everything.

    ``groups`` ties a clean image to its adversarial copies so that they land on the same side of every split: the
    images are dealt to ``folds`` folds in a seeded random order and ``GroupKFold`` splits on those folds. A fold whose
    training or validation part lacks a class is left out; without any usable fold the detector is fitted with
    C = 1 and the first log scale. Returns (the refitted detector, mean validation AUROC of every setting).
    """
    x = _as_2d(signatures, None)
    y = np.asarray(is_adversarial).astype(int)
    groups = np.asarray(groups)
    ids = np.random.default_rng(seed).permutation(np.unique(groups))
    fold_of = dict(zip(ids.tolist(), (np.arange(len(ids)) % max(2, folds)).tolist()))
    fold = np.array([fold_of[g] for g in groups.tolist()])
    splits = _usable_splits(fold, y, max(2, folds))
    if not splits:
        return CEDetector(C=1.0, log_scale=log_scales[0], **detector_kw).fit(x, y), {}
    grid = {"C": [float(c) for c in Cs], "log_scale": list(log_scales)}
    search = GridSearchCV(CEDetector(**detector_kw), grid, cv=splits, error_score="raise").fit(x, y)
    results = search.cv_results_
    scores = {
        f"C={p['C']:g} log_scale={p['log_scale']}": float(v)
        for p, v in zip(results["params"], results["mean_test_score"])
    }
    return search.best_estimator_, scores


def _usable_splits(fold: np.ndarray, y: np.ndarray, folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """GroupKFold's (train, validation) indices over the fold labels, in fold order, keeping those with both classes on
    both sides."""
    n_splits = min(folds, len(np.unique(fold)))
    if n_splits < 2:
        return []
    splits = sorted(GroupKFold(n_splits=n_splits).split(fold, y, groups=fold), key=lambda tv: fold[tv[1][0]])
    return [(train, val) for train, val in splits if len(np.unique(y[train])) == 2 and len(np.unique(y[val])) == 2]


def save_detector(pipeline: Pipeline, path: str | Path) -> Path:
    """Save ``make_pipeline(CESignature(...), CEDetector())``: the detector's arrays and the signature's configuration
    (the classifier and its autoencoder are saved where they live: the model's weights, cemap's autoencoder cache)."""
    signature, detector = _parts(pipeline)
    return detector.save(
        path,
        signature_config={
            **signature.signature_config.as_dict(),
            "layer": signature.fitted.layer if signature.fitted else None,
        },
    )


def load_detector(path: str | Path, classifier: Classifier, fitted: FittedAutoencoder | None) -> Pipeline:
    """The pipeline :func:`save_detector` wrote, its CE signature rebuilt from the stored configuration for
    ``classifier`` and ``fitted``; an autoencoder at another layer than the saved one is refused."""
    detector = CEDetector.load(path)
    stored = detector.signature_config or {}
    layer = stored.get("layer")
    if layer is not None and fitted is not None and fitted.layer != layer:
        raise CemapError(
            f"{path} was fitted on signatures at layer {layer}, not {fitted.layer}",
            "pass the autoencoder it was saved with",
        )
    return make_pipeline(CESignature(classifier, fitted, SignatureConfig.from_dict(stored)), detector)


def _parts(pipeline: Pipeline) -> tuple[CESignature, CEDetector]:
    steps = [step for _, step in pipeline.steps]
    if len(steps) != 2 or not isinstance(steps[0], CESignature) or not isinstance(steps[1], CEDetector):
        raise CemapError(
            "save_detector takes make_pipeline(CESignature(...), CEDetector())",
            "save a lone CEDetector with its save method",
        )
    return steps[0], steps[1]
