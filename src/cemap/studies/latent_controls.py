"""The paper's two latent experiments, each condition beside the control that makes it mean something.

The paper masks the finding's region, or attacks the image, and watches the latent CE profile
move. Without a control that shows nothing: masking *anything* of that size, or adding *any*
perturbation of that size, moves the profile too. This stage measures, on the same held-out
test images and paired per image:

* **masking** - synthcxr: the true lesion box of one finding per image masked (zero fill), against
  the same box shape placed elsewhere inside the lung field, never overlapping a lesion
  (``placements`` placements per image, averaged). MNIST: the digit's strokes erased (fill 0),
  against a contiguous background region of the same area grown at random away from the strokes
  and filled with the strokes' own intensities, so both change the same pixels by the same
  amounts (L1 and L2); zero-filling background would change nothing, which is no control.
* **adversarial** - PGD-Linf on the finding (synthcxr) or true class (MNIST), successful attacks
  only, against random sign noise of the same L-inf budget, Gaussian noise scaled to each image's
  PGD L2, and Gaussian blur whose L2 change is closest to it (natural corruptions of matched size).

Measures per image (all against the same image's clean profile):

* ``ece_l1``: L1 shift of the latent ECE profile (the paper's object, summed over all findings);
* ``finding_l1``: L1 shift of the latent class-CE profile of the masked / attacked finding itself;
* ``finding_drop``: p_AE(f|x) - p_AE(f|x_do), what the pixel intervention does to that finding;
* ``aligned_minus_other``: mean |shift| of the channels aligned with that finding (from the concept
  table on *other* held-out images) minus the mean |shift| of every other channel;
* per channel: |shift of Z_j| condition vs control, Wilcoxon signed-rank per channel, Holm-corrected.

Every mean has a bootstrap interval and every condition-minus-control difference a paired one
(:mod:`cemap.evaluate.bootstrap`). Files: ``latent_controls.json``, ``latent_controls.png``,
``latent_concepts.json`` (the concept table, :mod:`cemap.causal.concepts`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..attacks import PGD
from ..causal import LatentCE
from ..causal.concepts import ALIGNED, ConceptTable, concept_table, pooled_alignment
from ..causal.effects import expected_effect
from ..causal.masks import box_mask, gaussian_blur
from ..errors import CemapError
from ..evaluate.bootstrap import bootstrap_mean, paired_difference
from .context import StudyContext

# PGD-Linf budget per dataset: the larger of the detection study's two budgets (the demo's attack).
LINF = {"mnist5k": 0.3}
DEFAULT_LINF = 8 / 255
BLUR_SIGMAS = (0.5, 0.7, 1.0, 1.4, 2.0, 2.8)
STROKE = 0.5  # MNIST pixels above this are strokes
STROKE_DATASETS = ("mnist5k",)  # datasets without boxes whose strokes (bright on black) can be masked
ALPHA = 0.05
MEASURES = {
    "ece_l1": "L1 shift of the latent ECE profile",
    "finding_l1": "L1 shift of the finding's own latent class-CE profile",
    "finding_drop": "drop of the finding's probability p_AE(f|x) - p_AE(f|x_do)",
    "aligned_minus_other": "mean |shift| of channels aligned with the finding minus mean |shift| of the others (ECE profile)",
    "ece_l1_per_pixel_l2": "L1 shift of the latent ECE profile per unit of pixel change (divided by the L2 norm of x_do - x)",
}


@dataclass
class Profiles:
    """Per image: latent ECE profile (N x k), the finding's class-CE profile (N x k), p_AE(finding) (N)."""

    ece: torch.Tensor
    finding: torch.Tensor
    prob: torch.Tensor

    def take(self, idx) -> "Profiles":
        return Profiles(self.ece[idx], self.finding[idx], self.prob[idx])


@dataclass
class LatentControls:
    """Result of :func:`run_latent_controls`; ``to_json()`` is latent_controls.json."""

    dataset: str
    model: str
    layer: str
    images: list[str]
    settings: dict
    masking: dict
    adversarial: dict
    headline: list[dict]
    claims: dict
    concepts: ConceptTable = field(repr=False)
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    files: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "what": "the paper's latent experiments (mask the finding, attack the image) beside matched controls on the same "
                    "held-out test images; per-image paired bootstrap intervals; per-channel Wilcoxon tests, Holm-corrected",
            "headline": self.headline,
            "claims": self.claims,
            "dataset": self.dataset,
            "model": self.model,
            "layer": self.layer,
            "n_images": len(self.images),
            "images": self.images,
            "settings": self.settings,
            "measures": MEASURES,
            "masking": self.masking,
            "adversarial": self.adversarial,
            "concepts": {"file": self.files.get("concepts"), "coverage": self.concepts.coverage(), "labels": self.concepts.labels()},
            "seconds": round(self.seconds, 2),
            "cpu_seconds": round(self.cpu_seconds, 2),
            "files": self.files,
        }


def run_latent_controls(ctx: StudyContext, n_images: int, pgd_steps: int, placements: int = 4,
                        concept_images: int | None = None, align_images: int | None = None) -> LatentControls:
    """The controlled latent experiments on ``n_images`` held-out test images of ``ctx``; writes
    ``latent_controls.json``, ``latent_controls.png`` and ``latent_concepts.json`` under ``ctx.out``.

    Args:
        n_images: study images (with boxes, where the dataset has any).
        pgd_steps: PGD-Linf steps.
        placements: control placements of the masked region per image.
        concept_images: other test images the concept table is measured on (default 3 x n_images, at least 64),
            disjoint from the study images (latent_concepts.json).
        align_images: train images on which the channels aligned with each finding are chosen (AUROC >= ALIGNED,
            else the single best channel), so that the choice never sees the images it is measured on
            (default 500, 200 when ``ctx.quick``).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    align_images = align_images or (200 if ctx.quick else 500)
    clf, fitted, test = ctx.classifier, ctx.autoencoder, ctx.test
    latent = LatentCE(clf, fitted)
    study_idx, concept_idx = _choose_images(ctx, n_images, concept_images or max(64, 3 * n_images))
    study = test.batch(study_idx)
    cbatch = test.batch(concept_idx)
    table = concept_table(clf, fitted, cbatch.images, cbatch.labels, *((cbatch.boxes, cbatch.box_labels) if _has_boxes(test) else (None, None)),
                          ids=cbatch.ids, seed=ctx.seed)
    images = study.images
    has_boxes = _has_boxes(test)
    kind = "boxes" if has_boxes else "strokes" if ctx.dataset in STROKE_DATASETS else None
    if has_boxes:
        findings = _findings(study, clf, ctx)
    elif clf.multilabel:  # no boxes to say which finding: the most probable one
        with torch.inference_mode():
            findings = clf.probabilities(images).argmax(1)
    else:
        findings = study.labels.long().reshape(-1)
    clean = _profiles(latent, images, findings)
    selection = _aligned_on_train(ctx, align_images)
    aligned = [selection[clf.class_names[f]]["channels"] for f in findings.tolist()]
    masking = {"aligned_channels": {"chosen_on": f"{min(align_images, len(ctx.train))} train images",
                                    "rule": f"pooled-activation AUROC >= {ALIGNED}, else the best channel", "by_concept": selection},
               "comparisons": [], "per_channel": []}

    # masking: the finding's region against the same area elsewhere
    if kind is None:
        masking["note"] = f"not computed: {ctx.dataset} has no boxes, and strokes are defined only for {', '.join(STROKE_DATASETS)}"
    else:
        if kind == "boxes":
            region, controls, fills, ctrl_fills, (lung_share, squeezed) = _box_regions(ctx, study, study_idx, findings, placements)
            mask_names = ("true lesion box masked (zero fill)", f"same box shape elsewhere in the lung field ({placements} placements, zero fill)")
        else:
            region, controls, fills, ctrl_fills = _stroke_regions(ctx, images, placements)
            mask_names = ("strokes erased (fill 0)", f"background region of the same area, filled with the stroke intensities ({placements} placements)")
        masked = torch.where(region[:, None], fills, images)
        ctrl_images = torch.where(controls[:, :, None], ctrl_fills, images[:, None]).flatten(0, 1)
        p_mask = _profiles(latent, masked, findings)
        p_ctrl = _profiles(latent, ctrl_images, findings.repeat_interleave(placements))
        m_cond = _measures(p_mask, clean, aligned, _l2(masked, images))
        m_ctrl = {k: v.reshape(len(images), placements).mean(1)
                  for k, v in _measures(p_ctrl, _repeat(clean, placements), _rep_list(aligned, placements), _l2(ctrl_images, images.repeat_interleave(placements, 0))).items()}
        ch_cond = (p_mask.ece - clean.ece).abs()
        ch_ctrl = (p_ctrl.ece.reshape(len(images), placements, -1) - clean.ece[:, None]).abs().mean(1)
        masking.update({
            "condition": mask_names[0],
            "control": mask_names[1],
            "n": len(images),
            "pixels_changed": {"condition_l2": _mean_norm(masked, images), "control_l2": _mean_norm(ctrl_images, images.repeat_interleave(placements, 0)),
                               "condition_area": float(region.float().mean()), "control_area": float(controls.float().mean())},
            "comparisons": [_compare(m_cond, m_ctrl, ctx.seed, control=mask_names[1])],
            "per_channel": [_per_channel(ch_cond, ch_ctrl, table, mask_names[1], ctx.seed)],
            "by_finding": _by_finding(m_cond, m_ctrl, findings, clf.class_names, ctx.seed),
        })
        if kind == "boxes":
            masking["control_placement"] = {"mean_share_inside_lung": float(lung_share.mean()),
                                            "images_where_it_fits_entirely_inside_the_lung": int((lung_share >= 1).sum()),
                                            "images_where_every_place_touches_a_lesion": squeezed}

    # adversarial: PGD against noise and corruptions of matched size
    eps = LINF.get(ctx.dataset, DEFAULT_LINF)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator("latent_controls/pgd")))
    attack = PGD(clf, eps=eps, steps=pgd_steps, seed=seed)
    result = attack(images, findings)
    ok = result.success
    adversarial = {"attack": f"PGD-Linf eps {eps:.4g}, {pgd_steps} steps", "attacked": "the masked finding" if has_boxes else "the true class",
                   "success_rate": float(ok.float().mean()), "n": int(ok.sum()), "comparisons": [], "per_channel": [], "pixels_changed": {}}
    if int(ok.sum()) >= 2:
        idx = torch.nonzero(ok).flatten()
        x, adv, f = images[idx], result.adversarial[idx], findings[idx]
        base, al = clean.take(idx), [aligned[i] for i in idx.tolist()]
        l2 = result.l2[idx]
        gen = ctx.generator("latent_controls/noise")
        perturbed = {
            f"random sign noise +-{eps:.3g} (matched L-inf)": (x + eps * torch.randint(0, 2, x.shape, generator=gen).float().mul(2).sub(1)).clamp(0, 1),
            "Gaussian noise (matched L2)": _matched_gaussian(x, l2, gen),
            "Gaussian blur (L2 closest to PGD's)": _matched_blur(x, l2),
        }
        p_adv = _profiles(latent, adv, f)
        m_adv = _measures(p_adv, base, al, _l2(adv, x))
        ch_adv = (p_adv.ece - base.ece).abs()
        adversarial["pixels_changed"]["PGD"] = _norms(adv, x)
        adversarial["condition"] = adversarial["attack"]
        for name, xc in perturbed.items():
            pc = _profiles(latent, xc, f)
            adversarial["pixels_changed"][name] = _norms(xc, x)
            adversarial["comparisons"].append(_compare(m_adv, _measures(pc, base, al, _l2(xc, x)), ctx.seed, control=name))
            adversarial["per_channel"].append(_per_channel(ch_adv, (pc.ece - base.ece).abs(), table, name, ctx.seed))
    else:
        adversarial["note"] = "fewer than 2 attacks succeeded: nothing to compare"

    headline, claims = _claims(ctx.dataset, masking, adversarial, has_boxes)
    out = Path(ctx.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": "latent_controls.json", "figure": "latent_controls.png", "concepts": "latent_concepts.json"}
    files["concepts_figure"] = "latent_concepts.png"
    (out / files["concepts"]).write_text(json.dumps({"dataset": ctx.dataset, "model": ctx.model, "images": cbatch.ids, **table.to_json()},
                                                    separators=(",", ":")))
    _figure(masking, adversarial, table, out / files["figure"], ctx.dataset)
    _concept_figure(table, cbatch.images, out / files["concepts_figure"], ctx.dataset)
    res = LatentControls(
        dataset=ctx.dataset, model=ctx.model, layer=fitted.layer, images=study.ids,
        settings={"n_images": n_images, "pgd_steps": pgd_steps, "placements": placements, "concept_images": len(concept_idx), "align_images": align_images,
                  "intervention_value": "zero", "aligned_threshold": ALIGNED, "alpha": ALPHA, "seed": ctx.seed, "quick": ctx.quick},
        masking=masking, adversarial=adversarial, headline=headline, claims=claims, concepts=table,
        seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0, files=files,
    )
    (out / files["json"]).write_text(json.dumps(res.to_json(), indent=1))
    return res


# ---- images and regions ------------------------------------------------------------------------

def _has_boxes(dataset) -> bool:
    """Whether the dataset's test images carry ground-truth boxes (looked for among the first 64)."""
    return any(dataset[i].boxes.numel() for i in range(min(len(dataset), 64)))


def _choose_images(ctx: StudyContext, n: int, n_concept: int) -> tuple[list[int], list[int]]:
    """Study images (with boxes where the dataset has them) and disjoint concept-table images, in a seeded order."""
    test = ctx.test
    order = torch.randperm(len(test), generator=ctx.generator("latent_controls/images")).tolist()
    if _has_boxes(test):
        boxed = [i for i in order if test[i].boxes.numel()]
        study = boxed[:n]
    else:
        study = order[:n]
    if len(study) < 2:
        raise CemapError(f"only {len(study)} usable test images in {ctx.dataset}", "the controlled latent study needs at least 2")
    taken = set(study)
    concept = [i for i in order if i not in taken][:n_concept]
    return study, concept


def _findings(batch, clf, ctx: StudyContext) -> torch.Tensor:
    """One finding per image, drawn among its boxed findings."""
    gen = ctx.generator("latent_controls/finding")
    out = []
    for bl in batch.box_labels:
        choices = bl.unique()
        out.append(int(choices[torch.randint(0, len(choices), (1,), generator=gen)]))
    return torch.tensor(out, dtype=torch.long)


def _box_regions(ctx: StudyContext, batch, indices, findings, placements):
    """(lesion masks N x H x W, control masks N x P x H x W, fills, control fills, (lung share, squeezed)): the finding's
    box(es), and the same box shape at ``placements`` random places that touch no lesion, chosen among those most inside
    the lung field (entirely inside it wherever such a place exists); ``lung share`` is each control's share inside the
    lung; ``squeezed`` counts the images where every place touches a lesion (the control then loses those pixels)."""
    images = batch.images
    n, _, h, w = images.shape
    gen = ctx.generator("latent_controls/placements")
    lesion = torch.zeros(n, h, w, dtype=torch.bool)
    ctrl = torch.zeros(n, placements, h, w, dtype=torch.bool)
    share = torch.ones(n)
    squeezed = 0
    for i, (bx, bl, f) in enumerate(zip(batch.boxes, batch.box_labels, findings.tolist())):
        lesion[i] = box_mask(h, w, bx[bl == f])
        anything = box_mask(h, w, bx)
        lung = ctx.test.lung_mask(indices[i]) if hasattr(ctx.test, "lung_mask") else torch.ones(h, w, dtype=torch.bool)
        for x0, y0, x1, y1 in _int_boxes(bx[bl == f], h, w)[:1]:
            bh, bw = y1 - y0, x1 - x0
            clear = _window_sums(anything.float(), bh, bw) == 0  # places that touch no lesion
            inside = _window_sums((lung & ~anything).float(), bh, bw) / max(bh * bw, 1)
            score = torch.where(clear, inside, inside - 2) if clear.any() else inside
            squeezed += int(not clear.any())
            best = score.max()
            share[i] = float(best)
            ys, xs = torch.nonzero(score >= best - 1e-6, as_tuple=True)
            pick = torch.randint(0, len(ys), (placements,), generator=gen)
            for p, c in enumerate(pick.tolist()):
                ctrl[i, p, ys[c] : ys[c] + bh, xs[c] : xs[c] + bw] = True
        ctrl[i] &= ~anything  # only where every place touches a lesion: never mask one
    zeros = torch.zeros_like(images)
    return lesion, ctrl, zeros, zeros[:, None].expand(n, placements, *images.shape[1:]), (share, squeezed)


def _int_boxes(boxes: torch.Tensor, h: int, w: int) -> list[tuple[int, int, int, int]]:
    import math

    return [(max(0, math.floor(a)), max(0, math.floor(b)), min(w, math.ceil(c)), min(h, math.ceil(d))) for a, b, c, d in boxes.reshape(-1, 4).tolist()]


def _window_sums(m: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
    s = torch.nn.functional.pad(m.double().cumsum(0).cumsum(1), (1, 0, 1, 0))
    return (s[bh:, bw:] - s[:-bh, bw:] - s[bh:, :-bw] + s[:-bh, :-bw]).float()


def _stroke_regions(ctx: StudyContext, images: torch.Tensor, placements: int):
    """MNIST: stroke masks (pixels > STROKE), and per image ``placements`` contiguous background regions of the same
    area, grown at random from a random seed at least 2 px away from every stroke, filled with the stroke intensities."""
    n, c, h, w = images.shape
    gen = ctx.generator("latent_controls/background")
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    gray = images.mean(1)
    strokes = gray > STROKE
    near = torch.nn.functional.max_pool2d(strokes[:, None].float(), 5, 1, 2)[:, 0] > 0
    ctrl = torch.zeros(n, placements, h, w, dtype=torch.bool)
    ctrl_fill = torch.zeros(n, placements, c, h, w)
    for i in range(n):
        area = int(strokes[i].sum())
        allowed = (~near[i]).numpy()
        values = images[i][:, strokes[i]]  # c x area
        for p in range(placements):
            grown = _grow(allowed, area, rng)
            ctrl[i, p] = torch.from_numpy(grown)
            perm = torch.from_numpy(rng.permutation(area))[: int(grown.sum())]
            ctrl_fill[i, p][:, ctrl[i, p]] = values[:, perm]
    return strokes, ctrl, torch.zeros_like(images), ctrl_fill


def _grow(allowed: np.ndarray, area: int, rng: np.random.Generator) -> np.ndarray:
    """A 4-connected region of ``area`` allowed pixels grown from a random seed, one random frontier pixel at a time."""
    h, w = allowed.shape
    region = np.zeros_like(allowed, dtype=bool)
    cells = np.argwhere(allowed)
    if not len(cells) or area == 0:
        return region
    frontier = [tuple(cells[rng.integers(len(cells))])]
    seen = {frontier[0]}
    count = 0
    while frontier and count < area:
        y, x = frontier.pop(int(rng.integers(len(frontier))))
        region[y, x] = True
        count += 1
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            q = (y + dy, x + dx)
            if 0 <= q[0] < h and 0 <= q[1] < w and allowed[q] and q not in seen:
                seen.add(q)
                frontier.append(q)
    return region


def _matched_gaussian(x: torch.Tensor, l2: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """x + s * N(0, I), clipped to [0, 1], with s per image so that the L2 change after clipping equals ``l2``."""
    d = torch.randn(x.shape, generator=gen)
    s = (l2 / d.flatten(1).norm(dim=1)).view(-1, 1, 1, 1)
    for _ in range(6):
        got = ((x + s * d).clamp(0, 1) - x).flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        s = s * (l2.view(-1, 1, 1, 1) / got.clamp_min(1e-12))
    return (x + s * d).clamp(0, 1)


def _matched_blur(x: torch.Tensor, l2: torch.Tensor) -> torch.Tensor:
    """Per image, the Gaussian blur (sigma in BLUR_SIGMAS) whose L2 change is closest to ``l2``."""
    blurred = torch.stack([gaussian_blur(x, s).clamp(0, 1) for s in BLUR_SIGMAS])  # S x N x C x H x W
    norms = (blurred - x[None]).flatten(2).norm(dim=2)  # S x N
    pick = (norms - l2[None]).abs().argmin(0)
    return blurred[pick, torch.arange(len(x))]


def _norms(a: torch.Tensor, b: torch.Tensor) -> dict:
    d = (a - b).flatten(1)
    return {"l2": float(d.norm(dim=1).mean()), "linf": float(d.abs().amax(1).mean())}


def _l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).flatten(1).norm(dim=1)


def _mean_norm(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).flatten(1).norm(dim=1).mean())


# ---- profiles and measures ----------------------------------------------------------------------

@torch.inference_mode()
def _profiles(latent: LatentCE, images: torch.Tensor, findings: torch.Tensor, batch: int = 64) -> Profiles:
    ece, fin, prob = [], [], []
    head = latent.classifier.head
    for s in range(0, len(images), batch):
        p, p_do = latent.intervened_probs(latent.classifier.check_images(images[s : s + batch]))
        p, p_do = p.float().to(images.device), p_do.float().to(images.device)  # the classifier may run on a GPU
        f = findings[s : s + batch]
        ece.append(expected_effect(p, p_do, head))
        pf = p.gather(1, f[:, None])
        fin.append(pf - p_do[torch.arange(len(f)), :, f])
        prob.append(pf[:, 0])
    return Profiles(torch.cat(ece), torch.cat(fin), torch.cat(prob))


def _repeat(p: Profiles, times: int) -> Profiles:
    return Profiles(p.ece.repeat_interleave(times, 0), p.finding.repeat_interleave(times, 0), p.prob.repeat_interleave(times, 0))


def _rep_list(items: list, times: int) -> list:
    return [x for x in items for _ in range(times)]


def _aligned_on_train(ctx: StudyContext, n: int) -> dict:
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
        out[name] = {"channels": chosen, "names": [f"Z{j}" for j in chosen], "train_auroc": [round(float(col[j]), 4) for j in chosen]}
    return out


def _measures(cond: Profiles, clean: Profiles, aligned: list[list[int]], pixel_l2: torch.Tensor) -> dict[str, np.ndarray]:
    shift = (cond.ece - clean.ece).abs()
    k = shift.shape[1]
    sel = torch.zeros(len(shift), k, dtype=torch.bool)
    for i, a in enumerate(aligned):
        sel[i, a] = True
    inside = (shift * sel).sum(1) / sel.sum(1)
    outside = (shift * ~sel).sum(1) / (~sel).sum(1).clamp_min(1)
    return {
        "ece_l1": shift.sum(1).numpy(),
        "finding_l1": (cond.finding - clean.finding).abs().sum(1).numpy(),
        "finding_drop": (clean.prob - cond.prob).numpy(),
        "aligned_minus_other": (inside - outside).numpy(),
        "ece_l1_per_pixel_l2": (shift.sum(1) / pixel_l2.clamp_min(1e-12)).numpy(),
    }


def _compare(cond: dict, ctrl: dict, seed: int, control: str = "") -> dict:
    """Per measure: condition and control means with intervals, and the paired condition-minus-control difference."""
    rows = {}
    for m in MEASURES:
        diff = paired_difference(cond[m], ctrl[m], higher_is_better=True, seed=seed)
        rows[m] = {"condition": bootstrap_mean(cond[m], seed=seed).to_json(), "control": bootstrap_mean(ctrl[m], seed=seed).to_json(),
                   "difference": {**diff.to_json(), "reads": _reads(diff.verdict)}}
    return {"control": control, "measures": rows}


def _by_finding(cond: dict, ctrl: dict, findings: torch.Tensor, names: list[str], seed: int) -> dict:
    """The condition-minus-control differences split by the finding (or class) that was masked."""
    out = {}
    for f in findings.unique().tolist():
        sel = (findings == f).numpy()
        out[names[f]] = {"n": int(sel.sum()), **{m: paired_difference(cond[m][sel], ctrl[m][sel], seed=seed).to_json()
                                                  for m in ("ece_l1", "finding_l1", "aligned_minus_other")}}
    return out


def _reads(verdict: str) -> str:
    return {"better": "condition moves it more than the control", "worse": "control moves it more than the condition"}.get(verdict, "no difference shown")


def _holm(p: np.ndarray) -> np.ndarray:
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj


def _per_channel(cond: torch.Tensor, ctrl: torch.Tensor, table: ConceptTable, control: str, seed: int) -> dict:
    """Per channel: |shift| under the condition vs the control, paired interval, Wilcoxon p and Holm-adjusted p."""
    from scipy.stats import wilcoxon

    a, b = cond.numpy(), ctrl.numpy()
    k = a.shape[1]
    p = np.ones(k)
    for j in range(k):
        d = a[:, j] - b[:, j]
        if np.any(d != 0) and len(d) >= 2:
            p[j] = float(wilcoxon(a[:, j], b[:, j], zero_method="zsplit").pvalue)
    adj = _holm(p)
    rows = []
    for j in range(k):
        diff = paired_difference(a[:, j], b[:, j], seed=seed + j)
        rows.append({"channel": f"Z{j}", "label": table.label(j), "condition": float(a[:, j].mean()), "control": float(b[:, j].mean()),
                     "difference": diff.to_json(), "p": float(p[j]), "p_holm": float(adj[j]),
                     "moves_more": bool(adj[j] < ALPHA and diff.estimate > 0), "moves_less": bool(adj[j] < ALPHA and diff.estimate < 0)})
    return {"control": control, "test": "Wilcoxon signed-rank, paired per image, Holm-corrected over channels", "channels": rows,
            "n_moves_more": sum(r["moves_more"] for r in rows), "n_moves_less": sum(r["moves_less"] for r in rows)}


# ---- claims ---------------------------------------------------------------------------------------

def _iv(d: dict, spec: str = ".3g") -> str:
    return f"{d['estimate']:{spec}} [{d['low']:{spec}}, {d['high']:{spec}}]"


def _table_rows(condition: str, comp: dict) -> list[dict]:
    return [{"measure": MEASURES[m], "condition": condition, "condition_value": _iv(r["condition"]), "control": comp["control"],
             "control_value": _iv(r["control"]), "difference": _iv(r["difference"]), "verdict": r["difference"]["reads"]}
            for m, r in comp["measures"].items()]


def _holds(comp: dict, measure: str) -> bool:
    return comp["measures"][measure]["difference"]["verdict"] == "better"


def _claims(dataset: str, masking: dict, adversarial: dict, has_boxes: bool) -> tuple[list[dict], dict]:
    headline, claims = _masking_claims(dataset, masking, has_boxes) if masking["comparisons"] else (
        [], {"lesion_specific": {"claim": "masking the finding's region moves the latent profile more than masking the same area elsewhere",
                                 "forms": {}, "verdict": masking.get("note", "not measured")}})
    return _adversarial_claims(dataset, adversarial, headline, claims)


def _masking_claims(dataset: str, masking: dict, has_boxes: bool) -> tuple[list[dict], dict]:
    mc = masking["comparisons"][0]
    what = "the lesion" if has_boxes else "the strokes"
    ece = mc["measures"]["ece_l1"]
    headline = [{
        "claim": (f"{dataset}: masking {what} shifts the latent ECE profile by {_iv(ece['condition'])} (L1), masking {masking['control']} by "
                  f"{_iv(ece['control'])}: difference {_iv(ece['difference'])} ({ece['difference']['reads']}); on the finding's own class-CE "
                  f"profile the difference is {_iv(mc['measures']['finding_l1']['difference'])}; {masking['per_channel'][0]['n_moves_more']} of "
                  f"{len(masking['per_channel'][0]['channels'])} channels move significantly more (Holm, alpha {ALPHA})."),
        "table": _table_rows(masking["condition"], mc),
    }]
    forms = {"as stated (ECE profile L1)": _holds(mc, "ece_l1"),
             "per finding (the finding's class-CE profile)": _holds(mc, "finding_l1"),
             "per channel (>= 1 channel moves more, Holm)": masking["per_channel"][0]["n_moves_more"] > 0,
             "aligned channels move more than the others, beyond the control": _holds(mc, "aligned_minus_other"),
             "per unit of pixel change (ECE profile L1 / pixel L2)": _holds(mc, "ece_l1_per_pixel_l2")}
    lesion = {"claim": f"masking {what} moves the latent profile more than masking the same area elsewhere", "forms": forms,
              "verdict": _verdict(forms), "positive_control": {"finding_drop": mc["measures"]["finding_drop"]["difference"],
                                                                "reads": "masking the finding's own region lowers its probability more than the control region"
                                                                if _holds(mc, "finding_drop") else "masking the finding's own region does not lower its probability more than the control region"}}
    return headline, {"lesion_specific": lesion}


def _adversarial_claims(dataset: str, adversarial: dict, headline: list[dict], claims: dict) -> tuple[list[dict], dict]:
    if adversarial["comparisons"]:
        comps = {c["control"]: c for c in adversarial["comparisons"]}
        linf = next(c for n, c in comps.items() if "L-inf" in n)
        l2s = [c for n, c in comps.items() if "L-inf" not in n]
        for c in adversarial["comparisons"]:
            headline.append({
                "claim": (f"{dataset}: {adversarial['attack']} (n={adversarial['n']}, success {adversarial['success_rate']:.0%}) shifts the latent ECE profile by "
                          f"{_iv(c['measures']['ece_l1']['condition'])}, {c['control']} by {_iv(c['measures']['ece_l1']['control'])}: difference "
                          f"{_iv(c['measures']['ece_l1']['difference'])} ({c['measures']['ece_l1']['difference']['reads']})."),
                "table": _table_rows(adversarial["condition"], c)})
        per_ch = {p["control"]: p for p in adversarial["per_channel"]}
        l2_names = [n for n in comps if "L-inf" not in n]
        forms = {"as stated (ECE profile L1, vs noise of the same L-inf)": _holds(linf, "ece_l1"),
                 "at matched L2 (ECE profile L1, vs Gaussian noise and blur)": all(_holds(c, "ece_l1") for c in l2s),
                 "per finding, at matched L-inf (the attacked finding's class-CE profile)": _holds(linf, "finding_l1"),
                 "per finding, at matched L2 (the attacked finding's class-CE profile, vs Gaussian noise and blur)": all(_holds(c, "finding_l1") for c in l2s),
                 "per channel, at matched L2 (>= 1 channel moves more than under Gaussian noise and under blur, Holm)": bool(
                     set.intersection(*[{r["channel"] for r in per_ch[n]["channels"] if r["moves_more"]} for n in l2_names])),
                 "aligned channels move more than the others, beyond every control": all(_holds(c, "aligned_minus_other") for c in comps.values())}
        claims["adversarial_specific"] = {"claim": "an adversarial perturbation moves the latent profile more than random or natural perturbations of the same size",
                                          "forms": forms, "verdict": _verdict(forms)}
    else:
        claims["adversarial_specific"] = {"claim": "an adversarial perturbation moves the latent profile more than perturbations of the same size",
                                          "forms": {}, "verdict": "not measured: " + adversarial.get("note", "")}
    return headline, claims


def _verdict(forms: dict[str, bool]) -> str:
    names = list(forms)
    sharper = [n for n in names[1:] if forms[n]]
    fails = [n for n in names[1:] if not forms[n]]
    if forms[names[0]]:
        return "holds as stated" + (f"; also {'; '.join(sharper)}" if sharper else "") + (f"; not {'; '.join(fails)}" if fails else "")
    return f"does not hold as stated; holds only {'; '.join(sharper)}" if sharper else "does not hold in any measured form"


def _concept_figure(table: ConceptTable, images: torch.Tensor, path: Path, dataset: str) -> Path:
    """Each channel's most activating held-out image with the channel's activation map over it, titled by its concept."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    k, cols = table.k, 8
    rows = -(-k // cols)
    fig = Figure(figsize=(2.0 * cols, 2.25 * rows))
    FigureCanvasAgg(fig)
    for j in range(k):
        ax = fig.add_subplot(rows, cols, j + 1)
        i = table.rows[j].top_images[0]
        img = images[i].float()
        ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        m = table.maps[j, 0].numpy()
        ax.imshow(m, cmap="inferno", alpha=0.45, vmin=0, vmax=max(float(m.max()), 1e-6))
        ax.set_title(table.label(j), fontsize=6.5)
        ax.set_axis_off()
    fig.suptitle(f"{dataset}: each latent channel's most activating held-out image, activation overlaid", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.01, wspace=0.05, hspace=0.25)
    fig.savefig(path, dpi=80)
    return path


# ---- figure -----------------------------------------------------------------------------------------

def _figure(masking: dict, adversarial: dict, table: ConceptTable, path: Path, dataset: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 7.5))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.6])
    ax = fig.add_subplot(grid[0, 0])
    bars = [("mask: " + ("lesion" if "lesion" in masking["condition"] else "strokes"), masking["comparisons"][0]["measures"]["ece_l1"]["condition"], "C3"),
            ("mask: elsewhere", masking["comparisons"][0]["measures"]["ece_l1"]["control"], "C7")] if masking["comparisons"] else []
    if adversarial["comparisons"]:
        bars.append(("PGD", adversarial["comparisons"][0]["measures"]["ece_l1"]["condition"], "C0"))
    for c in adversarial["comparisons"]:
        short = "sign noise (Linf)" if "L-inf" in c["control"] else "Gaussian (L2)" if "noise" in c["control"] else "blur (L2)"
        bars.append((short, c["measures"]["ece_l1"]["control"], "C7"))
    for i, (name, iv, colour) in enumerate(bars):
        ax.bar(i, iv["estimate"], color=colour, yerr=[[iv["estimate"] - iv["low"]], [iv["high"] - iv["estimate"]]], capsize=3)
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b[0] for b in bars], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("latent ECE profile L1 shift")
    ax.set_title(f"{dataset}: condition (colour) beside control (grey), 95% CI", fontsize=9)
    ax2 = fig.add_subplot(grid[1, 0])
    rows = [("mask", c) for c in masking["comparisons"]] + [("PGD vs " + ("sign noise" if "L-inf" in c["control"] else "Gauss L2" if "noise" in c["control"] else "blur L2"), c)
                                                    for c in adversarial["comparisons"]]
    for i, (name, comp) in enumerate(rows):
        for j, m in enumerate(("ece_l1", "finding_l1")):
            d = comp["measures"][m]["difference"]
            ax2.errorbar(i + (j - 0.5) * 0.25, d["estimate"], yerr=[[d["estimate"] - d["low"]], [d["high"] - d["estimate"]]], fmt="o",
                         color=("C3", "C2")[j], capsize=3, label=("ECE profile", "finding's CE profile")[j] if i == 0 else None)
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xticks(range(len(rows)))
    ax2.set_xticklabels([r[0] for r in rows], rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("condition - control (L1 shift)")
    if rows:
        ax2.legend(fontsize=7)
    panels = [("masking", p) for p in masking["per_channel"]] + [("PGD vs " + p["control"], p) for p in adversarial["per_channel"] if "matched L2" in p["control"]]
    for r, (title, pc) in enumerate(panels[:2]):
        ax3 = fig.add_subplot(grid[r, 1])
        k = len(pc["channels"])
        xs = np.arange(k)
        ax3.bar(xs - 0.2, [c["condition"] for c in pc["channels"]], 0.4, color="C3" if r == 0 else "C0", label="condition")
        ax3.bar(xs + 0.2, [c["control"] for c in pc["channels"]], 0.4, color="C7", label="control: " + pc["control"])
        for j, c in enumerate(pc["channels"]):
            if c["moves_more"] or c["moves_less"]:
                ax3.annotate("*" if c["moves_more"] else "v", (j, max(c["condition"], c["control"])), ha="center", va="bottom", fontsize=11)
        ax3.set_xticks(xs)
        ax3.set_xticklabels([table.label(j) for j in range(k)], rotation=60, ha="right", fontsize=6)
        ax3.set_ylabel("mean |shift| of Z_j")
        ax3.set_title(f"{title}: per channel (* more, v less than control, Holm {ALPHA})", fontsize=9)
        ax3.margins(y=0.12)
        ax3.legend(fontsize=7, loc="upper right")
    fig.subplots_adjust(left=0.06, right=0.99, top=0.95, bottom=0.17, hspace=0.75, wspace=0.18)
    fig.savefig(path, dpi=80)
    return path
