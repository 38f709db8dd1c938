"""The detectors CE is measured against, on the same images: maximum softmax probability
(Hendrycks & Gimpel 2017), feature squeezing (Xu et al. 2018) and local intrinsic
dimensionality (Ma et al. 2018) of the intervention layer's activations.

Each returns one score per image, higher = more adversarial; LID is a feature that the study
turns into a score with the same logistic model as the CE detector (as Ma et al. do).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..causal.batching import chunks
from ..causal.split import Split
from ..errors import CemapError
from ..models.classifier import Classifier


@torch.inference_mode()
def _probs(classifier: Classifier, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([classifier.predict_proba(images[s]).float() for s in chunks(len(images), batch_size)])


def max_softmax_score(classifier: Classifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """1 - confidence: 1 - max softmax probability, or 1 - mean over findings of max(p, 1 - p) for sigmoid heads."""
    p = _probs(classifier, classifier.check_images(images), batch_size)
    conf = p.amax(-1) if classifier.head == "softmax" else torch.maximum(p, 1 - p).mean(-1)
    return 1 - conf


def reduce_bit_depth(images: torch.Tensor, bits: int) -> torch.Tensor:
    levels = 2**bits - 1
    return torch.round(images * levels) / levels


def median_smooth(images: torch.Tensor, size: int) -> torch.Tensor:
    """scipy.ndimage.median_filter(size) as Xu et al. use it: window [i - size//2, i + (size-1)//2], upper median
    for even sizes, edge pixels repeated (scipy's 'reflect' for the one-pixel pads of 2 x 2 and 3 x 3)."""
    if size < 2:
        return images
    pad = (size // 2, (size - 1) // 2, size // 2, (size - 1) // 2)
    patches = F.pad(images, pad, mode="replicate").unfold(2, size, 1).unfold(3, size, 1)
    flat = patches.reshape(*patches.shape[:4], -1)
    return flat.sort(-1).values[..., flat.shape[-1] // 2]


def feature_squeezing_score(
    classifier: Classifier,
    images: torch.Tensor,
    bits: Sequence[int] = (1,),
    median_sizes: Sequence[int] = (2,),
    batch_size: int = 256,
) -> torch.Tensor:
    """Max over squeezers of the L1 distance between the prediction on the image and on its squeezed copy.

    Xu et al.'s MNIST setting is 1-bit depth and 2 x 2 median; for natural images they use 4-5 bits and 2 x 2 to 3 x 3.
    """
    images = classifier.check_images(images)
    if not bits and not median_sizes:
        raise CemapError("feature squeezing needs at least one squeezer", "give a bit depth or a median window size")
    p = _probs(classifier, images, batch_size)
    squeezed = [reduce_bit_depth(images, b) for b in bits] + [median_smooth(images, m) for m in median_sizes]
    return torch.stack([(p - _probs(classifier, s, batch_size)).abs().sum(-1) for s in squeezed]).amax(0)


@torch.inference_mode()
def layer_features(split: Split, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Flattened activations of the split's layer, N x D."""
    return torch.cat([split.activation(images[s])[0].flatten(1).float() for s in chunks(len(images), batch_size)])


def lid(reference: torch.Tensor, features: torch.Tensor, k: int = 20, exclude_self: bool = False) -> torch.Tensor:
    """Maximum-likelihood LID of each row of ``features`` from its k nearest neighbours in ``reference``:
    LID = -(1/k sum_i log(r_i / r_k))^-1. ``exclude_self`` drops a zero distance to itself when the rows are in
    ``reference``.
    """
    if k < 2 or k + int(exclude_self) > len(reference):
        raise CemapError(f"LID with k={k} needs more than {k} reference samples, got {len(reference)}")
    d = torch.cdist(features.double(), reference.double())
    r = d.topk(k + int(exclude_self), dim=1, largest=False).values[:, int(exclude_self) :].clamp_min(1e-12)
    return -1.0 / torch.log(r / r[:, -1:]).mean(1).clamp(max=-1e-12)


# -- differentiable features for the supervised detectors and for adaptive attacks ----------------------------------
# Every function below maps images (or activations) to an N x D torch tensor and keeps the autograd graph, so that
# an adaptive attacker can differentiate through the detector built on it (BPDA where a squeezer is not differentiable).


def confidence_features(logits: torch.Tensor, head: str) -> torch.Tensor:
    """N x 1: 1 - confidence (as :func:`max_softmax_score`), computed from logits."""
    if head == "softmax":
        return 1 - torch.softmax(logits, -1).amax(-1, keepdim=True)
    p = torch.sigmoid(logits)
    return 1 - torch.maximum(p, 1 - p).mean(-1, keepdim=True)


LOGIT_STATS = ("max_abs_logit", "mean_abs_logit", "min_abs_logit", "entropy")


def logit_statistics(logits: torch.Tensor, head: str) -> torch.Tensor:
    """N x 4: max, mean and min |logit| and the output entropy (softmax entropy; mean binary entropy for sigmoid
    heads)."""
    a = logits.abs()
    if head == "softmax":
        logp = torch.log_softmax(logits, -1)
        entropy = -(logp.exp() * logp).sum(-1)
    else:
        lp, lq = F.logsigmoid(logits), F.logsigmoid(-logits)
        entropy = -(lp.exp() * lp + lq.exp() * lq).mean(-1)
    return torch.stack([a.amax(-1), a.mean(-1), a.amin(-1), entropy], dim=-1)


def reduce_bit_depth_bpda(images: torch.Tensor, bits: int) -> torch.Tensor:
    """Bit-depth reduction whose backward pass is the identity (BPDA, Athalye et al. 2018): rounding has zero gradient
    almost everywhere, so an attacker differentiates through it as if it were the identity."""
    return images + (reduce_bit_depth(images, bits) - images).detach()


def feature_squeezing_features(
    classifier: Classifier, images: torch.Tensor, bits: Sequence[int] = (1,), median_sizes: Sequence[int] = (2,)
) -> torch.Tensor:
    """N x S: the L1 distance of the prediction to that on each squeezed copy (differentiable; bit depth through BPDA,
    the median through sort). :func:`feature_squeezing_score` is their max."""
    p = classifier.predict_proba(images).float()
    squeezed = [reduce_bit_depth_bpda(images, b) for b in bits] + [median_smooth(images, m) for m in median_sizes]
    return torch.stack([(p - classifier.predict_proba(s).float()).abs().sum(-1) for s in squeezed], dim=-1)


class Mahalanobis:
    """Lee et al. 2018: class-conditional Gaussians with one shared covariance, fitted on clean features; the score of
    a sample is its smallest Mahalanobis distance to a class mean (higher = more unusual). No input preprocessing
    (their FGSM-like noise step) and no per-layer weighting: those are left to the supervised fit on top."""

    def __init__(self, shrinkage: float = 1e-3) -> None:
        self.shrinkage = shrinkage

    def fit(self, features: torch.Tensor, classes: torch.Tensor) -> "Mahalanobis":
        x, c = features.double(), torch.as_tensor(classes).reshape(-1)
        keep = [k for k in c.unique().tolist() if int((c == k).sum()) >= 2]
        if not keep:
            raise CemapError("Mahalanobis needs at least two samples of one class")
        self.means_ = torch.stack([x[c == k].mean(0) for k in keep])
        centred = torch.cat([x[c == k] - x[c == k].mean(0) for k in keep])
        cov = centred.T @ centred / max(1, len(centred) - 1)
        cov = cov + self.shrinkage * (cov.trace() / cov.shape[0] + 1e-12) * torch.eye(cov.shape[0], dtype=cov.dtype)
        self.precision_ = torch.linalg.inv(cov)
        return self

    def distance(self, features: torch.Tensor) -> torch.Tensor:
        """N: min over classes of sqrt((f - mu_k)^T P (f - mu_k)) (differentiable)."""
        d = features.double()[:, None, :] - self.means_[None]
        return torch.einsum("nkd,de,nke->nk", d, self.precision_, d).clamp_min(0).add(1e-12).sqrt().amin(1)


def pooled(act: torch.Tensor) -> torch.Tensor:
    """N x C channel means of a N x C x ... activation (Lee et al.'s per-layer feature), N x D unchanged."""
    return act.flatten(2).mean(-1) if act.dim() > 2 else act
