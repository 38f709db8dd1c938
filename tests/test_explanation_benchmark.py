"""Issue 16's benchmark study: verdicts from intervals in the headline, acceptance against the best peer; a slow end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cemap.evaluate.bootstrap import bootstrap_mean, paired_difference
from cemap.studies.evaluation import Pairs
from cemap.studies.explanation_benchmark import BenchmarkConfig, acceptance, headline, localisation_scores


def _rows_and_diffs(values):
    rows = {m: {k: bootstrap_mean(v[k]).to_json() for k in v} for m, v in values.items()}
    diffs = {
        m: {
            k: paired_difference(values["ce-ms"][k], values[m][k]).to_json()
            | {"verdict": paired_difference(values["ce-ms"][k], values[m][k]).verdict}
            for k in values[m]
        }
        for m in values
        if m != "ce-ms"
    }
    return rows, diffs


def test_acceptance_uses_the_best_peer_and_the_interval():
    rng = np.random.default_rng(0)
    n = 200
    values = {
        "ce-ms": {
            "pointing_game": (rng.random(n) < 0.9).astype(float),
            "iobb@0.25": (rng.random(n) < 0.5).astype(float),
        },
        "gradcam": {
            "pointing_game": (rng.random(n) < 0.5).astype(float),
            "iobb@0.25": (rng.random(n) < 0.5).astype(float),
        },
        "rise": {
            "pointing_game": (rng.random(n) < 0.6).astype(float),
            "iobb@0.25": (rng.random(n) < 0.52).astype(float),
        },
    }
    rows, diffs = _rows_and_diffs(values)
    cfg = BenchmarkConfig(peers=("gradcam", "rise"))
    sanity = {
        "ce-ms": {
            "verdict": {
                "passes": True,
                "criterion": "c",
                "per_seed": [
                    {"seed": 0, "spearman": rows["rise"]["iobb@0.25"], "spearman_abs": rows["rise"]["iobb@0.25"]}
                ],
            }
        }
    }
    acc = acceptance(values, rows, diffs, sanity, cfg)
    assert acc["pointing_game"]["best_peer"] == "rise" and acc["pointing_game"]["met"]
    assert not acc["iobb@0.25"]["met"] and not acc["met"]
    run = {"model": "m", "size": 64, "n_pairs": n, "acceptance": acc, "rows": rows, "sanity": sanity}
    claims = headline([run])
    assert len(claims) == 3
    assert (
        "is better" in claims[0]["claim"] and "is no different" in claims[1]["claim"] and "passes" in claims[2]["claim"]
    )
    json.dumps(claims)


def test_localisation_scores_cover_the_protocol():
    maps = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    boxes = [torch.tensor([[2.0, 2.0, 8.0, 8.0]])] * 3
    pairs = Pairs(torch.zeros(3, 1, 16, 16), torch.zeros(3, dtype=torch.long), boxes, ["a", "b", "c"], torch.arange(3))
    scores = localisation_scores(maps, pairs)
    for key in (
        "pointing_game",
        "pointing_game_any",
        "pointing_game_tol",
        "energy",
        "iobb@0.25",
        "fp@0.25",
        "iou@0.25",
        "iobb@0.7",
        "max_ties",
    ):
        assert scores[key].shape == (3,)


@pytest.mark.slow
def test_benchmark_end_to_end_small(tmp_path):
    from cemap.studies.explanation_benchmark import run_benchmark

    cfg = BenchmarkConfig(
        models=("cxr-cnn",),
        sizes=(64,),
        n_images=4,
        n_faithful=3,
        n_sanity=3,
        sanity_seeds=(0, 1, 2),
        tune_images=4,
        road_fractions=(0.3, 0.7),
        method_options={
            "rise": {"n_masks": 40},
            "kernelshap": {"n_samples": 16},
            "integrated-gradients": {"n_steps": 4},
        },
    )
    doc = run_benchmark(cfg, tmp_path)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert saved["heldout"]["seed"] == cfg.heldout_seed and saved["heldout"]["sizes"] == [64] and saved["headline"]
    run = doc["runs"][0]
    assert set(run["rows"]) == set(cfg.methods) and run["ce_choice"]["split"].startswith("train")
    assert {"low", "high", "n"} <= set(run["rows"]["gradcam"]["pointing_game"])
    assert run["ce_minus"]["gradcam"]["road"]["verdict"] in ("better", "no different", "worse", "undetermined")
    assert run["device"] == "cpu" and run["train_seed"] == 0 and 0.5 < run["model_quality"]["heldout_macro_auroc"] <= 1


@pytest.mark.parametrize(
    ("device", "seed", "expected"),
    [
        ("cpu", 0, {}),
        ("cpu", 2, {"train_config": {"seed": 2}}),
        ("cuda", 0, {"train_config": {"device": "cuda"}}),
        ("cuda", 1, {"train_config": {"device": "cuda", "seed": 1}}),
    ],
)
def test_benchmark_models_are_keyed_by_training_seed_and_device(monkeypatch, device, seed, expected):
    """Another training seed or a GPU trains (and caches) another model; the default asks for the built-in one."""
    import cemap.studies.explanation_benchmark as bench

    asked = {}

    class Placed:
        def to(self, where):
            asked["to"] = where
            return self

    monkeypatch.setattr(
        bench, "get_model", lambda name, size, **kw: asked.update(name=name, size=size, kw=kw) or Placed()
    )
    bench.benchmark_model("cxr-cnn", 64, device, seed)
    assert asked == {"name": "cxr-cnn", "size": 64, "kw": expected, "to": device}


def test_benchmark_cli_needs_synthcxr(tmp_path, capsys):
    from cemap.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--dataset", "mnist5k", "--benchmark", "--out", str(tmp_path)])
    assert exit_info.value.code != 0
    assert "synthcxr" in capsys.readouterr().err
