"""One (artifact, training seed): the spurious model and its normal twin, verified, audited and explained."""

from __future__ import annotations

import time

import numpy as np

from ..audit import AuditConfig, run_audit
from ..context import StudyContext
from .attributions import adebayo, blinded_score, explained_images, method_maps
from .config import RelianceBenchmarkConfig
from .models import heldout, kept, train_model, verify
from .tcav import tcav_scores

MODES = ("spurious", "normal")


def audit_model(cfg: RelianceBenchmarkConfig, artifact: str, classifier, data_mode: str = "normal") -> dict:
    """The blinded audit (the decision rule's part of the full form) and the known-artifact audit of one model, on the
    held-out images of ``data_mode`` (see :func:`.models.heldout`)."""
    ctx = StudyContext(
        dataset="synthcxr-planted",
        out="/tmp",
        model="cxr-cnn-planted",
        seed=cfg.seed,
        dataset_options={
            "artifact": artifact,
            "mode": data_mode,
            "size": cfg.size,
            "seed": cfg.heldout_seed,
            "artifact_seed": cfg.test_artifact_seed,
        },
    )
    ctx.classifier = classifier
    result = run_audit(
        ctx,
        AuditConfig(
            n_images=cfg.audit_images,
            donors=cfg.audit_donors,
            recipients=cfg.audit_recipients,
            sensitivity=False,
            latent=False,
            known=("planted",),
            seed=cfg.seed,
        ),
    )
    known = result.known[0]
    return {
        "concern": result.concern,
        "top": result.concern_transfer.to_json() if result.concern_transfer else None,
        "reliance_top5": [t.to_json() for t in result.reliance[:5]],
        "known_concern": known.effect.low,
        "known": known.to_json(),
        "timings_s": result.timings_s,
    }


def tcav_model(cfg: RelianceBenchmarkConfig, data, classifier) -> dict:
    positives = np.flatnonzero(data.target_mask().numpy())
    concept = np.arange(
        len(data) - cfg.tcav_concept_images, len(data)
    )  # the last held-out images, with and without the artifact
    inputs = data.images(positives[:32])
    return tcav_scores(
        classifier, data.images(concept, True), data.images(concept, False), inputs, data.target, cfg.seed
    )


def run_pair(cfg: RelianceBenchmarkConfig, artifact: str, seed: int) -> dict:
    """Both models of one (artifact, seed): verification, audit, TCAV, every attribution method, and Adebayo's
    measures."""
    data, correlated = heldout(cfg, artifact), heldout(cfg, artifact, "spurious")
    images = explained_images(data, cfg.n_attr, cfg.seed)
    record, maps = {"artifact": artifact, "seed": seed, "role": cfg.role(seed), "models": {}}, {}
    for mode in MODES:
        t = time.perf_counter()
        clf = train_model(artifact, mode, seed, cfg.size)
        times = {"train": time.perf_counter() - t}
        v = verify(clf, data, cfg.n_verify, cfg.seed)
        row = {"mode": mode, "verification": v.to_json(), "kept": kept(mode, v)}
        t = time.perf_counter()
        row["audit"] = audit_model(cfg, artifact, clf)
        row["audit_correlated"] = audit_model(cfg, artifact, clf, "spurious")
        times["audit"], t = time.perf_counter() - t, time.perf_counter()
        row["tcav"] = tcav_model(cfg, data, clf)
        times["tcav"], t = time.perf_counter() - t, time.perf_counter()
        maps[mode], row["methods"] = {}, {}
        for m in cfg.methods:
            maps[mode][m] = method_maps(clf, m, cfg.method_options.get(m, {}), images, data, correlated)
            row["methods"][m] = {
                "blinded": blinded_score(maps[mode][m], images),
                "blinded_correlated": blinded_score(maps[mode][m], images, "as_is_correlated"),
            }
        times["attributions"] = time.perf_counter() - t
        row["timings_s"] = {k: round(v, 1) for k, v in times.items()}
        record["models"][mode] = row
    record["adebayo"] = {m: adebayo(maps["spurious"][m], maps["normal"][m], images) for m in cfg.methods}
    return record
