"""The HTML report: self-contained, escaped, and graceful on partial or damaged run folders."""

from __future__ import annotations

import base64
import json
import re

import pytest
from PIL import Image

from cemap.errors import CemapError
from cemap.report.html import render_html, write_report
from cemap.report.run_folder import figure_section, read_run_folder

METRICS = {
    "dataset": "synthcxr",
    "model": "cxr-cnn",
    "layer": "features.3",
    "classifier": {"macro_auroc": 0.97},
    "autoencoder": {"code_channels": 16, "fidelity": {"agreement": 0.991, "mean_kl": 0.01, "n": 100, "ok": True}},
    "figures": {"ce_maps": "ce_maps.png"},
    "timings_s": {"model": 1.5, "total": 9.25},
}


def png(path, size=(40, 30), color=(200, 30, 30)):
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def full_run(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    rows = [{"method": "ce", "options": {"cell": 12}, "pointing_game": 0.81}, {"method": "gradcam", "options": {}, "pointing_game": 0.74}]
    (tmp_path / "evaluation.json").write_text(json.dumps({"n_images": 200, "config": {"steps": 16}, "rows": rows, "seconds": 12.5}))
    detection = {"protocol": {"eval_part": "60 test images"}, "table": [{"row": "FGSM eps=0.3", "ce_auroc": 0.97}], "attacks": {"fgsm": {"success_rate_eval": 0.9}}}
    (tmp_path / "detection.json").write_text(json.dumps(detection))
    for name in ("ce_maps.png", "latent_profiles.png", "signature_hist.png", "roc_fgsm.png", "extra.png"):
        png(tmp_path / name)
    return tmp_path


def test_full_run_inlines_every_figure_and_table(full_run):
    html = render_html(read_run_folder(full_run))
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 5 and len(re.findall(r"<img ", html)) == 5
    assert base64.b64decode(images[0])[:4] == b"\x89PNG"
    for text in ("cxr-cnn", "features.3", "0.991", "High fidelity", "pointing_game", "0.74", "gradcam", "FGSM eps=0.3", "0.97", "9.25", "12.5", "60 test images"):
        assert text in html
    evaluation = html[html.index('id="evaluation"') : html.index('id="detection"')]
    assert evaluation.index("<th>method</th>") < evaluation.index("options.cell") < evaluation.index("<details>") < evaluation.index("config.steps")
    assert "success_rate_eval" in html[html.index('id="detection"') :]
    assert "Not computed" not in html


def test_report_fetches_nothing_and_runs_no_script(full_run):
    html = render_html(read_run_folder(full_run))
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "default-src 'none'" in html


def test_figures_land_in_their_sections():
    assert figure_section("ce_maps ce_maps") == "maps"
    assert figure_section(" roc_pgd") == "roc"
    assert figure_section("histograms signature_fgsm") == "signatures"
    assert figure_section(" latent_profiles") == "profiles"
    assert figure_section(" something") == "other"


def test_metrics_only_says_not_computed(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"dataset": "mnist5k", "model": "mnist-cnn"}))
    html = render_html(read_run_folder(tmp_path))
    assert "mnist-cnn" in html
    assert html.count("Not computed") >= 5  # fidelity, maps, profiles, evaluation, detection (+ figures)
    assert "no evaluation.json" in html and "no detection.json" in html


def test_empty_folder_renders_and_missing_folder_is_a_clear_error(tmp_path):
    path = write_report(tmp_path)
    assert path == tmp_path / "report.html" and "Not recorded" in path.read_text()
    with pytest.raises(CemapError, match="run folder not found"):
        read_run_folder(tmp_path / "nope")


def test_damaged_files_are_reported_not_fatal(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    (tmp_path / "detection.json").write_text("[1, 2]")
    (tmp_path / "roc.png").write_bytes(b"\x89PNG garbage")
    png(tmp_path / "ok.png")
    run = read_run_folder(tmp_path)
    assert len(run.problems) == 3 and [f.name for f in run.figures] == ["ok.png"]
    html = render_html(run)
    assert "Problems reading this folder" in html and "metrics.json could not be read" in html and "roc.png is not a readable image" in html


def test_markup_in_file_names_and_values_renders_as_text(tmp_path):
    evil = "<script>alert(1)<"
    png(tmp_path / f"{evil}.png")
    (tmp_path / f"{evil}.txt").write_text("x")
    (tmp_path / "metrics.json").write_text(json.dumps({**METRICS, "model": "<b onmouseover=x>m</b>", "classifier": {"<i>class</i>": 1.0}}))
    html = render_html(read_run_folder(tmp_path))
    assert "<script" not in html and "<b onmouseover" not in html and "<i>class" not in html
    assert "&lt;script&gt;alert(1)&lt;.png" in html and "&lt;script&gt;alert(1)&lt;.txt" in html
    assert "&lt;b onmouseover=x&gt;m&lt;/b&gt;" in html


def test_report_command_writes_the_file(full_run, tmp_path, capsys):
    from cemap.cli import main

    out = tmp_path / "elsewhere" / "r.html"
    main(["report", str(full_run), "--out", str(out)])
    assert out.is_file() and "report written to" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "missing")])
    assert exc.value.code == 2


def test_dataset_run_manifest_is_rendered(tmp_path):
    manifest = {"format": "cemap-run/1", "complete": True, "n_rows": 100, "config": {"dataset": "nih", "model": "chexnet"},
                "autoencoder": {"layer": "features.transition2", "fidelity": {"agreement": 0.9, "mean_kl": 0.2, "n": 100, "ok": False}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    html = render_html(read_run_folder(tmp_path))
    assert "chexnet" in html and "Low fidelity" in html and "Dataset-scale run" in html and "n_rows" in html
