"""The latent controls study's orchestrator: choose the images, run both experiments, judge the claims, write the
files."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ...causal import LatentCE
from ...errors import CemapError
from ...evaluate.concepts import ALIGNED, ConceptTable, concept_table, pooled_alignment
from ...evaluate.paired_tests import ALPHA
from ...jsonio import write_json
from ..context import StudyContext
from ..figures import ConceptOverlays, ControlPanels
from ..results import Claim
from .adversarial import adversarial_experiment
from .claims import claims_for
from .masking import masking_experiment
from .measures import Subjects, profiles
from ..results import ConceptsResult, LatentControlsResult


@dataclass(frozen=True)
class LatentControlsConfig:
    """How much of the study to run.

    Args:
        n_images: study images (with boxes, where the dataset has any).
        pgd_steps: PGD-Linf steps (at the dataset's larger L-inf budget).
        placements: control placements of the masked region per image.
        concept_images: other test images the concept table is measured on (default 3 x n_images, at least 64),
            disjoint from the study images (latent_concepts.json).
        align_images: train images on which the channels aligned with each finding are chosen (AUROC >= ALIGNED,
            else the single best channel), so that the choice never sees the images it is measured on
            (default 500, 200 in a quick study).
    """

    n_images: int = 64
    pgd_steps: int = 20
    placements: int = 4
    concept_images: int | None = None
    align_images: int | None = None


def run_latent_controls(
    ctx: StudyContext, config: LatentControlsConfig = LatentControlsConfig()
) -> LatentControlsResult:
    """The controlled latent experiments on held-out test images of ``ctx``; writes ``latent_controls.json``,
    ``latent_concepts.json`` and (when the context draws) ``latent_controls.png``, ``latent_concepts.png``."""
    t0, c0 = time.perf_counter(), time.process_time()
    align_images = config.align_images or (200 if ctx.quick else 500)
    clf, fitted, test = ctx.classifier, ctx.autoencoder, ctx.test
    latent = LatentCE(clf, fitted)
    study_idx, concept_idx = choose_images(ctx, config.n_images, config.concept_images or max(64, 3 * config.n_images))
    study, cbatch = test.batch(study_idx), test.batch(concept_idx)
    with_boxes = has_boxes(test)
    boxes = (cbatch.boxes, cbatch.box_labels) if with_boxes else (None, None)
    table = concept_table(clf, fitted, cbatch.images, cbatch.labels, *boxes, ids=cbatch.ids, seed=ctx.seed)
    findings = study_findings(ctx, study, with_boxes)
    clean = profiles(latent, study.images, findings)
    selection = aligned_on_train(ctx, align_images)
    aligned = [selection[clf.class_names[f]]["channels"] for f in findings.tolist()]
    masking = {
        "aligned_channels": {
            "chosen_on": f"{min(align_images, len(ctx.train))} train images",
            "rule": f"pooled-activation AUROC >= {ALIGNED}, else the best channel",
            "by_concept": selection,
        },
        "comparisons": [],
        "per_channel": [],
    }
    subjects = Subjects(study, study_idx, findings, clean, aligned, table.labels())
    kind = "boxes" if with_boxes else test.region_kind
    if kind in ("boxes", "strokes"):
        masking.update(masking_experiment(ctx, latent, subjects, kind, config.placements))
    else:
        masking["note"] = f"not computed: {ctx.dataset} has no boxes, and its images declare no strokes to mask"
    attacked = "the masked finding" if with_boxes else "the true class"
    eps = test.attack_budgets.linf[1]  # the dataset's larger budget
    adversarial = adversarial_experiment(ctx, latent, subjects, eps, config.pgd_steps, attacked)
    headline, claims = claims_for(ctx.dataset, masking, adversarial, with_boxes)
    files = write_concepts(ctx, table, cbatch, masking, adversarial)
    result = LatentControlsResult(
        claims_=[Claim.from_json(c) for c in headline],
        claims=claims,
        dataset=ctx.dataset,
        model=ctx.model,
        layer=fitted.layer,
        n_images=len(study.ids),
        images=study.ids,
        masking=masking,
        adversarial=adversarial,
        settings=settings(ctx, config, len(concept_idx), align_images),
        concepts={"file": files["concepts"], "coverage": table.coverage(), "labels": table.labels()},
        seconds=round(time.perf_counter() - t0, 2),
        cpu_seconds=round(time.process_time() - c0, 2),
        files=files,
    )
    result.write(ctx.out, indent=1)
    return result


def settings(ctx: StudyContext, config: LatentControlsConfig, concept_images: int, align_images: int) -> dict:
    """What the study ran with, as its JSON records it."""
    return {
        "n_images": config.n_images,
        "pgd_steps": config.pgd_steps,
        "placements": config.placements,
        "concept_images": concept_images,
        "align_images": align_images,
        "intervention_value": "zero",
        "aligned_threshold": ALIGNED,
        "alpha": ALPHA,
        "seed": ctx.seed,
        "quick": ctx.quick,
    }


def write_concepts(ctx: StudyContext, table: ConceptTable, cbatch, masking: dict, adversarial: dict) -> dict[str, str]:
    """latent_concepts.json (compact: it holds each channel's top maps) and the study's two figures; the file names."""
    files = {
        "json": LatentControlsResult.FILE,
        "figure": "latent_controls.png",
        "concepts": ConceptsResult.FILE,
        "concepts_figure": "latent_concepts.png",
    }
    ctx.out.mkdir(parents=True, exist_ok=True)
    concepts = {"dataset": ctx.dataset, "model": ctx.model, "images": cbatch.ids, **table.to_json()}
    write_json(ctx.out / files["concepts"], concepts, indent=None, compact=True)
    ctx.figure(ControlPanels(files["figure"], ctx.dataset, masking, adversarial, table.labels(), ALPHA))
    top = [r.top_images[0] for r in table.rows]
    maps = table.maps[:, 0]
    ctx.figure(ConceptOverlays(files["concepts_figure"], ctx.dataset, cbatch.images, top, maps, table.labels()))
    return files


def study_findings(ctx: StudyContext, study, with_boxes: bool) -> torch.Tensor:
    """The finding each study image is about: drawn among its boxed findings, else the most probable finding
    (sigmoid heads, no boxes to say which), else the true class."""
    if with_boxes:
        return findings(study, ctx.classifier, ctx)
    if ctx.classifier.multilabel:
        with torch.inference_mode():
            return ctx.classifier.probabilities(study.images).argmax(1)
    return study.labels.long().reshape(-1)


def has_boxes(dataset) -> bool:
    """Whether the dataset's test images carry ground-truth boxes (looked for among the first 64)."""
    return any(dataset[i].boxes.numel() for i in range(min(len(dataset), 64)))


def choose_images(ctx: StudyContext, n: int, n_concept: int) -> tuple[list[int], list[int]]:
    """Study images (with boxes where the dataset has them) and disjoint concept-table images, in a seeded order."""
    test = ctx.test
    order = torch.randperm(len(test), generator=ctx.generator("latent_controls/images")).tolist()
    if has_boxes(test):
        boxed = [i for i in order if test[i].boxes.numel()]
        study = boxed[:n]
    else:
        study = order[:n]
    if len(study) < 2:
        raise CemapError(
            f"only {len(study)} usable test images in {ctx.dataset}", "the controlled latent study needs at least 2"
        )
    taken = set(study)
    concept = [i for i in order if i not in taken][:n_concept]
    return study, concept


def findings(batch, clf, ctx: StudyContext) -> torch.Tensor:
    """One finding per image, drawn among its boxed findings."""
    gen = ctx.generator("latent_controls/finding")
    out = []
    for bl in batch.box_labels:
        choices = bl.unique()
        out.append(int(choices[torch.randint(0, len(choices), (1,), generator=gen)]))
    return torch.tensor(out, dtype=torch.long)


def aligned_on_train(ctx: StudyContext, n: int) -> dict:
    """Per concept: the channels whose pooled activation predicts it with AUROC >= ALIGNED on ``n`` seeded train images
    (else the single best channel), with those AUROCs."""
    train = ctx.train
    idx = torch.randperm(len(train), generator=ctx.generator("latent_controls/align"))[:n].tolist()
    batch = train.batch(idx)
    auc = pooled_alignment(ctx.classifier, ctx.autoencoder, batch.images, batch.labels)
    out = {}
    for c, name in enumerate(ctx.classifier.class_names):
        col = np.where(np.isfinite(auc[:, c]), auc[:, c], -1.0)
        chosen = [int(j) for j in np.argsort(-col) if col[j] >= ALIGNED] or [int(np.argmax(col))]
        out[name] = {
            "channels": chosen,
            "names": [f"Z{j}" for j in chosen],
            "train_auroc": [round(float(col[j]), 4) for j in chosen],
        }
    return out
