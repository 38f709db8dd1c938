"""From per-pair values to tables and verdicts: image-level intervals in one run, hierarchical ones over trainings.

**The interval rule** (stated once): a figure's 95% interval resamples images (all pairs of a
drawn image come along); over several trainings of one model and size it resamples the
trainings, then the images within each (:func:`cemap.evaluate.bootstrap.hierarchical_difference`).
CE is *better* (or *worse*) than a method when the interval of the difference excludes 0, else
*no different*. The comparison is with the **best tuned peer** on each metric - the peer with the
best point estimate on the held-out images, a choice that can only favour the peer. A metric
on which a floor (random, centre, edge, contrast) beats the median method is *uninformative*:
it is reported, and takes no verdict.
"""

from __future__ import annotations

import numpy as np

from ...evaluate.bootstrap import (
    cluster_bootstrap_mean,
    cluster_paired_difference,
    hierarchical_difference,
    hierarchical_mean,
)
from ...evaluate.faithfulness import floor_check
from .config import FLOORS
from .metrics import higher_is_better

RULE = (
    "95% percentile bootstrap interval resampling images (pairs clustered within them); over trainings, "
    "resampling trainings "
    "then images (hierarchical); a verdict (better / worse) only when the interval of CE minus the "
    "best tuned peer excludes 0, "
    "and only on metrics no floor (random, centre, edge, contrast) wins against the median method"
)
CE = "ce"


def rows(values: dict[str, dict[str, np.ndarray]], clusters: np.ndarray, n_boot: int) -> dict[str, dict]:
    """method -> metric -> interval over images."""
    return {
        m: {k: cluster_bootstrap_mean(v, clusters, n_boot).to_json() for k, v in by_metric.items()}
        for m, by_metric in values.items()
    }


def floors_table(means: dict[str, dict[str, float]], metrics, floors=FLOORS) -> dict[str, dict]:
    """metric -> :func:`floor_check` of the methods' mean scores (the CE variants and peers are the methods)."""
    return {k: floor_check({m: means[m][k] for m in means}, higher_is_better(k), floors) for k in metrics}


def best_peer(means: dict[str, dict[str, float]], metric: str, peers) -> str | None:
    scored = {p: means[p][metric] for p in peers if p in means and means[p][metric] == means[p][metric]}
    if not scored:
        return None
    pick = max if higher_is_better(metric) else min
    return pick(scored, key=scored.get)


def run_verdicts(values: dict[str, dict[str, np.ndarray]], clusters: np.ndarray, peers, n_boot: int) -> dict:
    """One run: rows, floor checks, CE minus every method, and CE against the best tuned peer on every metric."""
    metrics = list(values[CE])
    means = {
        m: {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan") for k, v in by.items()}
        for m, by in values.items()
    }
    floors = floors_table(means, metrics)
    ce_minus = {
        m: {k: _diff(values[CE][k], values[m][k], clusters, k, n_boot) for k in metrics} for m in values if m != CE
    }
    against = {}
    for k in metrics:
        peer = best_peer(means, k, peers)
        if peer is None:
            continue
        d = ce_minus[peer][k]
        against[k] = {
            "best_tuned_peer": peer,
            "difference": d,
            "uninformative": floors[k]["uninformative"],
            "verdict": "uninformative metric" if floors[k]["uninformative"] else d["verdict"],
        }
    return {
        "rows": rows(values, clusters, n_boot),
        "floors": floors,
        "ce_minus": ce_minus,
        "ce_vs_best_tuned_peer": against,
        "rule": RULE,
    }


def _diff(a, b, clusters, metric, n_boot) -> dict:
    d = cluster_paired_difference(a, b, clusters, higher_is_better(metric), n_boot)
    return {**d.to_json(), "verdict": d.verdict}


def merged_verdicts(runs: list[dict], peers, n_boot: int = 2000) -> dict:
    """Several trainings of one model and size (each ``{"values": method -> metric -> array, "clusters": array}``):
    hierarchical intervals of every method and of CE minus the best tuned peer (chosen on the pooled point
    estimates)."""
    methods = [m for m in runs[0]["values"] if all(m in r["values"] for r in runs)]
    metrics = list(runs[0]["values"][CE])
    table = {
        m: {k: hierarchical_mean([(r["values"][m][k], r["clusters"]) for r in runs], n_boot).to_json() for k in metrics}
        for m in methods
    }
    means = {m: {k: table[m][k]["estimate"] for k in metrics} for m in methods}
    floors = floors_table(means, metrics)
    out = {}
    for k in metrics:
        peer = best_peer(means, k, peers)
        if peer is None:
            continue
        d = hierarchical_difference(
            [(r["values"][CE][k], r["values"][peer][k], r["clusters"]) for r in runs], higher_is_better(k), n_boot
        )
        out[k] = {
            "best_tuned_peer": peer,
            "ce": table[CE][k],
            "peer": table[peer][k],
            "difference": {**d.to_json(), "verdict": d.verdict},
            "floors": floors[k],
            "verdict": "uninformative metric" if floors[k]["uninformative"] else d.verdict,
            "per_training_difference": [float(np.nanmean(r["values"][CE][k] - r["values"][peer][k])) for r in runs],
        }
    return {"n_trainings": len(runs), "rows": table, "floors": floors, "ce_vs_best_tuned_peer": out, "rule": RULE}
