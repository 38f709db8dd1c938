"""Attribution methods on the benchmark's models: the blinded statistic and Adebayo et al.'s measures.

* Blinded (the artifact unknown): each explained image is a held-out image with at least one finding, explained for
  one of its findings (drawn with a seeded generator); the statistic is the mean share of the map's positive mass
  outside that finding's boxes - how much the map points away from the findings. Its threshold (and the direction
  that flags) is chosen on calibration models.
* Known (Adebayo et al.): the same images with the artifact added and removed, explained for the artifact's finding,
  give K-SSD, CCM and FAM (:mod:`cemap.evaluate.reliance`) once a spurious model and its normal twin are both explained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...causal.masks import box_mask
from ...data.planted import PlantedDataset
from ...evaluate.localisation import mass_share
from ...evaluate.reliance import ccm, fam, ground_truth_maps, kssd
from ...explain import get_explainer


@dataclass
class ExplainedImages:
    indices: np.ndarray  # held-out images with findings
    targets: torch.Tensor  # one present finding per image
    outside: torch.Tensor  # N x H x W: outside that finding's boxes
    added: torch.Tensor  # the images with the artifact
    removed: torch.Tensor  # and without it
    truth: torch.Tensor  # K-SSD ground truth maps


def explained_images(data: PlantedDataset, n: int, seed: int) -> ExplainedImages:
    rng = np.random.default_rng(seed)
    with_findings = np.flatnonzero(data.labels.numpy().sum(1) > 0)
    idx = np.sort(rng.choice(with_findings, size=min(n, len(with_findings)), replace=False))
    h, w = data.clean.shape[-2:]
    targets, outside = [], []
    for i in idx:
        s = data.base[int(i)]
        k = int(rng.choice(np.flatnonzero(s.labels.numpy() > 0)))
        targets.append(k)
        outside.append(~box_mask(h, w, s.boxes[s.box_labels == k]))
    added, removed = data.images(idx, True), data.images(idx, False)
    return ExplainedImages(
        idx,
        torch.tensor(targets),
        torch.stack(outside),
        added,
        removed,
        ground_truth_maps(added, removed, data.region(idx)),
    )


def method_maps(
    classifier, method: str, options: dict, images: ExplainedImages, data: PlantedDataset, correlated: PlantedDataset
) -> dict[str, torch.Tensor]:
    """Maps of one method: on the images as the two held-out splits have them (their own findings), and with the
    artifact
    added / removed (the artifact's finding)."""
    explainer = get_explainer(method, classifier, **options)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        as_is = explainer.attribute(data.images(images.indices), images.targets)
        as_is_correlated = explainer.attribute(correlated.images(images.indices), images.targets)
        added = explainer.attribute(images.added, data.target)
        removed = explainer.attribute(images.removed, data.target)
    return {"as_is": as_is, "as_is_correlated": as_is_correlated, "added": added, "removed": removed}


def blinded_score(maps: dict[str, torch.Tensor], images: ExplainedImages, key: str = "as_is") -> float:
    """Mean share of positive attribution mass outside the explained finding's boxes."""
    return float(mass_share(maps[key], images.outside).mean())


def adebayo(spurious: dict[str, torch.Tensor], normal: dict[str, torch.Tensor], images: ExplainedImages) -> dict:
    """K-SSD, CCM and FAM (mean SSIM with a bootstrap interval over images) for one method on one model pair."""
    return {
        "kssd": kssd(spurious["added"], images.truth).to_json(),
        "ccm": ccm(spurious["added"], normal["added"]).to_json(),
        "fam": fam(spurious["removed"], normal["removed"]).to_json(),
        "kssd_normal": kssd(normal["added"], images.truth).to_json(),
    }
