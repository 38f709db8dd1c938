"""Words and tables from the numbers: headline claims (each with its interval and verdict), plain-text and Markdown
tables."""

from __future__ import annotations

import math

import numpy as np

HEADLINE_METRICS = (
    ("gt_rank", "ground-truth lesion ranking (Spearman)"),
    ("gt_top1", "ground-truth top-1 lesion"),
    ("pointing_game", "single-maximum pointing game"),
    ("chexlocalize_iou", "CheXlocalize mIoU"),
    ("chexlocalize_hit", "CheXlocalize hit rate"),
    ("road@noisy-linear", "ROAD (noisy linear imputer)"),
    ("road@blur", "ROAD (blur imputer)"),
    ("road@counterfactual", "ROAD (exact counterfactual)"),
    ("morf@counterfactual", "deletion / MoRF (exact counterfactual, lower better)"),
    ("iobb@0.25", "ChestX-ray8 T(IoBB > 0.25)"),
)


def clean(value):
    """JSON-safe copy: NaN -> None, numpy scalars and arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def fmt(i: dict | None, signed: bool = False) -> str:
    if not i or i.get("estimate") is None:
        return "-"
    s = "+" if signed else ""
    return f"{i['estimate']:{s}.3f} [{i['low']:{s}.3f}, {i['high']:{s}.3f}]"


def _claim(where: str, label: str, entry: dict, ce: dict, peer: dict, over: str) -> str:
    d = entry["difference"]
    verdict = entry["verdict"]
    tail = (
        f"flagged uninformative (floor {', '.join(entry.get('floors', {}).get('floors_beating_median', []) or ['?'])} "
        "beats the median "
        "method), no verdict"
        if verdict == "uninformative metric"
        else f"CE is {verdict}"
    )
    return (
        f"{where}, {over}: CE map {label} {fmt(ce)} vs best tuned peer {entry['best_tuned_peer']} {fmt(peer)}; "
        f"difference {fmt(d, signed=True)} - {tail}."
    )


def run_claims(run: dict) -> list[dict]:
    """One claim per headline metric of one run (image-level intervals), then the sanity verdict of the tuned CE map."""
    where = f"{run['model']} at {run['size']} px (training seed {run['train_seed']})"
    over = f"{run['n_images']} held-out images ({run['n_pairs']} pairs)"
    claims = []
    for k, label in HEADLINE_METRICS:
        entry = run["ce_vs_best_tuned_peer"].get(k)
        if entry:
            entry = {**entry, "floors": run["floors"][k]}
            claims.append(
                {
                    "metric": k,
                    "claim": _claim(
                        where, label, entry, run["rows"]["ce"][k], run["rows"][entry["best_tuned_peer"]][k], over
                    ),
                }
            )
    s = run.get("sanity", {}).get("ce")
    if s:
        v = s["cascading_full"]
        worst = max(v["per_seed"], key=lambda e: abs(e["spearman_abs"]["estimate"] or 0))
        claims.append(
            {
                "metric": "sanity",
                "claim": f"{where}: the tuned CE map {'passes' if v['passes'] else 'fails'} the two-sided "
                "randomisation "
                f"test ({s['n_pairs']} pairs; worst seed |map| Spearman {fmt(worst['spearman_abs'])}, signed "
                f"{fmt(worst['spearman'])}); Arun baseline {'passed' if s['arun']['passes'] else 'failed'}.",
            }
        )
    return claims


def merged_claims(group: dict) -> list[dict]:
    """One claim per headline metric over several trainings (hierarchical intervals)."""
    where = f"{group['model']} at {group['size']} px over {group['n_trainings']} trainings"
    over = f"{group['n_images_per_training']} held-out images each"
    out = []
    for k, label in HEADLINE_METRICS:
        entry = group["ce_vs_best_tuned_peer"].get(k)
        if entry:
            out.append({"metric": k, "claim": _claim(where, label, entry, entry["ce"], entry["peer"], over)})
    return out


COLUMNS = [
    ("gt_rank", "GT-rho"),
    ("gt_top1", "GT-top1"),
    ("pointing_game", "PG"),
    ("chexlocalize_hit", "hit"),
    ("chexlocalize_iou", "mIoU"),
    ("energy", "energy"),
    ("iobb@0.25", "IoBB.25"),
    ("road@noisy-linear", "ROAD-nl"),
    ("road@blur", "ROAD-bl"),
    ("road@counterfactual", "ROAD-cf"),
    ("morf@counterfactual", "MoRF-cf"),
]


def format_run(rows: dict, against: dict | None = None, floors: dict | None = None) -> str:
    """Plain-text table: estimates per method and metric; against the best tuned peer, CE's verdict letter (+ / = / - /
    u)."""
    head = f"{'method':<22}" + "".join(f"{c:>9}" for _, c in COLUMNS)
    lines = [head]
    for m, row in rows.items():
        lines.append(
            f"{m:<22}"
            + "".join(
                f"{'-' if row.get(k, {}).get('estimate') is None else format(row[k]['estimate'], '.3f'):>9}"
                for k, _ in COLUMNS
            )
        )
    if against:
        mark = {"better": "+", "no different": "=", "worse": "-", "uninformative metric": "u"}
        lines.append(
            f"{'CE vs best tuned peer':<22}"
            + "".join(f"{mark.get(against.get(k, {}).get('verdict'), '?'):>9}" for k, _ in COLUMNS)
        )
    if floors:
        flagged = [k for k, v in floors.items() if v["uninformative"]]
        lines.append("uninformative (a floor beats the median method): " + (", ".join(flagged) or "none"))
    return "\n".join(lines)


def markdown_summary(groups: list[dict]) -> str:
    """docs/evaluation.md's table: per model and size, CE against the best tuned peer on the headline metrics."""
    lines = [
        "| model, size (trainings) | metric | CE | best tuned peer | CE - peer | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for g in groups:
        for k, label in HEADLINE_METRICS:
            e = g["ce_vs_best_tuned_peer"].get(k)
            if e:
                lines.append(
                    f"| {g['model']}, {g['size']} px ({g['n_trainings']}) | {label} | {fmt(e['ce'])} | "
                    f"{e['best_tuned_peer']} "
                    f"{fmt(e['peer'])} | {fmt(e['difference'], signed=True)} | **{e['verdict']}** |"
                )
    return "\n".join(lines)
