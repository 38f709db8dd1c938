"""The adversarial experiment: PGD on the finding, against random and natural perturbations of the same size
(sign noise of its L-inf budget, Gaussian noise and blur of its L2), successful attacks only."""

from __future__ import annotations

import torch

from ...attacks import PGD, perturbation_norms
from ...causal import LatentCE
from ...evaluate.paired_tests import per_channel_tests
from ..context import StudyContext
from .matched import output_matched, residual_test
from .measures import Subjects, compare, l2, measures, profiles
from .perturbations import matched_blur, matched_gaussian, sign_noise


def norms(a: torch.Tensor, b: torch.Tensor) -> dict:
    """Mean L2 and L-inf of the pixel change over the images."""
    linf, l2_norm = perturbation_norms(b, a)
    return {"l2": float(l2_norm.mean()), "linf": float(linf.mean())}


def adversarial_experiment(
    ctx: StudyContext, latent: LatentCE, subjects: Subjects, eps: float, pgd_steps: int, attacked: str
) -> dict:
    """PGD-Linf (``eps``, ``pgd_steps``) against each control, on the images the attack flipped."""
    images, findings, clean, aligned = subjects.images, subjects.findings, subjects.clean, subjects.aligned
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=ctx.generator("latent_controls/pgd")))
    result = PGD(ctx.classifier, eps=eps, steps=pgd_steps, seed=seed)(images, findings)
    ok = result.success
    out = {
        "attack": f"PGD-Linf eps {eps:.4g}, {pgd_steps} steps",
        "attacked": attacked,
        "success_rate": float(ok.float().mean()),
        "n": int(ok.sum()),
        "comparisons": [],
        "per_channel": [],
        "pixels_changed": {},
        "regression": [],
    }
    if int(ok.sum()) < 2:
        out["note"] = "fewer than 2 attacks succeeded: nothing to compare"
        return out
    idx = torch.nonzero(ok).flatten()
    x, adv, f = images[idx], result.adversarial[idx], findings[idx]
    base, al = clean.take(idx), [aligned[i] for i in idx.tolist()]
    gen = ctx.generator("latent_controls/noise")
    perturbed = {  # drawn in this order from one stream: the sign noise first
        f"random sign noise +-{eps:.3g} (matched L-inf)": sign_noise(x, eps, gen),
        "Gaussian noise (matched L2)": matched_gaussian(x, result.l2[idx], gen),
        "Gaussian blur (L2 closest to PGD's)": matched_blur(x, result.l2[idx]),
    }
    p_adv = profiles(latent, adv, f)
    m_adv = measures(p_adv, base, al, l2(adv, x))
    ch_adv = (p_adv.ece - base.ece).abs()
    out["pixels_changed"]["PGD"] = norms(adv, x)
    out["condition"] = out["attack"]
    for name, xc in perturbed.items():
        pc = profiles(latent, xc, f)
        m_ctrl = measures(pc, base, al, l2(xc, x))
        out["pixels_changed"][name] = norms(xc, x)
        out["comparisons"].append(compare(m_adv, m_ctrl, ctx.seed, control=name))
        out["per_channel"].append(per_channel_tests(ch_adv, (pc.ece - base.ece).abs(), subjects.labels, name, ctx.seed))
        out["regression"].append(residual_test(m_adv, m_ctrl, ctx.seed, name))
    gen = ctx.generator("latent_controls/output-matched")
    out["output_matched"] = output_matched(
        latent, x, x, (f, base, al), m_adv, result.l2[idx], gen, ctx.seed, "the image"
    )
    return out
