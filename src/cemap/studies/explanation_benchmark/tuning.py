"""Equal tuning: every method picks its settings on validation images, among the same number of candidates, by the same
rule.

The rule (stated before any figure): the candidate with the highest *selection score* - the
mean single-maximum pointing game plus the mean ground-truth top-1 agreement, both on the
validation pairs - wins; the first in the list on a tie. T(IoBB) takes no part (it is
uninformative on synthcxr). Every candidate's scores and time are recorded. The floors are
scored on the same pairs, so the record shows whether the selection metrics could tell maps
apart there. CheXlocalize's binarisation threshold is then chosen per finding, per method, on
the chosen candidate's validation maps.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch

from ...evaluate.localisation import tune_chexlocalize_thresholds
from ...explain.gradients import spatial_layers
from .config import FLOORS, SELECTION, TUNED, BenchmarkConfig, candidates
from .data import BenchPairs
from .methods import MethodFactory
from .metrics import effects_of, ground_truth, localisation

log = logging.getLogger(__name__)


def selection_scores(maps: torch.Tensor, pairs: BenchPairs, effects, seed: int) -> dict:
    """The two selection metrics and their sum on these pairs (plus the rank correlation, for the record)."""
    loc = localisation(maps, pairs, seed)
    gt = ground_truth(maps, pairs, effects, seed)
    scores = {
        "pointing_game": float(np.nanmean(loc["pointing_game"])),
        "gt_top1": float(np.nanmean(gt["gt_top1"])),
        "gt_rank": float(np.nanmean(gt["gt_rank"])),
    }
    scores["score"] = sum(scores[k] for k in SELECTION)
    return scores


def tune_method(
    method: str, clf, pairs: BenchPairs, effects, factory: MethodFactory, cfg: BenchmarkConfig, cam_layers
) -> dict:
    """Score the first ``cfg.n_candidates`` candidates of ``method`` on the validation pairs; the record of all of them
    and the choice."""
    scored, maps_of = [], []
    for options in candidates(method, cfg.size, cam_layers)[: cfg.n_candidates]:
        t = time.perf_counter()
        maps = factory(method, clf, pairs, options=options).attribute(pairs.images, pairs.targets).cpu()
        entry = {
            "options": options,
            **selection_scores(maps, pairs, effects, cfg.seed),
            "seconds": time.perf_counter() - t,
        }
        scored.append(entry), maps_of.append(maps)
        log.info(
            "tuning %s %s: PG %.3f GT-top1 %.3f (%.0f s)",
            method,
            options,
            entry["pointing_game"],
            entry["gt_top1"],
            entry["seconds"],
        )
    best = max(range(len(scored)), key=lambda i: (scored[i]["score"], -i))
    return {"candidates": scored, "chosen": scored[best]["options"], "chosen_index": best, "_maps": maps_of[best]}


def tune_all(clf, pairs: BenchPairs, cfg: BenchmarkConfig) -> tuple[dict[str, dict], dict, dict[str, torch.Tensor]]:
    """(chosen options per method, the tuning record, the chosen candidates' validation maps) on the validation
    pairs."""
    t0 = time.perf_counter()
    effects = effects_of(clf, pairs)
    cam_layers = spatial_layers(clf)
    factory = MethodFactory({}, cfg.size, cfg.seed)
    record: dict = {
        "split": f"synthcxr val, generator seed {cfg.tune_seed} (drawn like train, never trained on)",
        "n_images": pairs.n_images,
        "n_pairs": len(pairs),
        "n_pairs_several_lesions": int(pairs.several.sum()),
        "rule": "highest mean single-maximum pointing game + mean ground-truth top-1 agreement on the "
        "validation pairs; "
        "the first candidate on ties; the same number of candidates for every method",
        "n_candidates": cfg.n_candidates,
        "methods": {},
        "floors": {},
    }
    chosen: dict[str, dict] = {}
    maps: dict[str, torch.Tensor] = {}
    for method in TUNED:
        if method in cfg.methods:
            record["methods"][method] = tune_method(method, clf, pairs, effects, factory, cfg, cam_layers)
            chosen[method] = record["methods"][method]["chosen"]
            maps[method] = record["methods"][method].pop("_maps")
    for floor in FLOORS:
        if floor in cfg.methods:
            maps[floor] = factory(floor, clf, pairs).attribute(pairs.images, pairs.targets).cpu()
            record["floors"][floor] = selection_scores(maps[floor], pairs, effects, cfg.seed)
    record["seconds"] = time.perf_counter() - t0
    return chosen, record, maps


def chexlocalize_thresholds(maps_by_method: dict[str, torch.Tensor], pairs: BenchPairs) -> dict[str, dict]:
    """Per method, per finding, CheXlocalize's threshold (0.2 ... 0.7, highest validation mIoU) from its validation
    maps."""
    return {
        m: {str(f): v for f, v in tune_chexlocalize_thresholds(maps, pairs.masks, pairs.targets).items()}
        for m, maps in maps_by_method.items()
    }


def thresholds_for(table: dict, targets: torch.Tensor) -> torch.Tensor:
    """B thresholds: each pair's finding's tuned threshold (0.5 for a finding never seen on validation)."""
    return torch.tensor([table.get(str(int(t)), {}).get("threshold", 0.5) for t in targets], dtype=torch.float64)
