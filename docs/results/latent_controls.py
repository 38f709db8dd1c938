"""The controlled latent experiments (issue 21) at the demo's size, on held-out test images, over trainings.

For each dataset and each training seed of its built-in model (the seed's own model, trained and cached on first use,
with its own autoencoder), runs the latent controls and writes docs/results/latent_controls_<dataset>.json: one record
per training (the concept table, without its activation maps, for the first), and per claim how many trainings it
holds in as stated. The first training's figures go to docs/figures/latent_controls_<dataset>.png and
latent_concepts_<dataset>.png. Run from the repository root:
    .venv/bin/python docs/results/latent_controls.py [--train-seeds 0,1,2] [synthcxr mnist5k]
"""

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from cemap.report.draw import draw
from cemap.studies.context import StudyContext
from cemap.studies.latent_controls import LatentControlsConfig, run_latent_controls

root = Path(__file__).resolve().parents[1]


def one_training(dataset: str, train_seed: int, figures: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = StudyContext(dataset, Path(tmp), seed=0, draw=draw, train_seed=train_seed)
        ctx.autoencoder  # warm: trained or loaded before the clock starts
        t0 = time.perf_counter()
        result = run_latent_controls(ctx, LatentControlsConfig(n_images=64, pgd_steps=20, placements=4))
        seconds = time.perf_counter() - t0
        concepts = json.loads((Path(tmp) / "latent_concepts.json").read_text())
        for row in concepts["rows"]:  # the activation maps stay in the run folder's latent_concepts.json
            for top in row["top_images"]:
                top.pop("map")
        if figures:
            for name in ("latent_controls", "latent_concepts"):
                shutil.copy(Path(tmp) / f"{name}.png", root / "figures" / f"{name}_{dataset}.png")
        print(dataset, f"training {train_seed}: {seconds:.1f} s")
        for name, claim in result.claims.items():
            print(" ", name, ":", claim["verdict"])
        return {
            "train_seed": train_seed,
            "stage_seconds_with_warm_models": round(seconds, 1),
            **result.to_json(),
            **({"concept_table": concepts} if figures else {}),
        }


def over_trainings(records: list[dict]) -> dict:
    """Per claim: in how many trainings it holds as stated (its verdict starts "holds as stated"), and each verdict."""
    out = {}
    for name in records[0]["claims"]:
        verdicts = [r["claims"][name]["verdict"] for r in records]
        out[name] = {
            "holds_as_stated_in": sum(v.startswith("holds as stated") for v in verdicts),
            "of": len(verdicts),
            "verdicts": verdicts,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("datasets", nargs="*", default=["synthcxr", "mnist5k"])
    parser.add_argument("--train-seeds", default="0,1,2")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.train_seeds.split(",")]
    for dataset in args.datasets:
        records = [one_training(dataset, s, figures=i == 0) for i, s in enumerate(seeds)]
        doc = {
            "command": f".venv/bin/python docs/results/latent_controls.py --train-seeds {args.train_seeds} {dataset}",
            "over_trainings": over_trainings(records),
            "trainings": records,
        }
        (root / "results" / f"latent_controls_{dataset}.json").write_text(json.dumps(doc, indent=1))
        for name, row in doc["over_trainings"].items():
            print(dataset, name, f"holds as stated in {row['holds_as_stated_in']} of {row['of']} trainings")


if __name__ == "__main__":
    main()
