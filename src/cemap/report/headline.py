"""What a run found, in sentences: the report's first screen.

Each study JSON may carry ``"headline": [{"claim": str, "table": [row dicts]}]`` written by the
study itself; those come first and verbatim. Where a folder predates that (or a study wrote
none), the claims are derived here from the numbers the JSON files do hold, and whatever cannot
be derived is said to be "not computed". Nothing here computes a metric: it only reads them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .numbers import estimate, interval, is_interval, number, show

# Study files whose headline is read, in the order the reader meets them.
HEADLINE_FILES = ("evaluation", "latent_controls", "detection", "latent_concepts", "explain", "manifest", "study", "metrics")


@dataclass
class Claim:
    text: str
    source: str  # the JSON file it comes from
    table: list[dict] = field(default_factory=list)
    derived: bool = False  # True when the report derived it (the study wrote no headline)
    rank: int = 1  # order within its source: 0 = a verdict, 1 = the study's own headline, 2 = derived numbers


# The order of the questions on the first screen: localisation, the latent experiments, detection, concepts.
SOURCE_ORDER = ("evaluation.json", "metrics.json", "latent_controls.json", "study.json", "detection.json", "latent_concepts.json", "manifest.json", "explain.json")


def _rows(value: Any) -> list[dict]:
    return [r for r in value if isinstance(r, dict)] if isinstance(value, list) else []


def written_headlines(results: dict[str, dict]) -> list[Claim]:
    claims = []
    for kind in HEADLINE_FILES:
        block = (results.get(kind) or {}).get("headline")
        if isinstance(block, str):
            block = [{"claim": block}]
        for entry in block if isinstance(block, list) else []:
            if isinstance(entry, str):
                entry = {"claim": entry}
            if isinstance(entry, dict) and isinstance(entry.get("claim"), str):
                claims.append(Claim(entry["claim"], f"{kind}.json", _rows(entry.get("table"))))
    return claims


def fidelity_of(results: dict[str, dict]) -> dict | None:
    manifest = results.get("manifest") or {}
    for result in (results.get("metrics"), results.get("explain"), manifest, manifest.get("config"), results.get("study")):
        ae = (result or {}).get("autoencoder") if isinstance(result, dict) else None
        if isinstance(ae, dict) and isinstance(ae.get("fidelity"), dict):
            return ae["fidelity"]
    return None


def fidelity_sentence(results: dict[str, dict]) -> tuple[str, str]:
    """(sentence, css class): whether latent CEs can be trusted to describe the original model."""
    fid = fidelity_of(results)
    if fid is None:
        return "Autoencoder fidelity: not computed (no latent autoencoder in this run, so no latent CE profiles).", "missing"
    agreement, kl = show(fid.get("agreement")), show(fid.get("mean_kl"))
    n = fid.get("n")
    where = f" on {number(n)} images" if isinstance(n, int) else ""
    if fid.get("ok"):
        return (f"The autoencoder is faithful: with it inserted, the classifier takes the same decision {agreement} of the time{where} "
                f"(mean KL {kl}), so the latent CE profiles describe the original model."), "ok"
    return (f"The autoencoder is NOT faithful: the classifier with it inserted agrees with the original only {agreement} of the time{where} "
            f"(mean KL {kl}); read the latent CE profiles with caution."), "warn"


# evaluation rows: (key, words, higher is better)
EVAL_METRICS = [
    ("pointing_game", "pointing game", True), ("energy_pointing", "energy inside the box", True),
    ("deletion_auc", "deletion AUC", False), ("insertion_auc", "insertion AUC", True),
]
FLOORS = ("random", "centre", "center")


def _method(row: dict) -> str:
    return str(row.get("method", row.get("name", "?")))


def evaluation_claims(evaluation: dict | None) -> list[Claim]:
    if not isinstance(evaluation, dict):
        return []
    rows = _rows(evaluation.get("rows"))
    scored = [r for r in rows if estimate(r.get("pointing_game")) is not None]
    if not scored:
        return [Claim("Localisation: not computed (the evaluation recorded no pointing game).", "evaluation.json", derived=True)]
    real = [r for r in scored if _method(r).lower() not in FLOORS] or scored
    ranked = sorted(real, key=lambda r: estimate(r["pointing_game"]), reverse=True)
    best = ranked[0]
    score = lambda r: estimate(r["pointing_game"])  # noqa: E731
    tied = [r for r in ranked[1:] if abs(score(r) - score(best)) < 1e-9]
    if tied:
        text = f"{_method(best)} and {', '.join(_method(r) for r in tied)} localise best, tied: pointing game {show(best['pointing_game'])}"
    else:
        text = f"{_method(best)} localises best: pointing game {show(best['pointing_game'])}"
    rest = [r for r in ranked[1:] if r not in tied]
    if rest:
        text += f", {number(score(best) - score(rest[0]), 2)} above the next, {_method(rest[0])} ({show(rest[0]['pointing_game'])})"
    ce = next((r for r in ranked if _method(r).lower() in ("ce", "ce map", "cemap")), None)
    if ce is not None and ce is not best and ce not in tied:
        text += f"; the CE map scores {show(ce['pointing_game'])} (rank {ranked.index(ce) + 1} of {len(ranked)})"
    floors = [r for r in scored if _method(r).lower() in FLOORS]
    if floors:
        text += "; floors: " + ", ".join(f"{_method(r)} {show(r['pointing_game'])}" for r in floors)
    pairs = evaluation.get("n_pairs")
    text += f" (over {number(pairs)} image-finding pairs)" if isinstance(pairs, int) else ""
    if not is_interval(best["pointing_game"]) and isinstance(pairs, int) and pairs > 0:
        text += f". No intervals were recorded; one pair moves a score by {number(1 / pairs, 2)}, so small gaps decide nothing"
    keys = [(k, words) for k, words, _ in EVAL_METRICS if any(k in r for r in rows)]
    picked = ranked[:3] + ([ce] if ce is not None and ce not in ranked[:3] else []) + floors  # the best, CE and the floors; all rows are in the evaluation section
    table = [{"method": _method(r), **{words: r.get(k) for k, words in keys}} for r in picked]
    return [Claim(text + ".", "evaluation.json", table, derived=True)]


def demo_localisation(metrics: dict | None) -> list[Claim]:
    pg = (metrics or {}).get("ce_map_pointing_game")
    if not isinstance(pg, dict) or pg.get("hit_rate") is None:
        return []
    return [Claim(f"The CE map hits the true box in {show(pg['hit_rate'])} of {number(pg.get('n'))} image-finding pairs (pointing game); "
                  "no baselines were compared in this run.", "metrics.json", derived=True)]


def profile_claims(study: dict | None) -> list[Claim]:
    conditions = (study or {}).get("latent_profiles")
    if not isinstance(conditions, dict):
        return []
    shifts = {k: v for k, v in conditions.items() if isinstance(v, dict) and v.get("l1_shift_from_clean") is not None}
    if not shifts:
        return [Claim("Latent profile shift under masking and attack: not computed.", "study.json", derived=True)]
    parts = [f"{name}: {show(v['l1_shift_from_clean'])} (n={v.get('n')})" for name, v in shifts.items() if name != "clean"]
    text = "Mean L1 shift of the latent CE profile from the same images' clean profile - " + "; ".join(parts)
    text += ". Without a control condition (a box of the same size elsewhere, random noise of the same size) this shift alone does not show specificity."
    table = [{"condition": k, "images": v.get("n"), "L1 shift from clean": v.get("l1_shift_from_clean"), "strongest channel": v.get("top_channel")}
             for k, v in conditions.items() if isinstance(v, dict)]
    return [Claim(text, "study.json", table, derived=True)]


def _auroc_of(row: dict, prefix: str = "ce") -> Any:
    for key in (f"{prefix}_auroc", f"{prefix}.auroc", "auroc"):
        if key in row:
            return row[key]
    return None


DETECTION_COLUMNS = [("row", "attack"), ("success_rate", "attack success"), ("evasion_rate", "evades the detector"), ("ce_auroc", "CE AUROC"),
                     ("ce_tpr5", "CE TPR at 5% FPR"), ("msp_auroc", "MSP AUROC"), ("feature_squeezing_auroc", "squeezing AUROC"), ("lid_auroc", "LID AUROC")]


def detection_claims(detection: dict | None) -> list[Claim]:
    if not isinstance(detection, dict):
        return []
    rows = _rows(detection.get("table"))
    scored = [r for r in rows if estimate(_auroc_of(r)) is not None]
    if not scored:
        return [Claim("Adversarial detection: not computed (no AUROC in detection.json).", "detection.json", derived=True)]
    label = lambda r: str(r.get("row", r.get("attack", "?")))  # noqa: E731
    auroc = lambda r: estimate(_auroc_of(r))  # noqa: E731
    adaptive = [r for r in scored if "adaptive" in label(r).lower()]
    transfer = [r for r in scored if "transfer" in label(r).lower()]
    plain = [r for r in scored if r not in adaptive and r not in transfer]

    def span(group: list[dict]) -> str:
        lo, hi = min(group, key=auroc), max(group, key=auroc)
        return f"{show(_auroc_of(lo))} ({label(lo)})" + ("" if lo is hi else f" to {show(_auroc_of(hi))} ({label(hi)})")

    parts = []
    if plain:
        parts.append(f"The CE detector tells adversarial from clean images with AUROC {span(plain)}")
    if transfer:
        parts.append(f"trained on one attack and tested on another, {span(transfer)}")
    if adaptive:
        worst = min(adaptive, key=auroc)
        text = f"against the adaptive attacker who knows the detector, AUROC {show(_auroc_of(worst))} - {label(worst)}"
        if worst.get("evasion_rate") is not None:
            text += f", evading it on {show(worst['evasion_rate'])} of images"
        parts.append(text)
    else:
        parts.append("against an adaptive attacker: not computed")
    keep = [(k, w) for k, w in DETECTION_COLUMNS if any(k in r for r in rows)]
    table = [{w: r.get(k) for k, w in keep} for r in rows] if keep else []
    return [Claim("; ".join(parts) + " (AUROC 0.5 = chance).", "detection.json", table, derived=True)]


def concept_claims(concepts: dict | None, threshold: float = 0.9) -> list[Claim]:
    """Derived from latent_concepts.json when it wrote no headline: how many concepts have a channel aligned with AUROC >= 0.9."""
    coverage = (concepts or {}).get("coverage") if isinstance(concepts, dict) else None
    if isinstance(coverage, dict) and isinstance(coverage.get("aligned"), list) and isinstance(coverage.get("not_aligned"), list):
        yes, no = coverage["aligned"], coverage["not_aligned"]
        t = coverage.get("threshold", threshold)
        text = f"{len(yes)} of {len(yes) + len(no)} concepts have a latent channel aligned with AUROC >= {t}"
        text += (f" ({', '.join(map(str, yes))})" if yes else "") + (f"; none for {', '.join(map(str, no))}" if no else "") + "."
        return [Claim(text, "latent_concepts.json", derived=True)]
    rows = concept_rows(concepts)
    if not rows:
        return []
    best: dict[str, float] = {}
    for r in rows:
        if r["score"] is not None:
            best[r["concept"]] = max(best.get(r["concept"], 0.0), r["score"])
    if not best:
        return []
    aligned = sorted(c for c, s in best.items() if s >= threshold)
    text = f"{len(aligned)} of {len(best)} concepts have a latent channel aligned with AUROC >= {threshold}" + (f" ({', '.join(aligned)})." if aligned else ".")
    return [Claim(text, "latent_concepts.json", derived=True)]


_CHANNEL_KEYS = ("channel", "index", "z", "j")
_CONCEPT_KEYS = ("best_concept", "concept", "label", "finding", "class")
_SCORE_KEYS = ("best_auroc", "auroc", "score")


def _first_key(row: dict, keys: tuple[str, ...]) -> Any:
    return next((row[k] for k in keys if k in row and row[k] is not None), None)


def concept_rows(concepts: dict | None) -> list[dict]:
    """Per-channel rows of latent_concepts.json as {"channel": int, "concept": str, "score": float|None, "row": raw}."""
    if not isinstance(concepts, dict):
        return []
    raw = next((v for k in ("channels", "table", "rows") if isinstance(v := concepts.get(k), list)), [])
    out = []
    for row in _rows(raw):
        channel = _first_key(row, _CHANNEL_KEYS)
        if isinstance(channel, str) and (m := re.fullmatch(r"[Zz]?(\d+)", channel.strip())):
            channel = int(m.group(1))
        concept = _first_key(row, _CONCEPT_KEYS)
        if not isinstance(channel, int) or concept is None:
            continue
        out.append({"channel": channel, "concept": str(concept), "score": estimate(_first_key(row, _SCORE_KEYS)), "row": row})
    return out


def concept_labels(concepts: dict | None) -> dict[int, str]:
    """Channel -> its best-aligned concept in words (``"Effusion, AUROC 0.93"``), for profile charts.

    Taken from latent_concepts.json's ``labels`` (``"Z2 - Effusion, AUROC 0.93"``, or ``"Z5"`` for an
    unaligned channel) where it has them, else from its per-channel rows.
    """
    written = (concepts or {}).get("labels") if isinstance(concepts, dict) else None
    if isinstance(written, list) and all(isinstance(t, str) for t in written):
        out = {}
        for text in written:
            m = re.fullmatch(r"\s*Z(\d+)\s*(?:-\s*(.+))?", text)
            if m and m.group(2):
                out[int(m.group(1))] = m.group(2).strip()
        return out
    labels: dict[int, tuple[float, str]] = {}
    for r in concept_rows(concepts):
        score = r["score"] if r["score"] is not None else -1.0
        if r["channel"] not in labels or score > labels[r["channel"]][0]:
            text = r["concept"] + (f", AUROC {r['score']:.2f}" if r["score"] is not None else "")
            labels[r["channel"]] = (score, text)
    return {j: t for j, (_, t) in sorted(labels.items())}


def run_claims(manifest: dict | None) -> list[Claim]:
    """A ``cemap run`` folder: how much of the split it covered."""
    if not isinstance(manifest, dict) or manifest.get("n_rows") is None:
        return []
    n, rows, errors = manifest.get("n_images"), manifest.get("n_rows"), manifest.get("n_errors", 0)
    maps = manifest.get("map_names") or []
    text = f"Per-image results for {number(rows)}" + (f" of {number(n)}" if isinstance(n, int) else "") + f" images ({number(errors)} unreadable)"
    text += (": maps (" + ", ".join(map(str, maps)) + ")" if maps else ":") + ", predicted probabilities and latent CE profiles, in the shards."
    return [Claim(text, "manifest.json", derived=True)]


def control_verdicts(controls: dict | None) -> list[Claim]:
    """latent_controls.json's verdict on each of the paper's latent claims, once controlled."""
    claims = (controls or {}).get("claims") if isinstance(controls, dict) else None
    out = []
    for entry in claims.values() if isinstance(claims, dict) else []:
        if isinstance(entry, dict) and isinstance(entry.get("claim"), str) and entry.get("verdict"):
            verdict = str(entry["verdict"]).rstrip(".")
            out.append(Claim(f"The paper's claim that {entry['claim']}: {verdict}.", "latent_controls.json", derived=True, rank=0))
    return out


def derived_headlines(results: dict[str, dict], have: set[str]) -> list[Claim]:
    """Claims derived from the numbers for every study file that wrote no headline of its own."""
    claims: list[Claim] = []
    if "manifest.json" not in have:
        claims += run_claims(results.get("manifest"))
    if "evaluation.json" not in have:
        claims += evaluation_claims(results.get("evaluation")) or demo_localisation(results.get("metrics"))
    claims += control_verdicts(results.get("latent_controls"))
    if "latent_controls.json" not in have and "study.json" not in have and not results.get("latent_controls"):
        claims += profile_claims(results.get("study"))
    if "detection.json" not in have:
        claims += detection_claims(results.get("detection"))
    if "latent_concepts.json" not in have:
        claims += concept_claims(results.get("latent_concepts"))
    return claims


def headlines(results: dict[str, dict]) -> list[Claim]:
    """Written headlines first, then derived ones; an empty list when nothing was measured."""
    written = written_headlines(results)
    claims = written + derived_headlines(results, {c.source for c in written})
    for c in claims:
        if c.derived and c.rank == 1:
            c.rank = 2
    order = {s: i for i, s in enumerate(SOURCE_ORDER)}
    return sorted(claims, key=lambda c: (order.get(c.source, len(order)), c.rank))  # stable: each study's own order is kept


def not_computed(results: dict[str, dict]) -> list[str]:
    """The questions of the headline that this run does not answer."""
    missing = []
    if not results.get("evaluation") and not (results.get("metrics") or {}).get("ce_map_pointing_game"):
        missing.append("which method localises best (no evaluation in this run)")
    if not results.get("latent_controls") and not (results.get("study") or {}).get("latent_profiles"):
        missing.append("how the latent profile shifts under masking and attack")
    if not results.get("detection"):
        missing.append("how well adversarial images are detected")
    return missing


__all__ = ["Claim", "headlines", "fidelity_sentence", "concept_labels", "concept_rows", "not_computed", "interval", "is_interval"]
