"""What each concept channel Z_j of the latent autoencoder responds to, measured against ground truth.

The paper calls the autoencoder's k code channels "concepts"; nothing in it checks that they are.
For every channel Z_j, on held-out images with labels (and boxes where the data has them):

* **alignment**: the AUROC with which the channel's pooled activation (spatial mean of Z_j)
  predicts each finding or class (one-vs-rest for a softmax head), with a stratified bootstrap
  interval for the channel's best-aligned concept; 0.5 = unrelated, 1 = a perfect detector. Per
  concept, the best channel's AUROC is also given *cross-fitted* (chosen on one half of the images,
  scored on the other, both ways): the in-sample best of k channels is optimistic;
* **energy in the box**: the share of the channel's activation energy (Z_j upsampled to the image,
  ReLU outputs, so non-negative) that lies inside the boxes of each finding, on the images that
  have that finding, beside the share of the image those boxes cover (what a flat map would get);
* **causal effect**: the class CE of do(Z_j = v) on each finding or class,
  ``p_AE(c|x) - p_AE(c|x, do(Z_j = v))``, averaged over the images where c is present (or true);
* **top images**: the images that activate the channel most, with its activation map.

``concept_table(classifier, fitted, images, labels, boxes, box_labels)`` returns a
:class:`ConceptTable`; ``table.label(j)`` gives e.g. ``"Z2 - Effusion, AUROC 0.93"`` for charts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ..causal.autoencoder import FittedAutoencoder
from ..causal.concepts import channel_codes, latent_class_effects, one_hot_labels, upsample
from ..causal.masks import box_mask
from ..errors import CemapError
from ..models.classifier import Classifier
from .bootstrap import LEVEL, N_BOOT, Interval, pairwise_wins, percentile_interval, resampled_aurocs, stratified_indices

ALIGNED = 0.9  # the AUROC from which a channel is said to be aligned with a concept
TOP_IMAGES = 4


@dataclass
class ConceptRow:
    """One channel Z_j: alignment with every concept, energy inside its boxes, causal effect on it, top images."""

    channel: int
    auroc: dict[str, float]
    best: str
    best_auroc: Interval
    energy_in_box: dict[str, float | None]
    class_effect: dict[str, float]
    top_images: list[int]
    top_ids: list[str]
    top_pooled: list[float]
    top_maps: list[list[list[float]]]  # code-resolution activation map of each top image (rounded)

    def to_json(self) -> dict:
        return {
            "channel": self.channel,
            "name": f"Z{self.channel}",
            "best_concept": self.best,
            "best_auroc": self.best_auroc.to_json(),
            "auroc": {c: _num(v) for c, v in self.auroc.items()},
            "energy_in_box": {c: None if v is None else _num(v) for c, v in self.energy_in_box.items()},
            "class_effect": {c: _num(v) for c, v in self.class_effect.items()},
            "top_images": [
                {"index": i, "id": s, "pooled": v, "map": m}
                for i, s, v, m in zip(self.top_images, self.top_ids, self.top_pooled, self.top_maps)
            ],
        }


@dataclass
class ConceptTable:
    """The concept table of one autoencoder on one set of labelled (held-out) images.

    ``pooled`` (N x k) and ``maps`` (k x TOP x H x W, the top images' activation maps upsampled to the
    image) are kept for figures and for callers; ``to_json`` carries everything else.
    """

    concepts: list[str]
    rows: list[ConceptRow]
    n_images: int
    positives: dict[str, int]
    box_area: dict[str, float | None]
    layer: str
    value: str
    pooled: torch.Tensor = field(repr=False)
    maps: torch.Tensor = field(repr=False)
    truth: torch.Tensor = field(repr=False)  # N x K {0, 1}
    n_boot: int = N_BOOT
    seed: int = 0

    @property
    def k(self) -> int:
        return len(self.rows)

    def best_concept(self, j: int) -> tuple[str, float]:
        """(concept, AUROC) of the concept channel ``j``'s pooled activation predicts best."""
        row = self.rows[j]
        return row.best, row.best_auroc.estimate

    def label(self, j: int) -> str:
        """Chart label of channel j, e.g. "Z2 - Effusion, AUROC 0.93"."""
        name, auc = self.best_concept(j)
        return f"Z{j}" if not np.isfinite(auc) else f"Z{j} - {name}, AUROC {auc:.2f}"

    def labels(self) -> list[str]:
        return [self.label(j) for j in range(self.k)]

    def aligned_channels(self, concept: str, threshold: float = ALIGNED) -> list[int]:
        """Channels whose pooled activation predicts ``concept`` with AUROC >= ``threshold``, best first."""
        hits = [
            (r.auroc[concept], r.channel)
            for r in self.rows
            if np.isfinite(r.auroc[concept]) and r.auroc[concept] >= threshold
        ]
        return [j for _, j in sorted(hits, reverse=True)]

    def best_channel(self, concept: str) -> tuple[int, float]:
        """(channel, AUROC) of the channel most aligned with ``concept``."""
        aucs = [r.auroc[concept] if np.isfinite(r.auroc[concept]) else -1.0 for r in self.rows]
        j = int(np.argmax(aucs))
        return j, float(aucs[j])

    def coverage(self, threshold: float = ALIGNED) -> dict:
        """Which concepts have at least one channel aligned at AUROC >= ``threshold``, and which have none (in sample),
        and which reach it cross-fitted (the channel chosen on other images than those it is scored on)."""
        aligned = {c: self.aligned_channels(c, threshold) for c in self.concepts}
        best = {c: self._best_with_interval(i, c) for i, c in enumerate(self.concepts)}
        crossed = [c for c in self.concepts if (best[c]["cross_fitted"]["auroc"] or 0.0) >= threshold]
        return {
            "threshold": threshold,
            "aligned": [c for c in self.concepts if aligned[c]],
            "not_aligned": [c for c in self.concepts if not aligned[c]],
            "n_aligned": sum(bool(v) for v in aligned.values()),
            "n_not_aligned": sum(not v for v in aligned.values()),
            "channels": {c: [f"Z{j}" for j in v] for c, v in aligned.items()},
            "aligned_cross_fitted": crossed,
            "best_channel": best,
        }

    def _best_with_interval(self, i: int, concept: str) -> dict:
        """The best channel's in-sample AUROC (chosen and scored on the same images: optimistic, the maximum of k) and,
        beside it, the cross-fitted one (:func:`cross_fitted_auroc`), the figure to quote."""
        j, _ = self.best_channel(concept)
        truth = self.truth[:, i].numpy()
        iv = auroc_interval(self.pooled[:, j].numpy(), truth, self.n_boot, self.seed + 1000 + i)
        crossed = cross_fitted_auroc(self.pooled.numpy(), truth, self.n_boot, self.seed + 2000 + i)
        return {
            "channel": f"Z{j}",
            "auroc": _num(iv.estimate),
            "low": _num(iv.low),
            "high": _num(iv.high),
            "cross_fitted": crossed,
        }

    def to_json(self) -> dict:
        return {
            "what": "per latent channel Z_j: AUROC of its pooled activation for each concept (held-out images), share "
            "of its "
            "activation energy inside each finding's boxes (box_area: the share a flat map would get), class CE of "
            f"do(Z_j = {self.value}) on each concept (mean over images where it is present), top-activating images",
            "layer": self.layer,
            "n_images": self.n_images,
            "concepts": self.concepts,
            "positives": self.positives,
            "box_area": self.box_area,
            "labels": self.labels(),
            "coverage": self.coverage(),
            "rows": [r.to_json() for r in self.rows],
        }


def auroc_matrix(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """k x K AUROCs of each score column (N x k) predicting each binary label column (N x K); NaN where a label is
    constant.

    Rank-based (Mann-Whitney), ties count one half.
    """
    from scipy.stats import rankdata

    scores, truth = np.asarray(scores, float), np.asarray(truth) > 0
    ranks = rankdata(scores, axis=0)
    out = np.full((scores.shape[1], truth.shape[1]), np.nan)
    for c in range(truth.shape[1]):
        pos = truth[:, c]
        n1, n0 = int(pos.sum()), int((~pos).sum())
        if n1 and n0:
            out[:, c] = (ranks[pos].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return out


def auroc_interval(scores: np.ndarray, positive: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> Interval:
    """AUROC of ``scores`` for the binary ``positive`` with a stratified bootstrap interval (each side resampled with
    its
    own size; the positives' resamples are drawn first, as the published concept tables were)."""
    scores, positive = np.asarray(scores, float), np.asarray(positive) > 0
    pos, neg = scores[positive], scores[~positive]
    if len(pos) < 2 or len(neg) < 2:
        return Interval(float("nan"), float("nan"), float("nan"), int(min(len(pos), len(neg))))
    i_pos, i_neg = stratified_indices(len(pos), len(neg), n_boot, seed)
    estimate = float(pairwise_wins(neg, pos).mean())
    return Interval(
        estimate, *percentile_interval(resampled_aurocs(neg, pos, i_neg, i_pos), LEVEL), int(min(len(pos), len(neg)))
    )


def concept_halves(positive: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the images, each with half the positives and half the negatives (seeded order)."""
    positive = np.asarray(positive) > 0
    rng = np.random.default_rng(seed)
    first, second = [], []
    for side in (np.flatnonzero(positive), np.flatnonzero(~positive)):
        side = rng.permutation(side)
        first.append(side[: len(side) // 2])
        second.append(side[len(side) // 2 :])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(second))


def cross_fitted_auroc(scores: np.ndarray, positive: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> dict:
    """AUROC of the best of k channels, chosen on one half of the images and scored on the other, both ways (2-fold).

    The in-sample figure - the best of k AUROCs on the images it is read from - is a maximum, biased upwards: a
    channel aligned by chance on these images wins. Here each half's choice is scored on images it never saw; the
    estimate is the mean of the two held-out AUROCs, its interval resamples each held-out half (positives and
    negatives apart, as :func:`auroc_interval`) with the choices fixed.

    Args:
        scores: N x k, one column per channel. positive: N, the concept present (1) or not (0).
    Returns:
        {"auroc", "low", "high", "n" (images), "channels" (chosen on each half), "fold_aurocs"}; NaN (None) where a
        half has fewer than 2 positives or 2 negatives.
    """
    scores, positive = np.asarray(scores, float), np.asarray(positive) > 0
    halves = concept_halves(positive, seed)
    folds, channels, resampled = [], [], []
    for fold, (choose, score) in enumerate((halves, halves[::-1])):
        auc = auroc_matrix(scores[choose], positive[choose, None])[:, 0]
        pos, neg = scores[score][positive[score]], scores[score][~positive[score]]
        if not np.isfinite(auc).any() or min(len(pos), len(neg)) < 2:
            return {"auroc": None, "low": None, "high": None, "n": len(positive), "channels": [], "fold_aurocs": []}
        j = int(np.nanargmax(auc))
        i_pos, i_neg = stratified_indices(len(pos), len(neg), n_boot, seed + fold)
        folds.append(float(pairwise_wins(neg[:, j], pos[:, j]).mean()))
        channels.append(f"Z{j}")
        resampled.append(resampled_aurocs(neg[:, j], pos[:, j], i_neg, i_pos))
    low, high = percentile_interval(np.mean(resampled, 0), LEVEL)
    return {
        "auroc": _num(np.mean(folds)),
        "low": _num(low),
        "high": _num(high),
        "n": len(positive),
        "channels": channels,
        "fold_aurocs": [_num(a) for a in folds],
    }


@torch.inference_mode()
def pooled_alignment(
    classifier: Classifier, fitted: FittedAutoencoder, images: torch.Tensor, labels: torch.Tensor
) -> np.ndarray:
    """k x K AUROCs of each channel's pooled activation for each concept: the alignment alone, without the causal
    effects (cheap: one prefix and encoder pass per image), e.g. to choose aligned channels on one split and measure
    on another."""
    pooled = channel_codes(classifier, fitted, images).mean(dim=(2, 3))
    return auroc_matrix(pooled.numpy(), one_hot_labels(labels, len(classifier.class_names)).numpy())


def concept_table(
    classifier: Classifier,
    fitted: FittedAutoencoder,
    images: torch.Tensor,
    labels: torch.Tensor,
    boxes: Sequence[torch.Tensor] | None = None,
    box_labels: Sequence[torch.Tensor] | None = None,
    ids: Sequence[str] | None = None,
    value: str | float = "zero",
    top: int = TOP_IMAGES,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> ConceptTable:
    """Measure what every channel Z_j of ``fitted`` responds to, on held-out ``images`` (N x C x H x W in [0, 1]).

    Args:
        labels: N class indices (softmax) or N x K multi-hot findings (sigmoid).
        boxes, box_labels: per image an M x 4 xyxy pixel tensor and the M concept indices of its boxes
            (synthcxr's ``Sample.boxes`` / ``box_labels``); without them ``energy_in_box`` is None.
        ids: image names for the top-image lists (default: their indices).
        value: the intervention value of the causal effects (as in :class:`LatentCE`).
    Returns:
        ConceptTable with one :class:`ConceptRow` per channel.

    Example:
        >>> table = concept_table(clf, fitted, batch.images, batch.labels, batch.boxes, batch.box_labels)
        >>> table.label(2)   # 'Z2 - Effusion, AUROC 0.93'
    """
    images = classifier.check_images(images)
    n, names = len(images), list(classifier.class_names)
    truth = one_hot_labels(labels, len(names))
    if len(truth) != n:
        raise CemapError(f"{len(truth)} labels for {n} images", "pass one label (or label row) per image")
    if boxes is not None and (box_labels is None or len(boxes) != n or len(box_labels) != n):
        raise CemapError(
            "boxes need box_labels, one entry per image", "pass Sample.boxes and Sample.box_labels of every image"
        )
    ids = list(ids) if ids is not None else [str(i) for i in range(n)]
    codes = channel_codes(classifier, fitted, images)  # N x k x h x w
    k = codes.shape[1]
    pooled = codes.mean(dim=(2, 3))
    auc = auroc_matrix(pooled.numpy(), truth.numpy())
    effects = latent_class_effects(classifier, fitted, images, value)  # N x k x K
    present = truth.bool()
    mean_effect = torch.stack(
        [
            effects[present[:, c], :, c].mean(0) if present[:, c].any() else torch.full((k,), float("nan"))
            for c in range(len(names))
        ],
        1,
    )  # k x K
    size = tuple(images.shape[-2:])
    energy, area = _energy_in_boxes(codes, size, boxes, box_labels, len(names))
    order = pooled.argsort(0, descending=True)[: min(top, n)].T  # k x top
    maps = torch.stack([upsample(codes[order[j], j], size) for j in range(k)])
    rows = []
    for j in range(k):
        finite = np.where(np.isfinite(auc[j]), auc[j], -np.inf)
        b = int(np.argmax(finite))
        best_iv = (
            auroc_interval(pooled[:, j].numpy(), truth[:, b].numpy(), n_boot, seed + j)
            if np.isfinite(auc[j, b])
            else Interval(float("nan"), float("nan"), float("nan"), 0)
        )
        rows.append(
            ConceptRow(
                channel=j,
                auroc={c: float(auc[j, i]) for i, c in enumerate(names)},
                best=names[b],
                best_auroc=best_iv,
                energy_in_box={c: None if energy is None else float(energy[j, i]) for i, c in enumerate(names)},
                class_effect={c: float(mean_effect[j, i]) for i, c in enumerate(names)},
                top_images=order[j].tolist(),
                top_ids=[ids[i] for i in order[j].tolist()],
                top_pooled=[round(float(pooled[i, j]), 4) for i in order[j].tolist()],
                top_maps=[np.round(codes[i, j].numpy(), 3).tolist() for i in order[j].tolist()],
            )
        )
    return ConceptTable(
        concepts=names,
        rows=rows,
        n_images=n,
        positives={c: int(truth[:, i].sum()) for i, c in enumerate(names)},
        box_area={c: None if area is None else _num(area[i]) for i, c in enumerate(names)},
        layer=fitted.layer,
        value=str(value),
        pooled=pooled,
        maps=maps,
        truth=truth,
        n_boot=n_boot,
        seed=seed,
    )


def _energy_in_boxes(codes: torch.Tensor, size: tuple[int, int], boxes, box_labels, n_concepts: int):
    """(k x K mean share of each channel's energy inside concept c's boxes over the images with such boxes, K mean box
    area share)."""
    if boxes is None:
        return None, None
    k = codes.shape[1]
    total = torch.zeros(k, n_concepts)
    area = torch.zeros(n_concepts)
    count = torch.zeros(n_concepts)
    for i, (bx, bl) in enumerate(zip(boxes, box_labels)):
        bl = torch.as_tensor(bl).reshape(-1)
        if not len(bl):
            continue
        maps = upsample(codes[i], size)  # k x H x W
        energy = maps.sum(dim=(1, 2))
        for c in bl.unique().tolist():
            m = box_mask(size[0], size[1], bx[bl == c]).float()
            inside = (maps * m).sum(dim=(1, 2))
            total[:, c] += torch.where(energy > 0, inside / energy.clamp_min(1e-12), torch.zeros_like(energy))
            area[c] += m.mean()
            count[c] += 1
    with np.errstate(invalid="ignore"):
        return (total / count).numpy(), (area / count).numpy()


def _num(x) -> float | None:
    x = float(x)
    return round(x, 6) if np.isfinite(x) else None
