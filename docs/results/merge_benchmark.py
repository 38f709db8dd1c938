"""Merge explanation-benchmark v3 runs (one per model, size and training seed) into
docs/results/evaluation_benchmark_v3.json.

Each `cemap evaluate --dataset synthcxr --benchmark --train-seed K` run writes its evaluation.json and a values-*.npz
of per-pair values beside it. This puts the runs in one document - every run as written (tuning candidates and their
validation scores, floors, rows with image-level intervals, sanity v2, timings), the command and wall time of each -
and adds, per model and size, the verdicts over trainings: hierarchical intervals (trainings, then images) of CE minus
the best tuned peer on every metric (:func:`cemap.studies.explanation_benchmark.merged_verdicts`).

    python docs/results/merge_benchmark.py OUT.json RUN_DIR[=COMMAND[=WALL_SECONDS]] ...

(v2's documents were merged by the v2 version of this script, in the git history beside evaluation_benchmark_v2.json.)
"""

import json
import sys
from pathlib import Path

from cemap.jsonio import write_json
from cemap.studies.explanation_benchmark import RULE, load_values, markdown_summary, merged_claims, merged_verdicts


def read_runs(sources: list[str]) -> tuple[list[dict], list[dict]]:
    runs, values = [], []
    for source in sources:
        folder, command, wall = (source.split("=") + ["", ""])[:3]
        doc = json.loads((Path(folder) / "evaluation.json").read_text())
        for run in doc["runs"]:
            run["command"] = command or None
            run["wall_seconds_of_command"] = float(wall) if wall else None
            runs.append(run)
            values.append(load_values(Path(folder) / run["values_file"]))
    return runs, values


def groups(runs: list[dict], values: list[dict]) -> list[dict]:
    by: dict[tuple, list[int]] = {}
    for i, r in enumerate(runs):
        by.setdefault((r["model"], r["size"], r["device"]), []).append(i)
    out = []
    for (model, size, device), idx in by.items():
        peers = runs[idx[0]]["config"]["peers"]
        merged = merged_verdicts([values[i] for i in idx], peers)
        out.append(
            {
                "model": model,
                "size": size,
                "device": device,
                "train_seeds": [runs[i]["train_seed"] for i in idx],
                "n_images_per_training": [runs[i]["n_images"] for i in idx],
                **merged,
            }
        )
    return out


def _i(x: dict | None) -> str:
    return "-" if not x or x.get("estimate") is None else f"{x['estimate']:.3f} [{x['low']:.3f}, {x['high']:.3f}]"


VARIANT_METRICS = (
    "gt_rank",
    "gt_top1",
    "pointing_game",
    "chexlocalize_iou",
    "road@counterfactual",
    "road@noisy-linear",
)


def details(doc: dict) -> str:
    """The Markdown behind docs/evaluation.md: every method over trainings, flagged metrics, sanity, choices and
    timings."""
    out = []
    for g in doc["over_trainings"]:
        out.append(
            f"### {g['model']}, {g['size']} px: every method over {g['n_trainings']} trainings (hierarchical 95% "
            "intervals)\n"
        )
        out.append("| method | " + " | ".join(VARIANT_METRICS) + " |")
        out.append("|---|" + "---|" * len(VARIANT_METRICS))
        for m, row in g["rows"].items():
            out.append(f"| {m} | " + " | ".join(_i(row.get(k)) for k in VARIANT_METRICS) + " |")
        flagged = {k: v["floors_beating_median"] for k, v in g["floors"].items() if v["uninformative"]}
        out.append(
            "\nUninformative here (a floor beats the median method): "
            + "; ".join(f"{k} ({', '.join(v)})" for k, v in flagged.items())
        )
    out.append(
        "\n### Sanity v2 per training (cascading: two-sided pass; Arun; eMPRT higher better; "
        "sMPRT and random-logit Spearman lower better)\n"
    )
    out.append("| training | method | cascading | Arun | eMPRT | sMPRT | random-logit Spearman | data randomisation |")
    out.append("|---|---|---|---|---|---|---|---|")
    for r in doc["runs"]:
        for m, s in r["sanity"].items():
            dr = s.get("data_randomisation")
            out.append(
                f"| seed {r['train_seed']} | {m} | {'passes' if s['cascading_full']['passes'] else 'fails'} | "
                f"{'passes' if s['arun']['passes'] else 'fails'} | {_i(s['efficient_mprt'])} | "
                f"{_i(s.get('smooth_mprt'))} | "
                f"{_i(s['random_logit']['spearman'])} | "
                f"{'-' if not dr else ('passes' if dr['passes'] else 'fails') + ' ' + _i(dr['spearman_abs'])} |"
            )
    out.append("\n### Choices made on validation images, and time\n")
    for r in doc["runs"]:
        chosen = "; ".join(f"{m}: {o}" for m, o in r["chosen"].items())
        stages = ", ".join(f"{k} {v / 60:.0f} min" for k, v in r["seconds_by_stage"].items())
        out.append(
            f"* training seed {r['train_seed']} (held-out AUROC {r['model_quality']['heldout_macro_auroc']:.3f}): "
            f"{chosen}. "
            f"{r['seconds'] / 60:.0f} min in all ({stages})."
        )
    return "\n".join(out)


def main(out: str, sources: list[str]) -> None:
    runs, values = read_runs(sources)
    merged = groups(runs, values)
    for g in merged:
        g["headline"] = merged_claims(g)
    doc = {
        "protocol": "explanation benchmark v3 (issue 26)",
        "interval_rule": RULE,
        "heldout": {
            "dataset": "synthcxr",
            "split": "test",
            "seed": runs[0]["config"]["heldout_seed"],
            "choices_made_on": f"synthcxr val split, generator seed {runs[0]['config']['tune_seed']} "
            "(drawn like train, never trained on)",
        },
        "over_trainings": merged,
        "runs": runs,
        "commands": [
            {
                "command": r["command"],
                "wall_seconds": r["wall_seconds_of_command"],
                "model": r["model"],
                "size": r["size"],
                "train_seed": r["train_seed"],
                "seconds_in_run": r["seconds"],
            }
            for r in runs
        ],
    }
    write_json(out, doc, indent=1)
    for g in merged:
        for claim in g["headline"]:
            print("*", claim["claim"])
    print(markdown_summary(merged))
    print(details(doc))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
