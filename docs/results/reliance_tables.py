"""Markdown tables of docs/results/reliance_benchmark.json, for docs/reliance.md.

python docs/results/reliance_tables.py docs/results/reliance_benchmark.json > /tmp/tables.md
"""

from __future__ import annotations

import json
import sys


def r(x: dict | None, digits: int = 2) -> str:
    if x is None or x.get("estimate") is None or x["estimate"] != x["estimate"]:
        return "n/a"
    return f"{x['estimate']:.{digits}f} [{x['low']:.{digits}f}, {x['high']:.{digits}f}]"


def summary_table(doc: dict, correlated: bool) -> str:
    rows = [s for s in doc["summary"] if ("[correlated" in s["method"]) == correlated]
    out = [
        "| artifact | method | detection rate | false-alarm rate | spurious / normal models |",
        "|---|---|---|---|---|",
    ]
    for s in rows:
        out.append(
            f"| {s['artifact']} | {s['method'].replace(' [correlated test data]', '')} | {r(s['detection_rate'])} | "
            f"{r(s['false_alarm_rate'])} | {s['n_spurious']} / {s['n_normal']} |"
        )
    return "\n".join(out)


def calibration_table(doc: dict) -> str:
    out = [
        "| method | statistic | flags when | threshold | calibration detection | calibration false alarm | spurious "
        "/ normal |",
        "|---|---|---|---|---|---|---|",
    ]
    for m, c in doc["calibration"].items():
        out.append(
            f"| {m} | {c['statistic']} | {c['direction']} | {c['threshold']:.4f} | {c['calibration_detection']:.2f} | "
            f"{c['calibration_false_alarm']:.2f} | {c['n_spurious']} / {c['n_normal']} |"
        )
    return "\n".join(out)


def adebayo_table(doc: dict) -> str:
    out = [
        "| artifact | method | K-SSD (spurious) | K-SSD (normal) | CCM | FAM | pairs |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in doc["adebayo"]:
        out.append(
            f"| {a['artifact']} | {a['method']} | {r(a['kssd'])} | {r(a['kssd_normal'])} | {r(a['ccm'])} | "
            f"{r(a['fam'])} | {a['n_pairs']} |"
        )
    return "\n".join(out)


def verification_table(doc: dict) -> str:
    out = [
        "| artifact | seed | role | model | decision change | AUROC aligned / flipped | AUROC drop | verdict | kept |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for v in doc["models"]:
        out.append(
            f"| {v['artifact']} | {v['seed']} | {v['role']} | {v['mode']} | {r(v['decision_change'], 3)} | "
            f"{v['auroc_aligned']:.3f} / {v['auroc_flipped']:.3f} | {r(v['auroc_drop'], 3)} | {v['verdict']} | "
            f"{'yes' if v['kept'] else 'no'} |"
        )
    return "\n".join(out)


def main(path: str) -> None:
    doc = json.loads(open(path).read())
    print("## Detection and false alarm, held-out images with the artifact independent of the labels\n")
    print(summary_table(doc, False))
    print("\n## The same on held-out images where the artifact follows Nodule (as in the spurious training data)\n")
    print(summary_table(doc, True))
    print("\n## Thresholds, chosen on calibration models\n")
    print(calibration_table(doc))
    print("\n## Adebayo et al.'s measures (mean SSIM over explained images, averaged over reported model pairs)\n")
    print(adebayo_table(doc))
    print("\n## Reliance verification, every model\n")
    print(verification_table(doc))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/results/reliance_benchmark.json")
