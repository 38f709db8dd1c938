"""The overview study: classifier quality, autoencoder fidelity, CE maps and clean latent CE profiles of a few
test images (metrics.json; figures ce_maps.png, latent_profiles.png and, for data with boxes, samples.png)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..causal import CEMap, fidelity
from ..evaluate.classification import accuracy, macro_auroc, per_class_auroc
from ..evaluate.localisation import pointing_game_hits
from ..pipeline import ImagePipeline
from .context import StudyContext
from .explorer import save_explorer_batch
from .figures import BoxSamples, OverlayGrid, ProfileBars
from .results import OverviewResult

POINTING_PAIRS = 200  # (test image, finding) pairs with boxes scored by the pointing game


def classifier_quality(classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> dict:
    with torch.inference_mode():
        probs = torch.cat(
            [classifier.predict_proba(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        )
    if classifier.multilabel:
        return {
            "macro_auroc": macro_auroc(probs, labels, classifier.class_names),
            "auroc": per_class_auroc(probs, labels, classifier.class_names),
        }
    return {"accuracy": accuracy(probs, labels)}


@torch.inference_mode()
def per_finding_agreement(classifier, fitted, images: torch.Tensor, batch_size: int = 128) -> dict[str, float]:
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


@dataclass(frozen=True)
class OverviewConfig:
    n_images: int = 8  # seeded test images whose CE maps and latent profiles are shown


def run_overview(ctx: StudyContext, config: OverviewConfig = OverviewConfig()) -> OverviewResult:
    """Classifier quality, autoencoder fidelity, CE maps and clean latent profiles of ``config.n_images`` seeded test
    images; writes ``metrics.json`` (and its figures, when the context draws) into ``ctx.out``."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    test, clf = ctx.test, ctx.classifier
    test_all = test.batch(range(len(test)))
    timings["model"] = time.perf_counter() - t0
    t = time.perf_counter()
    fitted = ctx.autoencoder
    fid = fidelity(clf, fitted, test_all.images)
    timings["autoencoder"] = time.perf_counter() - t
    t = time.perf_counter()
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(ctx.seed))[: config.n_images].tolist()
    batch = test.batch(chosen)
    pipeline = ImagePipeline(clf, fitted)
    shown = pipeline(batch.images)
    timings["effects"] = time.perf_counter() - t
    has_boxes = any(len(b) for b in test_all.boxes)
    figures = _shown_figures(ctx, batch, shown, has_boxes)
    localisation = None
    if has_boxes:
        t = time.perf_counter()
        localisation = box_pointing_game(pipeline.cemap, test)
        timings["pointing_game"] = time.perf_counter() - t
        figures["samples"] = ctx.figure(
            BoxSamples("samples.png", batch.images, batch.boxes, batch.box_labels, test.class_names)
        )
    ce = pipeline.cemap
    result = OverviewResult(
        dataset=ctx.dataset,
        model=ctx.model,
        layer=fitted.layer,
        split_method=fitted.split.method,
        classifier=classifier_quality(clf, test_all.images, test_all.labels),
        autoencoder={
            "code_channels": fitted.autoencoder.code_channels,
            "fidelity": fid.as_dict(),
            **(
                {"per_finding_agreement": per_finding_agreement(clf, fitted, test_all.images)} if clf.multilabel else {}
            ),
        },
        ce_map_pointing_game=localisation,
        ce_map={
            "cell": ce.cell,
            "stride": ce.stride,
            "fill": ce.fill,
            "forward_passes_per_image": ce.forward_passes_per_image,
        },
        images=batch.ids,
        latent_profiles=shown.latent.tolist(),
        figures={k: v for k, v in figures.items() if v},
        timings_s={**timings, "total": time.perf_counter() - t0},
    )
    result.write(ctx.out)
    return result


def _shown_figures(ctx: StudyContext, batch, shown, has_boxes: bool) -> dict[str, str | None]:
    """The shown images' CE maps (ce_maps.png) and clean latent profiles (latent_profiles.png), and their explorer
    items."""
    clf = ctx.classifier
    maps, profiles = shown.maps["ce"], shown.latent
    pred = clf.decisions(shown.probs)
    titles = [f"{i}: pred {clf.class_names[int(p)]}" if not clf.multilabel else i for i, p in zip(batch.ids, pred)]
    figures = {
        "ce_maps": ctx.figure(
            OverlayGrid(
                "ce_maps.png", batch.images, {"CE map": maps}, titles=titles, boxes=batch.boxes if has_boxes else None
            )
        ),
        "latent_profiles": ctx.figure(ProfileBars("latent_profiles.png", {"clean": profiles})),
    }
    save_explorer_batch(
        ctx.out,
        batch.images,
        {"CE map": maps},
        batch.ids,
        boxes=batch.boxes,
        box_labels=batch.box_labels,
        probs=shown.probs,
        targets=shown.targets,
        labels=batch.labels,
        profiles=profiles,
        class_names=clf.class_names,
        source="demo",
    )
    return figures
