"""From per-model records to the benchmark's tables: thresholds on calibration models, rates on reported ones.

Every method reduces a model to one number (its *statistic*); the benchmark flags the model when the statistic
passes a threshold. Each method's threshold - and, for the attribution methods and TCAV, which way flags and which
statistic - is chosen on the calibration models alone (:func:`cemap.evaluate.reliance.choose_threshold`: the best
detection minus false alarm with at most ``max_false_alarm`` false alarms, pooled over artifact kinds, since the
artifact is unknown), then applied unchanged to the reported models.
"""

from __future__ import annotations

import numpy as np

from ...evaluate.bootstrap import bootstrap_mean
from ...evaluate.reliance import choose_threshold, rate

NON_VISIBLE = ("blur", "contrast", "noise")
AUDIT, AUDIT_KNOWN, TCAV = "cemap audit (blinded)", "cemap audit (known artifact)", "TCAV (known artifact)"
CORRELATED = " [correlated test data]"  # the same method on held-out images where the artifact follows Nodule


def statistics(row: dict, methods: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Per method, its candidate statistics for one model record (blinded methods also on the correlated test data)."""
    out = {
        AUDIT: {"carried": row["audit"]["concern"]},
        AUDIT + CORRELATED: {"carried": row["audit_correlated"]["concern"]},
        AUDIT_KNOWN: {"effect": row["audit"]["known_concern"]},
        TCAV: {k: abs(v - 0.5) for k, v in row["tcav"].items()},
    }
    for m in methods:
        out[m] = {"outside share": row["methods"][m]["blinded"]}
        out[m + CORRELATED] = {"outside share": row["methods"][m]["blinded_correlated"]}
    return out


def _models(records: list[dict], role: str) -> list[tuple[dict, dict]]:
    return [(r, m) for r in records if r["role"] == role for m in r["models"].values() if m["kept"]]


def calibrate(records: list[dict], methods: tuple[str, ...], max_false_alarm: float) -> dict[str, dict]:
    """Per method: the statistic, direction and threshold chosen on the kept calibration models."""
    cal = _models(records, "calibration")
    out = {}
    for method in statistics(cal[0][1], methods) if cal else {}:
        best = None
        for stat in statistics(cal[0][1], methods)[method]:
            for sign in (1,) if method.startswith(AUDIT) else (1, -1):
                pos = [sign * statistics(m, methods)[method][stat] for _, m in cal if m["mode"] == "spurious"]
                neg = [sign * statistics(m, methods)[method][stat] for _, m in cal if m["mode"] == "normal"]
                t = choose_threshold(pos, neg, max_false_alarm)
                det, fa = np.mean(np.array(pos) > t), np.mean(np.array(neg) > t)
                if best is None or det - fa > best["calibration_detection"] - best["calibration_false_alarm"]:
                    best = {
                        "statistic": stat,
                        "direction": "above" if sign > 0 else "below",
                        "threshold": sign * t,
                        "calibration_detection": float(det),
                        "calibration_false_alarm": float(fa),
                        "n_spurious": len(pos),
                        "n_normal": len(neg),
                    }
        out[method] = best
    return out


def flags(row: dict, methods: tuple[str, ...], rule: dict) -> dict[str, bool]:
    stats = statistics(row, methods)
    return {
        m: bool(
            stats[m][r["statistic"]] > r["threshold"]
            if r["direction"] == "above"
            else stats[m][r["statistic"]] < r["threshold"]
        )
        for m, r in rule.items()
    }


def summary(records: list[dict], methods: tuple[str, ...], rule: dict, artifacts: tuple[str, ...]) -> list[dict]:
    """One row per (artifact, method) on the kept reported models; plus the non-visible artifacts pooled and all
    pooled."""
    rep = _models(records, "reported")
    groups = [(a, (a,)) for a in artifacts] + [
        ("non-visible (blur, contrast, noise)", NON_VISIBLE),
        ("all", tuple(artifacts)),
    ]
    rows = []
    for name, kinds in groups:
        chosen = [(r, m) for r, m in rep if r["artifact"] in kinds]
        for method in rule:
            sp = [flags(m, methods, rule)[method] for _, m in chosen if m["mode"] == "spurious"]
            no = [flags(m, methods, rule)[method] for _, m in chosen if m["mode"] == "normal"]
            rows.append(
                {
                    "artifact": name,
                    "method": method,
                    "detection_rate": rate(sp).to_json(),
                    "false_alarm_rate": rate(no).to_json(),
                    "n_models": len(sp) + len(no),
                    "n_spurious": len(sp),
                    "n_normal": len(no),
                    "seeds": sorted({r["seed"] for r, _ in chosen}),
                }
            )
    return rows


def adebayo_table(records: list[dict], methods: tuple[str, ...], artifacts: tuple[str, ...]) -> list[dict]:
    """Per (artifact, method): K-SSD, CCM and FAM averaged over reported pairs whose two models were both kept."""
    rows = []
    for a in artifacts:
        pairs = [
            r
            for r in records
            if r["role"] == "reported" and r["artifact"] == a and all(m["kept"] for m in r["models"].values())
        ]
        for m in methods:
            row = {"artifact": a, "method": m, "n_pairs": len(pairs)}
            for measure in ("kssd", "kssd_normal", "ccm", "fam"):
                row[measure] = bootstrap_mean([p["adebayo"][m][measure]["estimate"] for p in pairs]).to_json()
            rows.append(row)
    return rows


def verification_table(records: list[dict]) -> list[dict]:
    return [
        {
            "artifact": r["artifact"],
            "seed": r["seed"],
            "role": r["role"],
            "mode": m["mode"],
            "kept": m["kept"],
            **m["verification"],
        }
        for r in records
        for m in r["models"].values()
    ]


def exclusions(records: list[dict]) -> dict:
    out = {}
    for role in ("calibration", "reported"):
        rows = [(r, m) for r in records if r["role"] == role for m in r["models"].values()]
        out[role] = {
            mode: {
                "trained": sum(m["mode"] == mode for _, m in rows),
                "excluded": sum(m["mode"] == mode and not m["kept"] for _, m in rows),
                "excluded_models": [
                    f"{r['artifact']}-{mode}-{r['seed']}" for r, m in rows if m["mode"] == mode and not m["kept"]
                ],
            }
            for mode in ("spurious", "normal")
        }
    return out
