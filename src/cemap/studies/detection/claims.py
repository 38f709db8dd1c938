"""The detection study in words and tables: the headline claims (transfer, the adaptive worst case) and the flat
table."""

from __future__ import annotations

from ...numbers import format_interval
from .adaptive import nan0
from .config import METHODS


def fmt(i: dict | None, digits: int = 3) -> str:
    """An AUROC or TPR interval as ``0.912 [0.850, 0.960]``; "-" where too few samples gave none."""
    return format_interval(i, f".{digits}f")


def headline(dataset: str, transfer_rows: dict, adaptive: dict) -> list[dict]:
    """The claims the report shows first: transfer to unseen minimal / confidence-matched / C&W adversarials and the
    adaptive worst case."""
    claims = transfer_claims(dataset, transfer_rows)
    if adaptive:
        claims += adaptive_claims(dataset, adaptive)
    return claims


VERDICT_WORDS = {"better": "better than", "worse": "worse than", "no different": "no different from"}


def transfer_claims(dataset: str, transfer_rows: dict) -> list[dict]:
    """Per detector regime (fitted on the mix, on PGD), one claim per attack it did not see, CE against the best other
    detector in any form (supervised or unsupervised), named with its form."""
    claims = []
    for regime, what in (
        ("mix", "a mix of FGSM and PGD at the standard budgets"),
        ("pgd_high", "PGD at the larger budget"),
    ):
        for row in transfer_rows[regime]:
            if row["seen"] or row["kind"] == "standard":
                continue
            ce, diff = row["supervised"].get("ce"), row.get("ce_minus_best_baseline")
            if ce is None or diff is None:
                text = f"{dataset}: {row['label']} - too few successful adversarials to compare."
                claims.append({"claim": text, "table": [claim_row(row)]})
                continue
            form = diff.get("form", "supervised")
            b = row[form][diff["baseline"]]
            verdict = VERDICT_WORDS.get(diff["verdict"], diff["verdict"])
            text = (
                f"{dataset}, fitted on {what}, unseen {row['label']} (n={row['n_adversarial']}): CE AUROC "
                f"{fmt(ce['auroc'])}, TPR@5%FPR {fmt(ce['tpr_at_5fpr'])}; the best other detector in any form is "
                f"{form} {diff['baseline']}: AUROC {fmt(b['auroc'])}, TPR {fmt(b['tpr_at_5fpr'])}; difference "
                f"{format_interval(diff, '+.3f')}: CE is {verdict} it."
            )
            claims.append({"claim": text, "table": [claim_row(row)]})
    return claims


def adaptive_claims(dataset: str, adaptive: dict) -> list[dict]:
    """The adaptive attack's worst case per image against CE and against the most robust baseline, with every
    detector's row."""
    rows = [
        {
            "detector": m,
            "features": a["features"],
            "auroc": fmt(a["worst_case_per_image"]["auroc"]),
            "tpr_at_5fpr": fmt(a["worst_case_per_image"]["tpr_at_5fpr"]),
            "evasion_rate": round(a["worst_case_per_image"]["evasion_rate"], 3),
            "success_rate": round(a["worst_case_per_image"]["success_rate"], 3),
            "gradient_nonzero": a["gradient_check"]["nonzero_share"],
            "gradient_descent_share": a["gradient_check"]["descent_share"],
        }
        for m, a in adaptive.items()
    ]
    ce = adaptive.get("ce")
    # the most robust baseline: lowest evasion, then highest worst-case AUROC
    others = {
        m: (a["worst_case_per_image"]["evasion_rate"], -nan0(a["worst_case_per_image"]["auroc"]["estimate"]))
        for m, a in adaptive.items()
        if m != "ce"
    }
    if ce is None or not others:
        return []
    best = min(others, key=others.get)
    w, wb = ce["worst_case_per_image"], adaptive[best]["worst_case_per_image"]
    claim = (
        f"{dataset}, adaptive PGD against each detector (weights "
        f"{sorted({r['detector_weight'] for r in ce['sweep']})}, up to "
        f"{max(r['steps'] for r in ce['sweep'])} steps, {ce['sweep'][0]['restarts']} restart(s), "
        f"n={ce['n_attacked']}), "
        f"worst case per image: CE AUROC {fmt(w['auroc'])}, TPR@5%FPR {fmt(w['tpr_at_5fpr'])}, "
        f"evasion {w['evasion_rate']:.2f}; the most robust baseline, {best}: AUROC {fmt(wb['auroc'])}, "
        f"TPR {fmt(wb['tpr_at_5fpr'])}, evasion {wb['evasion_rate']:.2f}."
    )
    return [{"claim": claim, "table": rows}]


def claim_row(row: dict) -> dict:
    out = {"attack": row["label"], "fit_on": row["fit_on"], "n": row["n_adversarial"]}
    for m in METHODS:
        c = row["supervised"].get(m)
        out[m] = "-" if c is None else f"{fmt(c['auroc'])} / TPR {fmt(c['tpr_at_5fpr'], 2)}"
    return out


def table(seen_rows: list[dict], transfer_rows: dict, adaptive: dict, attacks: dict) -> list[dict]:
    """Flat rows for the report: AUROC [95% CI] of every supervised detector (and its unsupervised form in brackets
    where reversed)."""
    rows = []
    for group, rs in (
        ("seen", seen_rows),
        ("fit on PGD high", transfer_rows["pgd_high"]),
        ("fit on mix", transfer_rows["mix"]),
    ):
        for r in rs:
            if group != "seen" and r["seen"] and seen_rows:
                continue
            row = {
                "row": f"{group}: {r['label']}" + (" (seen)" if group != "seen" and r["seen"] else ""),
                "success_rate": round(attacks[r["attack"]]["eval"]["success_rate"] or 0.0, 3),
                "n": r["n_adversarial"],
            }
            for m in METHODS:
                c = r["supervised"].get(m)
                row[f"{m}_auroc"] = fmt(c["auroc"]) if c else "-"
                row[f"{m}_tpr5"] = fmt(c["tpr_at_5fpr"], 2) if c else "-"
            d = r.get("ce_minus_best_baseline")
            row["ce_minus_best"] = (
                "-"
                if not d
                else f"{format_interval(d, '+.3f')} vs {d.get('form', 'supervised')} {d['baseline']}: {d['verdict']}"
            )
            rows.append(row)
    for m, a in adaptive.items():
        w = a["worst_case_per_image"]
        rows.append(
            {
                "row": f"adaptive worst case vs {m}",
                "success_rate": round(w["success_rate"], 3),
                "n": a["n_attacked"],
                f"{m}_auroc": fmt(w["auroc"]),
                f"{m}_tpr5": fmt(w["tpr_at_5fpr"], 2),
                "evasion_rate": round(w["evasion_rate"], 3),
            }
        )
    return rows


def format_table(rows: list[dict]) -> str:
    """The table as aligned text: AUROC [95% CI] per supervised detector, then CE minus the best other detector."""
    short = {
        "ce": "CE",
        "msp": "MSP",
        "feature_squeezing": "FS",
        "lid": "LID",
        "mahalanobis": "Maha",
        "logit_stats": "logits",
    }
    lines = [
        f"{'':46s} {'succ':>5s}  " + "  ".join(f"{short[m]:>21s}" for m in METHODS) + "  CE - best other (any form)"
    ]
    for r in rows:
        cols = [f"{r.get(f'{m}_auroc', '-'):>21s}" for m in METHODS]
        extra = r.get("ce_minus_best", "") or (f"evasion {r['evasion_rate']:.2f}" if "evasion_rate" in r else "")
        lines.append(f"{r['row'][:46]:46s} {r['success_rate']:>5.2f}  " + "  ".join(cols) + "  " + extra)
    return "\n".join(lines)
