"""The detection study's figures, as data: which signature features tell clean from adversarial, and the ROC curves."""

from __future__ import annotations

import numpy as np

from ...evaluate.detection import auroc, roc_points
from ..context import StudyContext
from ..figures import RocPanels, SignatureHistograms
from .config import METHODS
from .protocol import Study


def figures(ctx: StudyContext, study: Study, mix: dict) -> dict:
    """Signature histograms (clean vs adversarial, the five most telling features) and ROC curves of the detectors
    fitted
    on the mix, for the attacks with more than one successful adversarial."""
    figures = {}
    shown = [
        k
        for k in ("pgd_high", "pgd_minimal", "pgd_matched", "cw")
        if len(study.outcomes[k]["eval"].features["ce_log_odds"]) > 1
    ]
    variant = mix["ce"].variant if mix.get("ce") else "ce_log_odds"
    names = list(study.features.info[variant].feature_names)
    clean_eval = study.clean["eval"][variant]
    if shown:
        adv = {study.specs[k].label: study.outcomes[k]["eval"].features[variant] for k in shown}
        ref = next(iter(adv.values()))
        y = np.r_[np.zeros(len(clean_eval)), np.ones(len(ref))]
        strength = [abs(auroc(y, np.r_[clean_eval[:, j], ref[:, j]]) - 0.5) for j in range(len(names))]
        top = list(np.argsort(strength)[::-1][:5])
        figures["histograms"] = ctx.figure(SignatureHistograms("signature_histograms.png", clean_eval, adv, names, top))
    curves = {}
    for key in shown:
        methods = {}
        for m in METHODS:
            s = study.scores(m, mix.get(m), key) if mix.get(m) else None
            if s is not None and len(s[0]) > 1 and len(s[1]) > 1:
                y = np.r_[np.zeros(len(s[0])), np.ones(len(s[1]))]
                sc = np.r_[s[0], s[1]]
                fpr, tpr = roc_points(y, sc)
                methods[m] = (fpr, tpr, auroc(y, sc))
        if methods:
            curves[f"{study.specs[key].label} (fit on mix)"] = methods
    if curves:
        figures["roc"] = ctx.figure(RocPanels("roc_curves.png", curves))
    return {k: v for k, v in figures.items() if v}
