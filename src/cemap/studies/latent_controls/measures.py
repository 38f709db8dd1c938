"""The latent profiles of the study's images and what is measured on them: shifts, paired comparisons, per finding."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...causal import LatentCE
from ...causal.effects import expected_effect
from ...evaluate.bootstrap import bootstrap_mean, paired_difference
from ..results import MEASURES


@dataclass
class Subjects:
    """The study's images and what each is measured against: the finding it is about, its clean profiles, the channels
    aligned with that finding, and the channels' labels (their concepts)."""

    batch: object  # the data's Batch of the study images
    indices: list[int]  # their positions in the test split
    findings: torch.Tensor  # N finding (or class) indices
    clean: "Profiles"
    aligned: list[list[int]]
    labels: list[str]

    @property
    def images(self) -> torch.Tensor:
        return self.batch.images


@dataclass
class Profiles:
    """Per image: latent ECE profile (N x k), the finding's class-CE profile (N x k), p_AE(finding) (N)."""

    ece: torch.Tensor
    finding: torch.Tensor
    prob: torch.Tensor

    def take(self, idx) -> "Profiles":
        return Profiles(self.ece[idx], self.finding[idx], self.prob[idx])


@torch.inference_mode()
def profiles(latent: LatentCE, images: torch.Tensor, findings: torch.Tensor, batch: int = 64) -> Profiles:
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


def l2(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image: the L2 norm of the pixel change."""
    return (a - b).flatten(1).norm(dim=1)


def repeat(p: Profiles, times: int) -> Profiles:
    return Profiles(
        p.ece.repeat_interleave(times, 0), p.finding.repeat_interleave(times, 0), p.prob.repeat_interleave(times, 0)
    )


def rep_list(items: list, times: int) -> list:
    return [x for x in items for _ in range(times)]


def measures(
    cond: Profiles, clean: Profiles, aligned: list[list[int]], pixel_l2: torch.Tensor
) -> dict[str, np.ndarray]:
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


def compare(cond: dict, ctrl: dict, seed: int, control: str = "") -> dict:
    """Per measure: condition and control means with intervals, and the paired condition-minus-control difference."""
    rows = {}
    for m in MEASURES:
        diff = paired_difference(cond[m], ctrl[m], higher_is_better=True, seed=seed)
        rows[m] = {
            "condition": bootstrap_mean(cond[m], seed=seed).to_json(),
            "control": bootstrap_mean(ctrl[m], seed=seed).to_json(),
            "difference": {**diff.to_json(), "reads": reads(diff.verdict)},
        }
    return {"control": control, "measures": rows}


def by_finding(cond: dict, ctrl: dict, findings: torch.Tensor, names: list[str], seed: int) -> dict:
    """The condition-minus-control differences split by the finding (or class) that was masked."""
    out = {}
    for f in findings.unique().tolist():
        sel = (findings == f).numpy()
        out[names[f]] = {
            "n": int(sel.sum()),
            **{
                m: paired_difference(cond[m][sel], ctrl[m][sel], seed=seed).to_json()
                for m in ("ece_l1", "finding_l1", "aligned_minus_other")
            },
        }
    return out


def reads(verdict: str) -> str:
    return {
        "better": "condition moves it more than the control",
        "worse": "control moves it more than the condition",
    }.get(verdict, "no difference shown")
