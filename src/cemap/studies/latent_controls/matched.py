"""Controls matched on the *output*: the latent profile is read through the classifier's head, so an intervention that
lowers p(finding) more moves the profile more, whatever it touches. Masking the lesion lowers p(finding) far more
than masking healthy tissue (and PGD more than noise), so "the finding's own profile moves more" can follow from the
output alone. Two answers, both reported:

* an **output-matched control**: candidate control interventions of increasing strength (the size-matched control
  plus Gaussian noise of ``s`` times the condition's pixel L2, ``s`` in ``NOISE_LADDER``); per image, the candidate
  whose drop in p(finding) is closest to the condition's, kept where it lies within ``OUTPUT_TOLERANCE``; the
  condition is compared with it on those images only;
* a **regression** of the profile shift on the drop in p(finding) over condition and control images together; the
  condition-minus-control difference of the residuals (paired per image) is what the output change does not explain.
"""

from __future__ import annotations

import numpy as np
import torch

from ...causal import LatentCE
from ...evaluate.bootstrap import paired_difference
from .measures import Profiles, compare, l2, measures, profiles, reads
from .perturbations import matched_gaussian

OUTPUT_TOLERANCE = 0.05  # |drop in p(finding)| of a matched control within this of the condition's (probability)
NOISE_LADDER = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)  # noise L2 added to the control, in units of the condition's L2
RESIDUAL_MEASURES = ("ece_l1", "finding_l1")


def closest_within(
    target: np.ndarray, candidates: np.ndarray, tolerance: float = OUTPUT_TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """(pick, matched): per image (row of ``candidates``, N x S output changes) the candidate whose output change is
    closest to ``target[i]``, and whether it lies within ``tolerance`` of it (NaN candidates never match)."""
    gap = np.abs(np.asarray(candidates, float) - np.asarray(target, float)[:, None])
    gap = np.where(np.isfinite(gap), gap, np.inf)
    pick = gap.argmin(1)
    return pick, gap[np.arange(len(pick)), pick] <= tolerance


def output_matched(
    latent: LatentCE,
    base: torch.Tensor,
    images: torch.Tensor,
    subjects: tuple[torch.Tensor, Profiles, list[list[int]]],
    condition: dict[str, np.ndarray],
    reference_l2: torch.Tensor,
    gen: torch.Generator,
    seed: int,
    name: str,
) -> dict:
    """The condition against, per image, the candidate control (``base`` plus noise along ``NOISE_LADDER`` in units of
    ``reference_l2``) whose drop in p(finding) is closest to the condition's, on the images matched within tolerance.

    Args:
        base: N x C x H x W, the size-matched control images (a region elsewhere masked, or the clean images).
        images: the clean images the measures are taken against. subjects: (findings, clean profiles, aligned).
        condition: the condition's measures (:func:`measures`), per image.
    """
    findings, clean, aligned = subjects
    per_candidate = []
    for s in NOISE_LADDER:
        xc = base if s == 0 else matched_gaussian(base, s * reference_l2, gen)
        per_candidate.append(measures(profiles(latent, xc, findings), clean, aligned, l2(xc, images)))
    drops = np.stack([m["finding_drop"] for m in per_candidate], 1)  # N x S
    pick, ok = closest_within(condition["finding_drop"], drops)
    rows = np.arange(len(pick))
    chosen = {m: np.stack([c[m] for c in per_candidate], 1)[rows, pick] for m in condition}
    out = {
        "control": f"{name}, plus Gaussian noise chosen per image so that the drop in p(finding) matches the "
        f"condition's within {OUTPUT_TOLERANCE}",
        "tolerance": OUTPUT_TOLERANCE,
        "noise_ladder_in_condition_l2": list(NOISE_LADDER),
        "n": int(len(pick)),
        "n_matched": int(ok.sum()),
        "noise_scale_chosen": [NOISE_LADDER[p] if k else None for p, k in zip(pick.tolist(), ok.tolist())],
        "finding_drop": {
            "condition": float(condition["finding_drop"][ok].mean()) if ok.any() else None,
            "control": float(chosen["finding_drop"][ok].mean()) if ok.any() else None,
            "largest_gap_of_matched": float(np.abs(condition["finding_drop"] - chosen["finding_drop"])[ok].max())
            if ok.any()
            else None,
        },
        "comparisons": [],
    }
    if ok.sum() >= 2:
        matched = ({m: v[ok] for m, v in condition.items()}, {m: v[ok] for m, v in chosen.items()})
        out["comparisons"].append(compare(*matched, seed, control=out["control"]))
    else:
        out["note"] = "fewer than 2 images have a control within the tolerance: nothing to compare"
    return out


def residual_test(condition: dict[str, np.ndarray], control: dict[str, np.ndarray], seed: int, name: str) -> dict:
    """Per profile measure: the least-squares line of the shift on the drop in p(finding), fitted over condition and
    control images together, and the paired condition-minus-control difference of the residuals (what the output
    change does not explain). A difference only from a larger output change leaves residuals that do not differ; the
    pooled line takes up part of a real difference too where the two arms' drops barely overlap (conservative)."""
    drop = np.r_[condition["finding_drop"], control["finding_drop"]]
    out = {"control": name, "regressor": "finding_drop", "measures": {}}
    for m in RESIDUAL_MEASURES:
        keep = np.isfinite(drop) & np.isfinite(np.r_[condition[m], control[m]])
        slope, intercept = np.polyfit(drop[keep], np.r_[condition[m], control[m]][keep], 1)
        residual = [d[m] - (intercept + slope * d["finding_drop"]) for d in (condition, control)]
        diff = paired_difference(*residual, higher_is_better=True, seed=seed)
        out["measures"][m] = {
            "slope": float(slope),
            "intercept": float(intercept),
            "residual_difference": {**diff.to_json(), "reads": reads(diff.verdict)},
        }
    return out
