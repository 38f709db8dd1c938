"""Quality beside speed, on the trained cxr-cnn: adaptive against dense CE maps, and PGD's success in fp32 and bf16."""

from __future__ import annotations

import statistics

import torch

from ...causal.adaptive import AdaptiveCEMap
from ...causal.cemap_map import CEMap
from .inputs import BenchConfig
from .sections import cell_values, rank_correlation


PGD_QUALITY_EPS = tuple(
    e / 255 for e in (0.125, 0.25, 0.5, 1, 2, 8)
)  # up to the bench's budget; cxr-cnn flips at tiny ones


def trained_cxr(n_images: int, with_boxes: bool):
    """The trained cxr-cnn and ``n_images`` synthcxr test images (those with a finding box when ``with_boxes``)."""
    from ...data.registry import get_dataset
    from ...models.registry import get_model

    clf = get_model("cxr-cnn")
    data = get_dataset("synthcxr", split="test", size=clf.input_shape[-1])
    picked = (
        [i for i in range(len(data)) if data[i].boxes.numel()][:n_images]
        if with_boxes
        else range(min(n_images, len(data)))
    )
    return clf, data.batch(picked)


def adaptive_quality(n_images: int, cfg: BenchConfig) -> dict:
    """Dense vs adaptive CE maps of the trained cxr-cnn on synthcxr: pointing game and rank correlation."""
    from ...evaluate.localisation import pointing_game_hits

    clf, batch = trained_cxr(n_images, with_boxes=True)
    targets = torch.stack([bl.reshape(-1)[0] for bl in batch.box_labels]).long()
    boxes = [bx[bl == t] for bx, bl, t in zip(batch.boxes, batch.box_labels, targets)]
    dense = CEMap(clf, cell=cfg.cell)
    d = dense.attribute(batch.images, targets)
    rows = []
    for refine in sorted({0.0, cfg.adaptive_refine, 0.5}):
        adaptive = AdaptiveCEMap(clf, cell=dense.cell, refine=refine)
        a = adaptive.attribute(batch.images, targets)
        rho = rank_correlation(cell_values(d, adaptive), cell_values(a, adaptive))
        rows.append(
            {
                "refine": refine,
                "forward_passes_per_image": adaptive.forward_passes_per_image,
                "pointing_game": float(pointing_game_hits(a, boxes).float().mean()),
                "rank_correlation": {"mean": statistics.mean(rho), "min": min(rho)},
            }
        )
    chosen = next(r for r in rows if r["refine"] == cfg.adaptive_refine)
    return {
        "model": "cxr-cnn",
        "dataset": "synthcxr",
        "images": batch.images.shape[0],
        "grid": list(adaptive.grid),
        "refine": cfg.adaptive_refine,
        "forward_passes_per_image": {
            "dense": dense.forward_passes_per_image,
            "adaptive": chosen["forward_passes_per_image"],
        },
        "pointing_game": {
            "dense": float(pointing_game_hits(d, boxes).float().mean()),
            "adaptive": chosen["pointing_game"],
        },
        "rank_correlation": chosen["rank_correlation"],
        "tradeoff": rows,
    }


def pgd_quality(n_images: int, cfg: BenchConfig) -> dict:
    """PGD success in fp32 and bf16 on a trained model (cxr-cnn on synthcxr): at the bench's budget and at smaller ones,
    where success is partial and a difference would show. The default model's random weights leave its outputs all
    but independent of the input (no attack succeeds there), so its success rates cannot tell the precisions apart."""
    from ...attacks import PGD

    clf, batch = trained_cxr(n_images, with_boxes=False)
    rows = []
    for eps in PGD_QUALITY_EPS:
        result = {
            p: PGD(clf, eps=eps, alpha=eps / 4, steps=cfg.pgd_steps, random_start=False, precision=p, loss="ce")(
                batch.images
            )
            for p in ("fp32", "bf16")
        }
        rate = {p: r.success_rate for p, r in result.items()}
        agree = float((result["fp32"].success == result["bf16"].success).float().mean())
        rows.append(
            {
                "eps": eps,
                "success_rate": rate,
                "difference_points": 100 * abs(rate["bf16"] - rate["fp32"]),
                "per_image_agreement": agree,
            }
        )
    return {
        "model": "cxr-cnn",
        "dataset": "synthcxr",
        "images": batch.images.shape[0],
        "steps": cfg.pgd_steps,
        "alpha": "eps / 4",
        "budgets": rows,
    }
