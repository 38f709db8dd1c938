"""Sanity v2 for one method on the first ``n_sanity`` held-out pairs (:mod:`cemap.evaluate.sanity`,
:mod:`cemap.evaluate.mprt`).

Per method: full cascading randomisation over ``sanity_seeds`` (the two-sided verdict),
independent randomisation of each block (seed 0), Arun et al.'s different-image baseline beside
the seed-0 cascade, Efficient and Smooth MPRT, the random-logit test, and - for cxr-cnn - the
data-randomisation test against the same network retrained on permuted labels. A seeded method
(RISE, Kernel SHAP, the random map) draws *fresh* random numbers for every randomised model.

What these tests can and cannot show for a perturbation method (CE, Occlusion, RISE, Kernel
SHAP) is in docs/evaluation.md: a masking effect on a random network is still a real effect of
that network, so a perturbation map of a random model is not noise; it follows the image's
contrast, and the |map| correlation measures the image as much as the method.
"""

from __future__ import annotations

import itertools
import logging

import numpy as np
import torch

from ...data.base import Sample
from ...evaluate.bootstrap import cluster_bootstrap_mean, cluster_paired_difference
from ...evaluate.mprt import efficient_mprt, smooth_mprt
from ...evaluate.sanity import (
    different_image_baseline,
    layer_blocks,
    map_similarity,
    random_logit_similarity,
    randomised_blocks,
    sanity_verdict,
)
from .config import BenchmarkConfig
from .data import BenchPairs
from .methods import MethodFactory
from .metrics import generator

log = logging.getLogger(__name__)
KEYS = ("spearman", "spearman_abs", "ssim_abs")


def _intervals(sims: dict[str, torch.Tensor], clusters, n_boot: int) -> dict:
    return {k: cluster_bootstrap_mean(sims[k].numpy(), clusters, n_boot).to_json() for k in KEYS}


def cascade(method, clf, pairs, maps, factory: MethodFactory, cfg: BenchmarkConfig, blocks) -> tuple[dict, dict]:
    """(the two-sided verdict at full cascading randomisation over the seeds, the seed-0 similarities)."""
    records = []
    for seed in cfg.sanity_seeds:
        random_clf = randomised_blocks(clf, blocks, torch.Generator().manual_seed(1000 * seed + len(blocks) - 1))
        random_maps = factory(method, random_clf, pairs, seed_offset=1 + seed).attribute(pairs.images, pairs.targets)
        records.append({"seed": int(seed), **map_similarity(maps, random_maps)})
    return sanity_verdict(records, clusters=pairs.image_index.numpy()), records[0]


def independent(method, clf, pairs, maps, factory, cfg: BenchmarkConfig, blocks) -> list[dict]:
    """Seed 0, one block at a time (output first): the similarity after re-initialising only that block."""
    rows = []
    for step, block in enumerate(blocks):
        random_clf = randomised_blocks(clf, [block], torch.Generator().manual_seed(step))
        random_maps = factory(method, random_clf, pairs, seed_offset=1).attribute(pairs.images, pairs.targets)
        rows.append(
            {"block": block, **_intervals(map_similarity(maps, random_maps), pairs.image_index.numpy(), cfg.n_boot)}
        )
    return rows


def arun_baseline(first: dict, maps: torch.Tensor, pairs: BenchPairs, cfg: BenchmarkConfig) -> dict:
    """Arun et al.: is the randomised model's map closer to the trained one than another image's trained map is?"""
    base = different_image_baseline(maps, pairs.image_index, generator(cfg.seed, "arun"))
    clusters = pairs.image_index.numpy()
    out = {"baseline": _intervals(base, clusters, cfg.n_boot)}
    for k in KEYS:
        d = cluster_paired_difference(
            first[k].numpy(), base[k].numpy(), clusters, higher_is_better=False, n_boot=cfg.n_boot
        )
        out[f"randomised_minus_baseline_{k}"] = {**d.to_json(), "verdict": d.verdict}
    d = out["randomised_minus_baseline_spearman_abs"]
    out["passes"] = bool(d["low"] == d["low"] and d["low"] <= 0)
    out["criterion"] = (
        "the seed-0 fully randomised model's |map| is not significantly closer (Spearman) to the trained map "
        "than the trained "
        "map of a different image (the interval of the difference reaches 0 or below)"
    )
    return out


def run_sanity(
    method: str, clf, pairs: BenchPairs, maps: torch.Tensor, factory: MethodFactory, cfg: BenchmarkConfig, permuted=None
) -> dict:
    """Every sanity figure of one method on these pairs (see the module docstring)."""
    blocks = layer_blocks(clf)
    clusters = pairs.image_index.numpy()
    offsets = itertools.count(100)  # every explainer built below draws fresh random numbers (RISE masks, coalitions)
    make = lambda c, off=None: factory(method, c, pairs, seed_offset=next(offsets) if off is None else off)  # noqa: E731
    verdict, first = cascade(method, clf, pairs, maps, factory, cfg, blocks)
    out = {
        "blocks": blocks,
        "n_pairs": len(pairs),
        "n_images": pairs.n_images,
        "cascading_full": verdict,
        "arun": arun_baseline(first, maps, pairs, cfg),
    }
    if cfg.independent:
        out["independent_seed0"] = independent(method, clf, pairs, maps, factory, cfg, blocks)
    out["efficient_mprt"] = cluster_bootstrap_mean(
        efficient_mprt(make, clf, pairs.images, pairs.targets, maps), clusters, cfg.n_boot
    ).to_json()
    if cfg.smooth_samples:
        rng = np.random.default_rng(cfg.seed)
        out["smooth_mprt"] = {
            "nr_samples": cfg.smooth_samples,
            **cluster_bootstrap_mean(
                smooth_mprt(make, clf, pairs.images, pairs.targets, nr_samples=cfg.smooth_samples, rng=rng),
                clusters,
                cfg.n_boot,
            ).to_json(),
        }
    logit = random_logit_similarity(
        lambda c: make(c, 0), clf, pairs.images, pairs.targets, maps, generator(cfg.seed, "random-logit")
    )
    out["random_logit"] = _intervals(logit, clusters, cfg.n_boot)
    if permuted is not None:
        other = make(permuted).attribute(pairs.images, pairs.targets)
        sims = map_similarity(maps, other)
        out["data_randomisation"] = {**_intervals(sims, clusters, cfg.n_boot)}
        out["data_randomisation"]["passes"] = all(
            -0.3 < out["data_randomisation"][k]["low"] and out["data_randomisation"][k]["high"] < 0.3
            for k in ("spearman", "spearman_abs")
        )
    return out


class PermutedLabels(torch.utils.data.Dataset):
    """A dataset whose labels are those of other images (a seeded permutation): nothing left to learn but the images."""

    def __init__(self, dataset, seed: int = 0) -> None:
        self.dataset, self.class_names, self.multilabel = dataset, dataset.class_names, dataset.multilabel
        self.order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        s = self.dataset[index]
        return Sample(image=s.image, labels=self.dataset[int(self.order[index])].labels, id=s.id)

    def loader(self, batch_size: int = 64, shuffle: bool = False, seed: int = 0):
        from ...data.base import collate

        return torch.utils.data.DataLoader(
            self,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=collate,
            generator=torch.Generator().manual_seed(seed),
        )


def permuted_label_model(size: int, train_seed: int = 0):
    """cxr-cnn trained exactly like the built-in one but on permuted labels (cached), folded and wrapped the same
    way."""
    from ...data import get_dataset
    from ...data.synthcxr import FINDINGS, GENERATOR_VERSION
    from ...models.cxr_cnn import TRAIN_CONFIG, CxrCNN, cxr_classifier
    from ...models.training import builtin_weights

    config = {
        **TRAIN_CONFIG,
        "seed": train_seed,
        "size": size,
        "data_version": GENERATOR_VERSION,
        "labels": "permuted (seed 0)",
    }
    net = builtin_weights(
        "cxr-cnn-permuted-labels",
        lambda: CxrCNN(len(FINDINGS)),
        config,
        lambda: PermutedLabels(get_dataset("synthcxr", split="train", size=size)),
        multilabel=True,
    )
    return cxr_classifier(net, size, "cxr-cnn-permuted-labels")
