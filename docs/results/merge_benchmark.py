"""Merge explanation-benchmark v3 runs (one per model, size and training seed) into docs/results/evaluation_benchmark_v3.json.

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
        out.append({"model": model, "size": size, "device": device, "train_seeds": [runs[i]["train_seed"] for i in idx],
                    "n_images_per_training": [runs[i]["n_images"] for i in idx], **merged})
    return out


def main(out: str, sources: list[str]) -> None:
    runs, values = read_runs(sources)
    merged = groups(runs, values)
    for g in merged:
        g["headline"] = merged_claims(g)
    doc = {"protocol": "explanation benchmark v3 (issue 26)", "interval_rule": RULE,
           "heldout": {"dataset": "synthcxr", "split": "test", "seed": runs[0]["config"]["heldout_seed"],
                       "choices_made_on": f"synthcxr val split, generator seed {runs[0]['config']['tune_seed']} (drawn like train, never trained on)"},
           "over_trainings": merged, "runs": runs,
           "commands": [{"command": r["command"], "wall_seconds": r["wall_seconds_of_command"], "model": r["model"], "size": r["size"],
                         "train_seed": r["train_seed"], "seconds_in_run": r["seconds"]} for r in runs]}
    Path(out).write_text(json.dumps(doc, indent=1))
    for g in merged:
        for claim in g["headline"]:
            print("*", claim["claim"])
    print(markdown_summary(merged))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
