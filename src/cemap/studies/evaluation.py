"""The comparison study: every explanation method on the same (image, finding) pairs, every metric, one table.

Pairs: for a dataset with boxes, each test image with at least one box contributes one pair
per finding it shows (target = that finding, boxes = that finding's boxes); without boxes
(mnist5k) each image is one pair with its true class and the localisation columns are absent.
Localisation and faithfulness use every pair; the map-stability metrics (noise, FGSM, weight
randomisation) need two to three more maps per pair and use the first ``n_robust`` pairs.

CE's settings are the user's (``method_options['ce']``) or chosen by :func:`tune_ce` on the
*train* split - never on the test pairs that are reported.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace

import torch

from ..cache import cache_path, load_json_cached
from ..causal.autoencoder import model_fingerprint
from ..data.base import ImageDataset
from ..errors import CemapError, unknown_name
from ..evaluate.faithfulness import deletion_auc, insertion_auc
from ..evaluate.localisation import (
    IOBB_THRESHOLDS,
    box_masks,
    energy_pointing,
    iobb_accuracy,
    pointing_game,
    pointing_game_hits,
)
from ..evaluate.robustness import fgsm_stability, noise_stability
from ..evaluate.sanity import randomisation_correlation
from ..evaluate.shortcut import marker_share
from ..explain import get_explainer, list_explainers
from ..jsonio import write_json
from ..models.classifier import Classifier
from .context import StudyContext
from .explorer import save_explorer_batch
from .figures import OverlayGrid
from .results import EvaluationResult

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """Everything that fixes the numbers of a study (written into evaluation.json)."""

    n_images: int | None = None  # test images (with boxes, where the data has them); None = all
    n_robust: int = 64  # pairs for the noise / FGSM / randomisation metrics
    steps: int = 16  # deletion / insertion curve: steps + 1 points
    noise_sigma: float = 0.02  # Gaussian noise, in [0, 1] pixel units
    fgsm_eps: float = 2 / 255
    tolerance_224: float = 15.0  # pointing-game tolerance at 224 px (Zhang et al.), scaled to the image size
    iobb_level: float = (
        0.5  # T(IoBB): threshold the map at this fraction of its maximum; the peak's region is the detection
    )
    n_figure: int = 6
    seed: int = 0
    method_options: dict[str, dict] = field(default_factory=dict)
    methods: tuple[str, ...] | None = None  # None: every registered method
    tune: bool = False  # choose CE's fill and cell on the train split (unless method_options has "ce")
    tune_images: int = 60  # train images (all their boxed findings) that choice is made on


@dataclass
class Pairs:
    """(image, target) pairs to explain, with the target's boxes."""

    images: torch.Tensor
    targets: torch.Tensor
    boxes: list[torch.Tensor]
    ids: list[str]
    image_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def has_boxes(self) -> bool:
        return any(b.numel() for b in self.boxes)

    def take(self, n: int) -> "Pairs":
        return Pairs(self.images[:n], self.targets[:n], self.boxes[:n], self.ids[:n], self.image_index[:n])


def evaluation_pairs(dataset: ImageDataset, n_images: int | None = None, seed: int = 0) -> Pairs:
    """One pair per (image, finding with a box); for box-less data one pair per image and its label.

    With ``n_images`` a seeded random subset of the eligible images is used (all its pairs kept).
    """
    samples = [dataset[i] for i in range(len(dataset))]
    with_boxes = [i for i, s in enumerate(samples) if s.boxes.numel()]
    eligible = with_boxes or list(range(len(samples)))
    if n_images is not None and n_images < len(eligible):
        order = torch.randperm(len(eligible), generator=torch.Generator().manual_seed(seed))[:n_images]
        eligible = sorted(eligible[int(k)] for k in order)
    images, targets, boxes, ids, index = [], [], [], [], []
    for i in eligible:
        s = samples[i]
        if with_boxes:
            for f in torch.unique(s.box_labels).tolist():
                (
                    images.append(s.image),
                    targets.append(f),
                    boxes.append(s.boxes[s.box_labels == f]),
                    ids.append(f"{s.id}/{dataset.class_names[f]}"),
                    index.append(i),
                )
        else:
            (
                images.append(s.image),
                targets.append(int(s.labels)),
                boxes.append(torch.zeros(0, 4)),
                ids.append(s.id),
                index.append(i),
            )
    if not images:
        raise CemapError(f"dataset {dataset.name or ''} has no images to evaluate")
    return Pairs(torch.stack(images), torch.tensor(targets), boxes, ids, torch.tensor(index))


def _mean(values: torch.Tensor) -> float:
    v = values.float()
    return float(torch.nanmean(v)) if v.numel() else float("nan")


def localisation_row(maps: torch.Tensor, pairs: Pairs, cfg: EvalConfig) -> dict[str, float]:
    tolerance = cfg.tolerance_224 * maps.shape[-1] / 224
    masks = box_masks(tuple(maps.shape[-2:]), pairs.boxes)

    def single(
        tol: float = 0.0,
    ) -> torch.Tensor:  # one maximum per map, ties broken by a seeded draw (a blocky map gains nothing)
        return pointing_game(
            maps, masks, rule="single", tolerance=tol, generator=torch.Generator().manual_seed(cfg.seed)
        )

    row = {
        "pointing_game": _mean(single()),
        "pointing_game_any_tie": _mean(pointing_game_hits(maps, pairs.boxes)),
        "pointing_game_tol": _mean(single(tolerance)),
        "energy_pointing": _mean(energy_pointing(maps, pairs.boxes)),
    }
    for t, hits in iobb_accuracy(maps, pairs.boxes, IOBB_THRESHOLDS, level=cfg.iobb_level).items():
        row[f"iobb@{t:g}"] = _mean(hits)
    return row


def evaluate_method(
    name: str, classifier: Classifier, pairs: Pairs, cfg: EvalConfig, marker_masks: torch.Tensor | None = None
) -> tuple[dict, torch.Tensor]:
    """(one table row for method ``name``, its maps)."""
    options = cfg.method_options.get(name, {})
    t0 = time.perf_counter()
    explainer = get_explainer(name, classifier, **options)
    maps = explainer.attribute(pairs.images, pairs.targets)
    t_maps = time.perf_counter() - t0
    row: dict = {
        "method": name,
        "options": options,
        "n_images": int(torch.unique(pairs.image_index).numel()),
        "n_pairs": len(pairs),
    }
    if pairs.has_boxes:
        row.update(localisation_row(maps, pairs, cfg))
    row["deletion_auc"] = _mean(deletion_auc(classifier, pairs.images, maps, pairs.targets, steps=cfg.steps))
    row["insertion_auc"] = _mean(insertion_auc(classifier, pairs.images, maps, pairs.targets, steps=cfg.steps))
    sub = pairs.take(cfg.n_robust)
    row["n_robust"] = len(sub)
    row["noise_spearman"] = _mean(
        noise_stability(explainer, sub.images, sub.targets, maps[: len(sub)], sigma=cfg.noise_sigma, seed=cfg.seed)
    )
    row["fgsm_spearman"] = _mean(fgsm_stability(explainer, sub.images, sub.targets, maps[: len(sub)], eps=cfg.fgsm_eps))
    row["randomisation_spearman"] = _mean(
        randomisation_correlation(
            lambda c: get_explainer(name, c, **options),
            classifier,
            sub.images,
            sub.targets,
            maps[: len(sub)],
            seed=cfg.seed,
        )
    )
    if marker_masks is not None:  # only images that carry the tag
        tagged = marker_masks.flatten(1).any(1)
        row["n_marker_pairs"] = int(tagged.sum())
        row["marker_share"] = _mean(marker_share(maps[tagged], marker_masks[tagged]))
    row["seconds_maps"] = t_maps
    row["ms_per_map"] = 1000 * t_maps / len(pairs)
    row["seconds_total"] = time.perf_counter() - t0
    return row, maps


CE_FILLS = ("zero", "mean", "blur")
CE_CELLS = (16, 12)  # each with a half-cell stride


def tune_ce(
    classifier: Classifier,
    train: ImageDataset,
    n_images: int,
    seed: int = 0,
    cfg: EvalConfig | None = None,
) -> tuple[dict, list[dict]]:
    """Pick CE's fill, then its cell size, on train images by pointing game + T(IoBB = 0.25); returns (best options, all
    scores).

    A coordinate search keeps it to five CE runs: the fills (zero / mean / blur) at the default
    cell (about a 7 x 7 grid), then 16 and 12 px cells with a half-cell stride at the best fill.
    """
    cfg = cfg or EvalConfig()
    pairs = evaluation_pairs(train, n_images, seed)
    if not pairs.has_boxes:
        raise CemapError("CE tuning needs a train split with boxes", "pass CE settings explicitly instead")
    scores: list[dict] = []

    def score(options: dict) -> dict:
        maps = get_explainer("ce", classifier, **options).attribute(pairs.images, pairs.targets)
        loc = localisation_row(maps, pairs, cfg)
        scores.append(
            {
                "options": options,
                "pointing_game": loc["pointing_game"],
                "iobb@0.25": loc["iobb@0.25"],
                "n_pairs": len(pairs),
            }
        )
        return scores[-1]

    def value(s: dict) -> float:
        return s["pointing_game"] + s["iobb@0.25"]

    best = max((score({"fill": fill}) for fill in CE_FILLS), key=value)
    fill = best["options"]["fill"]
    for cell in CE_CELLS:
        if cell < min(classifier.input_shape[1:]):
            best = max(best, score({"cell": cell, "stride": cell // 2, "fill": fill}), key=value)
    return best["options"], scores


def cached_tune_ce(ctx: StudyContext, cfg: EvalConfig) -> dict:
    """:func:`tune_ce` on the context's train split, cached like a trained model (keyed by the model's weights,
    the data and every setting that decides the choice), so a rerun of a study does not repeat it."""
    classifier = ctx.classifier
    key = {
        "model": model_fingerprint(classifier),
        "dataset": ctx.dataset,
        "options": ctx.dataset_options,
        "seed": cfg.seed,
        "images": cfg.tune_images,
        "fills": CE_FILLS,
        "cells": CE_CELLS,
        "tolerance_224": cfg.tolerance_224,
        "iobb_level": cfg.iobb_level,
    }
    path = cache_path("tuning", f"{classifier.name or 'model'}-ce", key, suffix=".json")
    stored = load_json_cached(path, ("chosen",))  # a damaged entry is moved aside and the tuning repeated
    if stored is not None:
        return {**stored, "from_cache": str(path)}
    t0 = time.perf_counter()
    best, scores = tune_ce(classifier, ctx.train, cfg.tune_images, cfg.seed, cfg)
    tuning = {"split": "train", "chosen": best, "candidates": scores, "seconds": time.perf_counter() - t0}
    write_json(path, tuning, indent=1)
    return tuning


def _marker_masks(dataset: ImageDataset, pairs: Pairs) -> torch.Tensor | None:
    """B x H x W: the shortcut tag's pixels in tagged images, nothing elsewhere (None for data without a tag)."""
    box = getattr(dataset, "shortcut_box", None)
    if box is None:
        return None
    tagged = dataset.has_shortcut[pairs.image_index]
    h, w = pairs.images.shape[-2:]
    masks = box_masks((h, w), [box] * len(pairs))
    return masks & tagged[:, None, None]


def run_evaluation(ctx: StudyContext, config: EvalConfig = EvalConfig()) -> EvaluationResult:
    """Every method of ``config.methods`` on the context's test pairs; writes ``evaluation.json``, the explorer's items
    and (when the context draws) ``overlays.png`` into ``ctx.out``. The classifier runs on ``ctx.device``; images and
    metrics stay on the CPU."""
    cfg = config
    methods = list(cfg.methods or list_explainers())
    unknown = [m for m in methods if m not in list_explainers()]
    if unknown:
        raise unknown_name("explanation method", unknown[0], list_explainers())
    t0 = time.perf_counter()
    clf = ctx.classifier
    tuning = None
    if cfg.tune and "ce" in methods and "ce" not in cfg.method_options:
        tuning = cached_tune_ce(ctx, cfg)
        cfg = replace(
            cfg, method_options={**cfg.method_options, "ce": tuning["chosen"]}
        )  # the caller's config stays as it was
    pairs = evaluation_pairs(ctx.test, cfg.n_images, cfg.seed)
    markers = _marker_masks(ctx.test, pairs)
    shown = torch.linspace(0, len(pairs) - 1, min(cfg.n_figure, len(pairs))).round().long().unique()
    rows, figure_maps = [], {}
    for name in methods:
        log.info("evaluating %s on %d pairs", name, len(pairs))
        row, maps = evaluate_method(name, clf, pairs, cfg, markers)
        rows.append(row)
        figure_maps[name] = maps[shown]
    result = EvaluationResult(
        dataset=ctx.dataset,
        dataset_options=ctx.dataset_options,
        model=ctx.model,
        model_fingerprint=model_fingerprint(clf),
        n_images=int(torch.unique(pairs.image_index).numel()),
        n_pairs=len(pairs),
        config=asdict(cfg),
        ce_tuning=tuning,
        rows=rows,
        seconds=time.perf_counter() - t0,
        train_seed=ctx.train_seed,
    )
    ctx.out.mkdir(parents=True, exist_ok=True)
    result.figures = _shown_pairs(ctx, pairs, shown, figure_maps)
    result.write(ctx.out)
    return result


def _shown_pairs(ctx: StudyContext, pairs: Pairs, shown: torch.Tensor, figure_maps: dict) -> dict:
    """The overlay figure of the shown pairs (every method's map) and their explorer items."""
    ids = [pairs.ids[i] for i in shown]
    boxes = [pairs.boxes[i] for i in shown] if pairs.has_boxes else None
    overlays = ctx.figure(OverlayGrid("overlays.png", pairs.images[shown], figure_maps, titles=ids, boxes=boxes))
    with torch.inference_mode():
        shown_probs = ctx.classifier.predict_proba(pairs.images[shown])
    save_explorer_batch(
        ctx.out,
        pairs.images[shown],
        figure_maps,
        ids,
        boxes=[pairs.boxes[i] for i in shown],
        box_labels=[torch.full((len(pairs.boxes[i]),), int(pairs.targets[i])) for i in shown],
        probs=shown_probs,
        targets=pairs.targets[shown],
        class_names=ctx.classifier.class_names,
        source="evaluation",
        name="explorer_evaluation.npz",
    )
    return {"overlays": overlays} if overlays else {}


METRIC_COLUMNS = [
    ("pointing_game", "PG"),
    ("pointing_game_any_tie", "PG-anytie"),
    ("pointing_game_tol", "PG-tol"),
    ("energy_pointing", "energy"),
    *[(f"iobb@{t:g}", f"IoBB>{t:g}") for t in IOBB_THRESHOLDS],
    ("deletion_auc", "del"),
    ("insertion_auc", "ins"),
    ("noise_spearman", "noise-rho"),
    ("fgsm_spearman", "fgsm-rho"),
    ("randomisation_spearman", "rand-rho"),
    ("marker_share", "marker"),
    ("ms_per_map", "ms/map"),
]


def format_table(rows: list[dict]) -> str:
    """A plain-text table of the rows (columns present in any row)."""
    cols = [(k, label) for k, label in METRIC_COLUMNS if any(r.get(k) is not None for r in rows)]
    head = f"{'method':<22}" + "".join(f"{label:>10}" for _, label in cols)
    lines = [head]
    for r in rows:
        cells = []
        for k, _ in cols:
            v = r.get(k)
            cells.append(f"{v:>10.3f}" if isinstance(v, float) and not math.isnan(v) else f"{'-':>10}")
        lines.append(f"{r['method']:<22}" + "".join(cells))
    return "\n".join(lines)
