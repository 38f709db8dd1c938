"""Study and report share one contract: every study's quick form runs for real, writes strict JSON, reads back into its
typed result, and the report renders from that output alone (no hand-made dicts)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from cemap.jsonio import dumps
from cemap.report.draw import draw
from cemap.report.headline import headlines
from cemap.report.html import render_html, write_report
from cemap.report.run_folder import read_run_folder
from cemap.studies.context import StudyContext
from cemap.studies.detection import DetectionConfig, DetectionResult, run_detection
from cemap.studies.evaluation import EvalConfig, EvaluationResult, run_evaluation
from cemap.studies.explain_files import ExplainConfig, ExplainResult, run_explain
from cemap.studies.latent_controls import (
    ConceptsResult,
    LatentControlsConfig,
    LatentControlsResult,
    run_latent_controls,
)
from cemap.studies.overview import OverviewConfig, OverviewResult, run_overview


def strict_json(path):
    """``json.load`` refusing NaN and infinities, as a strict parser does."""
    with open(path) as fh:
        return json.load(fh, parse_constant=lambda c: 1 / 0)


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory, mnist_clf, mnist_ae):
    """Each study's quick form on MNIST, into one run folder (the built-in model and autoencoder come from the
    cache)."""
    out = tmp_path_factory.mktemp("studies")
    ctx = StudyContext("mnist5k", out, seed=0, quick=True, draw=draw)
    results = [
        run_overview(ctx, OverviewConfig(n_images=4)),
        run_latent_controls(
            ctx, LatentControlsConfig(n_images=6, pgd_steps=3, placements=2, concept_images=40, align_images=100)
        ),
        run_evaluation(ctx, EvalConfig(n_images=6, n_robust=2, steps=4, methods=("ce", "gradcam", "random"))),
        # the quick size, smaller still: the adaptive sweep against two detectors, not six
        run_detection(
            ctx,
            replace(
                DetectionConfig.quick(), n_fit=12, n_eval=12, n_reference=40, cw_steps=5, adaptive_methods=("ce", "msp")
            ),
        ),
    ]
    write_report(out)
    return out, results


def test_every_study_reads_back_into_its_result(study_folder):
    out, results = study_folder
    for result in results:
        doc = strict_json(out / result.FILE)
        assert type(result).from_json(doc).to_json() == doc, result.FILE
        assert doc == json.loads(dumps(result.to_json())), result.FILE  # what the study returns is what it wrote
    assert ConceptsResult.from_json(strict_json(out / "latent_concepts.json")).headline()
    for path in out.glob("*.json"):
        strict_json(path)  # no bare NaN anywhere


def test_the_report_renders_from_the_studies_own_output(study_folder):
    out, results = study_folder
    run = read_run_folder(out)
    assert run.problems == []
    kinds = {
        "metrics": OverviewResult,
        "latent_controls": LatentControlsResult,
        "evaluation": EvaluationResult,
        "detection": DetectionResult,
        "latent_concepts": ConceptsResult,
    }
    assert {k: type(v) for k, v in run.results.items()} == kinds
    claims = headlines(run)
    by_source = {c.source for c in claims}
    assert {"evaluation.json", "latent_controls.json", "detection.json", "latent_concepts.json"} <= by_source
    detection = next(r for r in results if isinstance(r, DetectionResult))
    assert [c.text for c in claims if c.source == "detection.json"] == [c.text for c in detection.headline()]
    html = render_html(run)
    for anchor in (
        "headline",
        "settings",
        "explorer",
        "fidelity",
        "concepts",
        "maps",
        "profiles",
        "evaluation",
        "detection",
        "values",
        "files",
    ):
        assert f'id="{anchor}"' in html, anchor
    assert (
        "Not computed in this run" not in html.split('id="settings"')[0]
    )  # every question of the first screen is answered
    assert "mnist-cnn" in html and (out / "report.html").stat().st_size > 10_000


def test_explain_reads_back_and_renders(tmp_path, mnist_clf, mnist_test):
    files = []
    for i in (0, 7):
        files.append(tmp_path / "scans" / f"digit{i}.png")
        files[-1].parent.mkdir(exist_ok=True)
        Image.fromarray((mnist_test[i].image[0].numpy() * 255).astype(np.uint8)).save(files[-1])
    out = tmp_path / "out"
    result = run_explain(mnist_clf, files, out, ExplainConfig(methods=("ce", "random")), draw=draw)
    doc = strict_json(out / "explain.json")
    assert ExplainResult.from_json(doc).to_json() == doc and result.n_images == 2
    run = read_run_folder(out)
    assert run.problems == [] and isinstance(run.explain, ExplainResult) and len(run.explorer) == 2
    assert "digit7.png" in render_html(run)
