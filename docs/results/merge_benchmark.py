"""Merge the explanation benchmark's per-(model, size) runs into docs/results/evaluation_benchmark_v2.json (issue 16).

Each `cemap evaluate --benchmark` run writes its own evaluation.json; the runs of the README were made separately
(one per model and size, some on a GPU), so this puts them in one document: every run as it was written, the
headline and the acceptance recomputed from them, the command and place of each, and the held-out macro AUROC of
each model (read from the run, or computed here from the cached model when its weights' fingerprint matches).

    .venv/bin/python docs/results/merge_benchmark.py OUT.json RUN.json[=COMMAND] ...
"""
import json
import sys
from pathlib import Path

import torch

from cemap.causal.autoencoder import model_fingerprint
from cemap.data import get_dataset
from cemap.models import get_model
from cemap.studies.explanation_benchmark import HELDOUT_SEED, headline, model_quality


def quality(run: dict) -> dict | None:
    """The run's own held-out AUROC, else the cached CPU-trained model's when it is the very model the run scored."""
    if run.get("model_quality"):
        return run["model_quality"]
    if run.get("device", "cpu") != "cpu":
        return None
    clf = get_model(run["model"], size=run["size"])
    if model_fingerprint(clf) != run["model_fingerprint"]:
        return None
    return model_quality(clf, get_dataset("synthcxr", split="test", seed=HELDOUT_SEED, size=run["size"]))


def spread(runs: list[dict]) -> list[dict]:
    """Per (model, size, device) trained from several seeds: each seed's CE-minus-best-peer difference and verdict on
    the
    acceptance metrics, and the range of the differences (the bootstrap intervals cover images, not retraining)."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["model"], r["size"], r.get("device", "cpu")), []).append(r)
    out = []
    for (model, size, device), rs in groups.items():
        if len(rs) < 2:
            continue
        row = {"model": model, "size": size, "device": device, "train_seeds": [r.get("train_seed", 0) for r in rs]}
        for k in ("pointing_game", "iobb@0.25"):
            diffs = [r["acceptance"][k]["difference"] for r in rs]
            row[k] = {
                "ce": [r["acceptance"][k]["ce"]["estimate"] for r in rs],
                "best_peer": [r["acceptance"][k]["best_peer"] for r in rs],
                "difference": [d["estimate"] for d in diffs],
                "verdict": [d["verdict"] for d in diffs],
                "difference_range": [min(d["estimate"] for d in diffs), max(d["estimate"] for d in diffs)],
            }
        row["sanity_passes"] = [r["acceptance"]["sanity"]["passes"] for r in rs]
        row["heldout_macro_auroc"] = [(r.get("model_quality") or {}).get("heldout_macro_auroc") for r in rs]
        out.append(row)
    return out


def main(out: str, sources: list[str]) -> None:
    torch.set_num_threads(1)
    runs, commands, config = [], [], None
    for source in sources:
        path, _, command = source.partition("=")
        doc = json.loads(Path(path).read_text())
        config = config or doc["config"]
        for run in doc["runs"]:
            run["model_quality"] = quality(run)
            runs.append(run)
        commands.append(command or path)
    merged = {
        "protocol": "explanation benchmark v2 (issue 16)",
        "config": {**config, "models": sorted({r["model"] for r in runs}), "sizes": sorted({r["size"] for r in runs})},
        "heldout": {
            "dataset": "synthcxr",
            "split": "test",
            "seed": HELDOUT_SEED,
            "sizes": sorted({r["size"] for r in runs}),
            "models": sorted({r["model"] for r in runs}),
            "choices_made_on": "synthcxr seed-0 train split only",
        },
        "runs": runs,
        "headline": headline(runs),
        "acceptance_met": all(r["acceptance"]["met"] for r in runs),
        "spread_over_trainings": spread(runs),
        "commands": commands,
    }
    Path(out).write_text(json.dumps(merged, indent=2))
    for claim in merged["headline"]:
        print("*", claim["claim"])
    print(markdown(runs))
    for row in merged["spread_over_trainings"]:
        print(json.dumps(row))


def _cell(i: dict) -> str:
    return f"{i['estimate']:.3f} [{i['low']:.3f}, {i['high']:.3f}]"


def markdown(runs: list[dict]) -> str:
    """The README's table: CE against the best peer on the acceptance metrics, ROAD and sanity, one row per run."""
    lines = [
        "| model, size (where) | AUROC | PG-1max: CE vs best peer, CE - peer | T(IoBB=0.25): CE vs best peer, CE - "
        "peer | ROAD: CE vs best other | sanity: CE worst-seed abs Spearman |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        acc, rows = r["acceptance"], r["rows"]
        cells = []
        for k in ("pointing_game", "iobb@0.25"):
            a, d = acc[k], acc[k]["difference"]
            cells.append(f"{a['ce']['estimate']:.3f} vs {a['best_peer']} {a['peer']['estimate']:.3f}, "
                         f"{d['estimate']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] **{d['verdict']}**")
        best = max(
            (m for m in rows if m not in ("ce-ms", "random", "centre")), key=lambda m: rows[m]["road"]["estimate"]
        )
        d = r["ce_minus"][best]["road"]
        cells.append(
            f"{rows['ce-ms']['road']['estimate']:.3f} vs {best} {rows[best]['road']['estimate']:.3f}: {d['verdict']}"
        )
        v = r["sanity"]["ce-ms"]["verdict"]
        worst = max(v["per_seed"], key=lambda s: s["spearman_abs"]["high"])
        cells.append(f"{_cell(worst['spearman_abs'])}: {'passes' if v['passes'] else 'fails'}")
        auroc = (r.get("model_quality") or {}).get("heldout_macro_auroc")
        where = r.get("device", "cpu") + (f", training seed {r['train_seed']}" if r.get("train_seed") else "")
        lines.append(
            f"| {r['model']}, {r['size']} px ({where}) | {'-' if auroc is None else f'{auroc:.3f}'} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
