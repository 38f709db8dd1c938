"""The detection study's verdicts over trainings, counted from `detection_<dataset>_train<K>.json`.

Each `cemap detect --dataset D --train-seed K` run states, per unseen attack and fit, whether the CE detector is
better than, worse than or no different from the best other detector in any form (its headline claims). This counts
them per training, so the README can say in how many trainings a verdict holds, and lists the effect scale each CE
fit chose on validation and whether the tie-break decided it.

    python docs/results/detection_over_trainings.py mnist5k synthcxr
"""

import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
VERDICT = re.compile(r"CE is (better than|worse than|no different from) it")


def summary(doc: dict) -> dict:
    """Verdict counts over the headline's unseen-attack claims, and CE's chosen scale per fit."""
    verdicts = [VERDICT.search(c["claim"]).group(1).split()[0] for c in doc["headline"] if VERDICT.search(c["claim"])]
    scales = {
        fit: (row["ce"].get("effect_scale"), row["ce"].get("scale_tie_break", {}).get("decided_by_tie_break"))
        for fit, row in doc["selection"].items()
    }
    return {"rows": len(verdicts), **{v: verdicts.count(v) for v in ("better", "worse", "no")}, "scales": scales}


def main(datasets: list[str]) -> None:
    for dataset in datasets:
        print(f"## {dataset}\n\n| training | rows | CE better | CE worse | no different | scale chosen per fit |")
        print("|---|---|---|---|---|---|")
        for path in sorted(HERE.glob(f"detection_{dataset}_train*.json")):
            s = summary(json.loads(path.read_text()))
            scales = "; ".join(
                f"{fit}: {scale}{' (tie-break)' if tie else ''}" for fit, (scale, tie) in s["scales"].items()
            )
            seed = path.stem.rsplit("train", 1)[1]
            print(f"| {seed} | {s['rows']} | {s['better']} | {s['worse']} | {s['no']} | {scales} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1:] or ["mnist5k", "synthcxr"])
