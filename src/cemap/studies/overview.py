"""The overview stage of a study: classifier quality, autoencoder fidelity, CE maps and clean latent CE
profiles of a few test images (metrics.json and PNG figures)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

from ..causal import CEMap, fidelity
from ..evaluate.classification import accuracy, macro_auroc, per_class_auroc
from ..evaluate.localisation import pointing_game_hits
from ..pipeline import ImagePipeline
from ..report.explorer import save_explorer_batch
from ..report.figures import draw_boxes, overlay_grid, profile_bars
from .context import StudyContext

POINTING_PAIRS = 200  # (test image, finding) pairs with boxes scored by the pointing game


def classifier_quality(classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> dict:
    with torch.inference_mode():
        probs = torch.cat([classifier.predict_proba(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    if classifier.multilabel:
        return {"macro_auroc": macro_auroc(probs, labels, classifier.class_names), "auroc": per_class_auroc(probs, labels, classifier.class_names)}
    return {"accuracy": accuracy(probs, labels)}


BOX_COLOURS = ["red", "gold", "cyan", "lime", "magenta", "orange", "deepskyblue", "white"]


def samples_with_boxes(batch, class_names: list[str], path: Path, columns: int = 4) -> Path:
    """Grid of images with their ground-truth boxes, one colour per finding (docs/figures/synthcxr_samples.png)."""
    rows = (len(batch) + columns - 1) // columns
    fig = Figure(figsize=(2.4 * columns, 2.6 * rows))  # no pyplot: the user's backend is never touched
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax, image, boxes, labels in zip(axes.flat, batch.images, batch.boxes, batch.box_labels):
        ax.imshow(image.mean(0), cmap="gray", vmin=0, vmax=1)
        for box, label in zip(boxes, labels.tolist()):
            draw_boxes(ax, box, color=BOX_COLOURS[label % len(BOX_COLOURS)])
        ax.set_title(", ".join(class_names[c] for c in sorted(set(labels.tolist()))) or "no finding", fontsize=8)
    for ax in axes.flat:
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


@torch.inference_mode()
def per_finding_agreement(fitted, classifier, images: torch.Tensor, batch_size: int = 128) -> dict[str, float]:
    """Fraction of images on which f_AE and f take the same yes/no decision, for each finding."""
    same = []
    for i in range(0, len(images), batch_size):
        act, extras = fitted.split.activation(images[i : i + batch_size])
        p = classifier.probabilities(fitted.split.finish(act, extras))
        q = classifier.probabilities(fitted.split.finish(fitted.autoencoder(act), extras))
        same.append(classifier.decisions(p) == classifier.decisions(q))
    rate = torch.cat(same).float().mean(0)
    return {name: float(r) for name, r in zip(classifier.class_names, rate)}


def box_pointing_game(ce: CEMap, dataset, limit: int = POINTING_PAIRS) -> dict:
    """Pointing game of the CE map for each (image, finding) with boxes, the map computed for that finding."""
    pairs = []
    for i in range(len(dataset)):
        sample = dataset[i]
        for f in sorted(set(sample.box_labels.tolist())):
            pairs.append((sample.image, f, sample.boxes[sample.box_labels == f]))
        if len(pairs) >= limit:
            break
    pairs = pairs[:limit]
    if not pairs:
        return {"n": 0, "hit_rate": None}
    hits = []
    for start in range(0, len(pairs), 16):
        chunk = pairs[start : start + 16]
        maps = ce.attribute(torch.stack([p[0] for p in chunk]), target=torch.tensor([p[1] for p in chunk]))
        hits.append(pointing_game_hits(maps, [p[2] for p in chunk]))
    hits = torch.cat(hits)
    per_finding = {}
    for f, name in enumerate(dataset.class_names):
        mine = hits[torch.tensor([p[1] == f for p in pairs])]
        if len(mine):
            per_finding[name] = {"n": len(mine), "hit_rate": float(mine.float().mean())}
    return {"n": len(hits), "hit_rate": float(hits.float().mean()), "per_finding": per_finding}


def run_overview(ctx: StudyContext, n_images: int = 8) -> dict:
    """Classifier quality, autoencoder fidelity, CE maps and clean latent profiles of ``n_images`` seeded test images.

    Writes ``metrics.json`` (returned), ``ce_maps.png``, ``latent_profiles.png`` and, for data with boxes,
    ``samples.png`` into ``ctx.out``.
    """
    out = ctx.out
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    test, clf = ctx.test, ctx.classifier
    test_all = test.batch(range(len(test)))
    timings["model"] = time.perf_counter() - t0

    t = time.perf_counter()
    fitted = ctx.autoencoder
    fid = fidelity(fitted, clf, test_all.images)
    timings["autoencoder"] = time.perf_counter() - t

    t = time.perf_counter()
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(ctx.seed))[:n_images].tolist()
    batch = test.batch(chosen)
    pipeline = ImagePipeline(clf, fitted)
    result = pipeline(batch.images)
    maps, profiles = result.maps["ce"], result.latent
    timings["effects"] = time.perf_counter() - t

    pred = clf.decisions(result.probs)
    titles = [f"{i}: pred {clf.class_names[int(p)]}" if not clf.multilabel else i for i, p in zip(batch.ids, pred)]
    has_boxes = any(len(b) for b in test_all.boxes)
    figures = {
        "ce_maps": overlay_grid(batch.images, {"CE map": maps}, out / "ce_maps.png", titles=titles, boxes=batch.boxes if has_boxes else None).name,
        "latent_profiles": profile_bars({"clean": profiles}, out / "latent_profiles.png").name,
    }
    save_explorer_batch(out, batch.images, {"CE map": maps}, batch.ids, boxes=batch.boxes, box_labels=batch.box_labels, probs=result.probs,
                        targets=result.targets, labels=batch.labels, profiles=profiles, class_names=clf.class_names, source="demo")
    localisation = {}
    ce = pipeline.cemap
    if has_boxes:
        t = time.perf_counter()
        localisation = {"ce_map_pointing_game": box_pointing_game(ce, test)}
        timings["pointing_game"] = time.perf_counter() - t
        figures["samples"] = samples_with_boxes(batch, test.class_names, out / "samples.png").name
    metrics = {
        "dataset": ctx.dataset,
        "model": ctx.model,
        "layer": fitted.layer,
        "split_method": fitted.split.method,
        "classifier": classifier_quality(clf, test_all.images, test_all.labels),
        "autoencoder": {
            "code_channels": fitted.autoencoder.code_channels,
            "fidelity": fid.as_dict(),
            **({"per_finding_agreement": per_finding_agreement(fitted, clf, test_all.images)} if clf.multilabel else {}),
        },
        **localisation,
        "ce_map": {"cell": ce.cell, "stride": ce.stride, "fill": ce.fill, "forward_passes_per_image": ce.forward_passes_per_image},
        "images": batch.ids,
        "latent_profiles": profiles.tolist(),
        "figures": figures,
        "timings_s": {**timings, "total": time.perf_counter() - t0},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
