"""The controlled latent experiments (issue 21) at the demo's size, on held-out test images, for both built-in datasets.

Writes docs/results/latent_controls_<dataset>.json (with the concept table under "concept_table", without its activation
maps) and docs/figures/latent_controls_<dataset>.png, latent_concepts_<dataset>.png. Run from the repository root with
the built-in models cached:
    .venv/bin/python docs/results/latent_controls.py [synthcxr mnist5k]
"""

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from cemap.studies.context import StudyContext
from cemap.report.draw import draw
from cemap.studies.latent_controls import LatentControlsConfig, run_latent_controls

torch.set_num_threads(2)
root = Path(__file__).resolve().parents[1]
for dataset in sys.argv[1:] or ["synthcxr", "mnist5k"]:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = StudyContext(dataset, Path(tmp), seed=0, draw=draw)
        ctx.autoencoder  # warm: trained or loaded before the clock starts
        t0 = time.perf_counter()
        result = run_latent_controls(ctx, LatentControlsConfig(n_images=64, pgd_steps=20, placements=4))
        seconds = time.perf_counter() - t0
        concepts = json.loads((Path(tmp) / "latent_concepts.json").read_text())
        for row in concepts["rows"]:  # the activation maps stay in the run folder's latent_concepts.json
            for top in row["top_images"]:
                top.pop("map")
        record = {
            "command": f".venv/bin/python docs/results/latent_controls.py {dataset}",
            "stage_seconds_with_warm_models": round(seconds, 1),
            **result.to_json(),
            "concept_table": concepts,
        }
        (root / "results" / f"latent_controls_{dataset}.json").write_text(json.dumps(record, indent=1))
        shutil.copy(Path(tmp) / "latent_controls.png", root / "figures" / f"latent_controls_{dataset}.png")
        shutil.copy(Path(tmp) / "latent_concepts.png", root / "figures" / f"latent_concepts_{dataset}.png")
        print(dataset, f"{seconds:.1f} s")
        for claim in result.headline():
            print(" -", claim.text)
        for name, claim in result.claims.items():
            print(" ", name, ":", claim["verdict"])
