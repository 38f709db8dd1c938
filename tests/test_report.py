"""The HTML report: findings first, self-contained, escaped, graceful on partial or damaged run folders; the explorer's
data."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cemap.errors import CemapError
from cemap.numbers import format_interval as interval
from cemap.numbers import number, show
from cemap.report.headline import concept_labels, headlines
from cemap.report.html import render_html, write_report
from cemap.report.run_folder import figure_section, read_run_folder
from cemap.runner.explorer import items_from_run
from cemap.studies.explorer import ExplorerItem, image_uint8, load_explorer_items, merge_items, save_explorer_items
from cemap.studies.results import (
    Claim,
    ConceptsResult,
    DetectionResult,
    EvaluationResult,
    ExplainResult,
    LatentControlsResult,
    OverviewResult,
    localisation_claims,
)

IV = {"estimate": 0.7234, "low": 0.6612, "high": 0.7833, "n": 200, "level": 0.95}
# Hand-made results go through the studies' own result types, so they hold exactly what the studies write
# (tests/test_report_studies.py renders the studies' real output).
METRICS = OverviewResult(
    dataset="synthcxr",
    model="cxr-cnn",
    layer="features.3",
    split_method="fx",
    classifier={"macro_auroc": 0.97},
    autoencoder={"code_channels": 16, "fidelity": {"agreement": 0.991, "mean_kl": 0.01, "n": 100, "ok": True}},
    ce_map={"cell": 18, "stride": 18, "fill": "zero", "forward_passes_per_image": 50},
    figures={"ce_maps": "ce_maps.png"},
    timings_s={"model": 1.5, "total": 9.25},
).to_json()
EVAL_ROWS = [
    {"method": "ce", "options": {"cell": 12}, "pointing_game": IV, "deletion_auc": 0.2},
    {
        "method": "gradcam",
        "options": {},
        "pointing_game": {"estimate": 0.61, "low": 0.55, "high": 0.68, "n": 200, "level": 0.95},
    },
    {"method": "random", "options": {}, "pointing_game": 0.2},
]


def png(path, size=(40, 30), color=(200, 30, 30)):
    Image.new("RGB", size, color).save(path)
    return path


def items(n=3, size=32, evil=""):
    rng = np.random.default_rng(0)
    return [
        ExplorerItem(
            id=f"{evil}img_{i}.png",
            image=rng.random((3, size, size)),
            maps={"CE map": rng.standard_normal((size, size)), "gradcam": rng.random((size, size))},
            boxes=[[2, 3, 10, 12]],
            box_labels=[1],
            probs=[0.2, 0.8],
            target=1,
            labels=[1],
            profile=rng.standard_normal(4),
            source="demo",
        )
        for i in range(n)
    ]


def evaluation(rows=EVAL_ROWS, n_pairs=200) -> dict:
    return EvaluationResult(
        dataset="synthcxr",
        dataset_options={},
        model="cxr-cnn",
        model_fingerprint="0" * 16,
        n_images=100,
        n_pairs=n_pairs,
        config={"steps": 16},
        ce_tuning=None,
        rows=rows,
        seconds=12.5,
    ).to_json()


def detection(table=None, claims=()) -> dict:
    return DetectionResult(
        dataset="synthcxr",
        model="cxr-cnn",
        layer="features.3",
        size="demo",
        claims_=list(claims),
        protocol={"eval_part": "60 test images"},
        table=table or [{"row": "FGSM eps=0.3", "ce_auroc": 0.97}],
        attacks={"fgsm": {"success_rate_eval": 0.9}},
    ).to_json()


def explain(images, **kw) -> dict:
    return ExplainResult(model="m", layer="conv", methods=["ce"], n_images=len(images), images=images, **kw).to_json()


@pytest.fixture
def full_run(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation()))
    claim = Claim(
        "synthcxr, fitted on a mix of FGSM and PGD, unseen PGD first flip: CE AUROC 0.912 [0.850, 0.960]",
        [{"attack": "PGD first flip"}],
    )
    (tmp_path / "detection.json").write_text(json.dumps(detection(claims=[claim])))
    for name in ("ce_maps.png", "latent_profiles.png", "signature_hist.png", "roc_fgsm.png", "extra.png"):
        png(tmp_path / name)
    return tmp_path


def section_of(html: str, anchor: str) -> str:
    start = html.index(f'id="{anchor}"')
    end = html.find("<section", start)
    return html[start : end if end > 0 else len(html)]


def test_numbers_are_rounded_to_what_they_carry():
    assert interval(IV) == "0.72 [0.66, 0.78]"
    assert (
        interval({"estimate": 0.05, "low": 0.012, "high": 0.091, "verdict": "better"})
        == "+0.050 [0.012, 0.091] (better)"
    )
    assert interval({"estimate": 12.34, "low": 11.0, "high": 13.9}) == "12.3 [11.0, 13.9]"
    assert [number(v) for v in (0.123456, 12.3456, 0.01, 3, 123456, 1.2e-5)] == [
        "0.123",
        "12.3",
        "0.01",
        "3",
        "123,456",
        "1.20e-05",
    ]
    assert show(None) == "n/a" and show(True) == "yes"


def test_findings_come_first_with_intervals(full_run):
    html = render_html(read_run_folder(full_run))
    main = html[html.index("<main>") :]
    assert main.index('id="headline"') < main.index('id="settings"') < main.index('id="evaluation"')
    head = section_of(html, "headline")
    assert (
        "ce localises best: pointing game 0.72 [0.66, 0.78], 0.11 above the next, gradcam (0.61 [0.55, 0.68])" in head
    )
    assert "No intervals were recorded" not in head
    assert "floors: random 0.2" in head and "The autoencoder is faithful" in head and "99.1%" in head
    assert "unseen PGD first flip: CE AUROC 0.912 [0.850, 0.960]" in head  # the detection study's own claim
    assert "Not computed in this run: how the latent profile shifts" in head
    assert (
        head.split("<details>")[0].count("<table>") == 1
    )  # one small table on the first screen, the others one click away
    assert "0.7234" not in html  # raw digits never reach the page


def test_ties_and_missing_intervals_are_said(tmp_path):
    rows = [
        {"method": "scorecam", "pointing_game": 0.923},
        {"method": "ig", "pointing_game": 0.923},
        {"method": "ce", "pointing_game": 0.846},
    ]
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation(rows, n_pairs=13)))
    text = headlines(read_run_folder(tmp_path))[0].text
    assert (
        text == localisation_claims(rows, 13)[0].text
    )  # the evaluation study's own claim, read through its result type
    assert text.startswith("scorecam and ig localise best, tied: pointing game 0.923, 0.077 above the next, ce (0.846)")
    assert "No intervals were recorded; one pair moves a score by 0.077" in text


def test_studies_claims_come_verbatim_verdicts_first(full_run):
    controls = LatentControlsResult(
        claims_=[Claim("Masking the lesion moves Z2 more than a control box", [{"measure": "L1", "difference": IV}])],
        claims={
            "lesion_specific": {
                "claim": "masking the lesion moves the profile",
                "forms": {"as stated": True},
                "verdict": "holds as stated",
            }
        },
    )
    (full_run / "latent_controls.json").write_text(json.dumps(controls.to_json()))
    claims = headlines(read_run_folder(full_run))
    assert [c.source for c in claims[:4]] == [
        "evaluation.json",
        "latent_controls.json",
        "latent_controls.json",
        "detection.json",
    ]
    assert claims[1].text == "The paper's claim that masking the lesion moves the profile: holds as stated."
    assert claims[2].text == "Masking the lesion moves Z2 more than a control box"
    head = section_of(render_html(read_run_folder(full_run)), "headline")
    assert "holds as stated" in head and "0.72 [0.66, 0.78]" in head and "how the latent profile shifts" not in head


def test_a_result_of_another_schema_is_shown_as_written(tmp_path):
    """The explanation benchmark writes evaluation.json with its own schema: its headline and values are shown, nothing
    is lost."""
    (tmp_path / "evaluation.json").write_text(
        json.dumps({"runs": [{"model": "cxr-cnn"}], "headline": [{"claim": "CE ties IG", "table": []}]})
    )
    run = read_run_folder(tmp_path)
    assert run.evaluation is None and not run.problems and [c.text for c in headlines(run)] == ["CE ties IG"]
    assert "cxr-cnn" in section_of(render_html(run), "evaluation")


def test_settings_in_words_and_raw_values_collapsed(full_run):
    html = render_html(read_run_folder(full_run))
    settings = section_of(html, "settings")
    assert "CE map: 7 x 7 grid, 18 px cells, zero fill, 50 forward passes per image." in settings
    assert (
        "Latent interventions at layer features.3 (model split by fx), through an autoencoder with 16 concept "
        "channels Z0..Z15." in settings
    )
    assert (
        "<details><summary>The settings as recorded</summary>" in settings
        and "ce_map.forward_passes_per_image" in settings
    )
    evaluation = section_of(html, "evaluation")
    assert evaluation.index("<th>pointing game</th>") < evaluation.index("<details>") < evaluation.index("config.steps")
    assert "success_rate_eval" in section_of(html, "detection")


def test_every_json_file_downloads_from_the_report(full_run):
    html = render_html(read_run_folder(full_run))
    links = dict(re.findall(r'<a download="([^"]+)" href="data:application/json;base64,([^"]+)"', html))
    assert set(links) == {"metrics.json", "evaluation.json", "detection.json"}
    assert json.loads(base64.b64decode(links["metrics.json"])) == METRICS


def test_wide_tables_show_their_first_columns_and_the_rest_behind_a_click(tmp_path):
    rows = [{f"column_{j}": j for j in range(20)}]
    (tmp_path / "detection.json").write_text(json.dumps(detection(table=rows)))
    shown = section_of(render_html(read_run_folder(tmp_path)), "detection")
    first = shown[: shown.index("<details>")]
    assert "column_8" in first and "column_9" not in first and "All 20 columns" in shown


def test_report_without_explorer_runs_no_script(full_run):
    html = render_html(read_run_folder(full_run))
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "default-src 'none'" in html and "script-src 'none'" in html
    assert "Not available: this folder holds no per-image data" in html


def test_explorer_script_is_the_only_one_and_allowed_by_its_hash(full_run):
    save_explorer_items(full_run, items(), class_names=["no", "yes"])
    html = render_html(read_run_folder(full_run))
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    executable = [body for attrs, body in scripts if "application/json" not in attrs]
    assert len(executable) == 1 and len(scripts) == 2
    digest = base64.b64encode(hashlib.sha256(executable[0].encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert f"script-src 'sha256-{digest}'" in csp and "unsafe" not in csp
    style = re.search(r"<style>(.*?)</style>", html, flags=re.S).group(1)
    assert f"style-src 'sha256-{base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()}'" in csp
    assert html.count('class="xp-thumb"') == 3 and "Image explorer (3 images)" in html


def test_explorer_file_round_trip_and_merge(tmp_path):
    original = items(2)
    save_explorer_items(tmp_path, original, class_names=["no", "yes"])
    back, names = load_explorer_items(tmp_path / "explorer.npz")
    assert names == ["no", "yes"] and [b.id for b in back] == ["img_0.png", "img_1.png"]
    assert back[0].image.shape == (32, 32, 3) and back[0].image.dtype == np.uint8
    np.testing.assert_array_equal(
        image_uint8(back[0].image), back[0].image
    )  # a loaded image is shown as saved, not rescaled
    np.testing.assert_array_equal(back[0].image, image_uint8(original[0].image))
    np.testing.assert_allclose(back[1].maps["CE map"], original[1].maps["CE map"], rtol=1e-6)
    assert back[0].boxes.tolist() == [[2, 3, 10, 12]] and back[0].target == 1 and back[0].labels == [1]
    extra = ExplorerItem(id="img_0.png", maps={"occlusion": np.ones((32, 32))}, source="evaluation")
    merged = merge_items([back, [extra]])
    assert (
        len(merged) == 2
        and list(merged[0].maps) == ["CE map", "gradcam", "occlusion"]
        and merged[0].source == "demo, evaluation"
    )
    with pytest.raises(ValueError, match="explorer"):
        save_explorer_items(tmp_path, original, name="other.npz")


def test_explorer_from_a_dataset_run_reads_the_shards():
    """``items_from_run`` on an object with RunResults' interface (the real one is covered in test_browser)."""

    class Result:
        def __init__(self, i):
            boxes = (
                np.array([[1, 2, 5, 6]], np.float32) if i == 0 else np.zeros((0, 4), np.float32)
            )  # as RunResults.rows() gives them
            self.index, self.row = (
                i,
                {
                    "index": i,
                    "id": f"digit_{i}",
                    "label": i % 2,
                    "boxes": boxes,
                    "box_labels": np.arange(len(boxes)),
                    "probs": np.array([0.3, 0.7], np.float32),
                    "target": 1,
                    "latent_ce": np.arange(4, dtype=np.float32),
                },
            )
            self.maps = {"cemap": np.full((8, 8), i, np.float32), "cemap@pgd": np.zeros((8, 8), np.float32)}

    class Run:
        map_names, class_names = ["cemap", "cemap@pgd"], ["even", "odd"]

        def dataset(self):
            raise FileNotFoundError("not on this machine")

        def results(self, maps):
            assert maps == self.map_names
            return (Result(i) for i in range(100))

    found = items_from_run(Run(), limit=5)
    assert (
        [f.id for f in found] == [f"digit_{i}" for i in range(5)] and found[3].labels == [1] and found[2].image is None
    )
    assert list(found[4].maps) == ["cemap", "cemap@pgd"] and found[4].profile.tolist() == [0, 1, 2, 3]
    assert found[0].boxes.tolist() == [[1, 2, 5, 6]] and found[0].box_labels == [0] and found[1].boxes.shape == (0, 4)


def test_explain_folder_without_explorer_file_still_lists_its_images(tmp_path):
    picture = png(tmp_path / "scan 1.png", size=(20, 20))
    (tmp_path / "0000_scan_1.json").write_text(
        json.dumps(
            {"file": str(picture), "target": "b", "probabilities": {"a": 0.1, "b": 0.9}, "latent_profile": [0.1, 0.2]}
        )
    )
    (tmp_path / "explain.json").write_text(
        json.dumps(explain([{"file": "scan 1.png", "json": "0000_scan_1.json", "target": "b", "probability": 0.9}]))
    )
    run = read_run_folder(tmp_path)
    assert (
        [i.id for i in run.explorer] == [str(picture)] and run.explorer[0].target == 1 and run.class_names == ["a", "b"]
    )
    assert run.explorer[0].image.shape == (20, 20, 3)


def test_concept_labels_name_the_channels(tmp_path):
    def row(j, best, auc):
        return {
            "channel": j,
            "name": f"Z{j}",
            "best_concept": best,
            "best_auroc": {"estimate": auc, "low": auc - 0.1, "high": auc + 0.05},
            "auroc": {"Mass": auc, "Effusion": 0.5},
            "energy_in_box": {"Mass": None, "Effusion": None},
            "class_effect": {best: 0.1},
            "top_images": [{"index": 0, "id": "img_0.png", "pooled": 1.0, "map": [[0.0]]}],
        }

    doc = ConceptsResult(
        dataset="synthcxr",
        model="cxr-cnn",
        images=["img_0.png"],
        what="per channel",
        layer="features.3",
        n_images=1,
        concepts=["Mass", "Effusion"],
        positives={"Mass": 1, "Effusion": 0},
        box_area={"Mass": None, "Effusion": None},
        labels=["Z0 - Mass, AUROC 0.71", "Z1", "Z2 - Effusion, AUROC 0.93"],
        coverage={"threshold": 0.9, "aligned": ["Effusion"], "not_aligned": ["Mass"]},
        rows=[row(0, "Mass", 0.71), row(1, "Mass", 0.6), row(2, "Effusion", 0.93)],
    )
    (tmp_path / "latent_concepts.json").write_text(json.dumps(doc.to_json()))
    save_explorer_items(tmp_path, items(1))
    run = read_run_folder(tmp_path)
    assert concept_labels(run) == {0: "Mass, AUROC 0.71", 2: "Effusion, AUROC 0.93"}
    html = render_html(run)
    assert "Latent channels explained" in html and "Effusion, AUROC 0.93" in html
    assert "1 of 2 concepts have a latent channel aligned with AUROC &gt;= 0.9 (Effusion); none for Mass." in html


def test_figures_land_in_their_sections():
    assert figure_section("ce_maps ce_maps") == "maps"
    assert figure_section(" roc_pgd") == "roc"
    assert figure_section("histograms signature_fgsm") == "signatures"
    assert figure_section(" latent_profiles") == "profiles"
    assert figure_section(" something") == "other"


def test_importing_and_drawing_leaves_the_matplotlib_backend_alone(tmp_path):
    code = (
        "import sys, matplotlib, torch; matplotlib.use('svg');"
        "import cemap.report.html, cemap.report.figures as f, cemap.report.detection_figures as d;"
        f"f.overlay_grid(torch.rand(2, 3, 8, 8), {{'ce': torch.rand(2, 8, 8)}}, "
        f"__import__('pathlib').Path(r'{tmp_path}') / 'o.png');"
        f"f.profile_bars({{'clean': torch.rand(3, 4)}}, __import__('pathlib').Path(r'{tmp_path}') / 'p.png', "
        f"concepts={{1: 'Mass, AUROC 0.9'}});"
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend();"
        "assert 'matplotlib.pyplot' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    assert (tmp_path / "o.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "p.png").stat().st_size > 1000


def test_metrics_only_says_not_computed(tmp_path):
    (tmp_path / "metrics.json").write_text(
        json.dumps({**METRICS, "model": "mnist-cnn", "autoencoder": {"code_channels": 16}})
    )
    html = render_html(read_run_folder(tmp_path))
    assert "mnist-cnn" in html
    assert html.count("Not computed") >= 5  # fidelity, maps, profiles, evaluation, detection (+ figures)
    assert "no evaluation.json" in html and "no detection.json" in html
    assert "Autoencoder fidelity: not computed" in section_of(html, "headline")


def test_a_result_of_an_older_schema_is_a_problem_not_a_failure(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"dataset": "mnist5k", "model": "mnist-cnn"}))
    run = read_run_folder(tmp_path)
    assert run.overview is None and run.problems == [
        "metrics.json is not a result this report can read (metrics.json lacks layer, split_method, "
        "classifier, autoencoder: not a result of this version of cemap)"
    ]
    html = render_html(run)
    assert "Problems reading this folder" in html and "mnist-cnn" in section_of(
        html, "values"
    )  # every value is still shown


def test_folder_without_settings_renders_and_missing_folder_is_a_clear_error(tmp_path):
    (tmp_path / "study.json").write_text("{}")
    path = write_report(tmp_path)
    assert path == tmp_path / "report.html" and "Not recorded" in path.read_text()
    with pytest.raises(CemapError, match="run folder not found"):
        read_run_folder(tmp_path / "nope")


def test_damaged_files_are_reported_not_fatal(tmp_path):
    (tmp_path / "metrics.json").write_text("{not json")
    (tmp_path / "detection.json").write_text("[1, 2]")
    (tmp_path / "roc.png").write_bytes(b"\x89PNG garbage")
    (tmp_path / "explorer.npz").write_bytes(b"PK garbage")
    png(tmp_path / "ok.png")
    run = read_run_folder(tmp_path)
    assert len(run.problems) == 4 and [f.name for f in run.figures] == ["ok.png"]
    html = render_html(run)
    assert (
        "Problems reading this folder" in html
        and "metrics.json could not be read" in html
        and "roc.png is not a readable image" in html
    )
    assert "explorer.npz could not be read" in html


def test_markup_in_file_names_and_values_renders_as_text(tmp_path):
    evil = "<script>alert(1)<"
    png(tmp_path / f"{evil}.png")
    (tmp_path / f"{evil}.txt").write_text("x")
    (tmp_path / "metrics.json").write_text(
        json.dumps({**METRICS, "model": "<b onmouseover=x>m</b>", "classifier": {"<i>class</i>": 1.0}})
    )
    save_explorer_items(tmp_path, items(2, evil="</script><script>alert(2)</script>"), class_names=["<b>no</b>", "yes"])
    html = render_html(read_run_folder(tmp_path))
    assert html.count("<script") == 2 and "alert(2)</script>" not in html  # the data block and the explorer only
    assert "<b onmouseover" not in html and "<i>class" not in html and "<b>no" not in html
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
    manifest = {
        "format": "cemap-run/1",
        "complete": True,
        "n_images": 100,
        "n_rows": 100,
        "config": {"dataset": "nih", "model": "chexnet"},
        "autoencoder": {
            "layer": "features.transition2",
            "fidelity": {"agreement": 0.9, "mean_kl": 0.2, "n": 100, "ok": False},
        },
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    html = render_html(read_run_folder(tmp_path))
    assert "chexnet" in html and "Low fidelity" in html and "Dataset-scale run" in html and "n_rows" in html
    assert "The autoencoder is NOT faithful" in section_of(html, "headline")


def test_many_json_files_keep_the_study_results_downloadable(full_run, monkeypatch):
    import cemap.report.run_folder as rf

    for i in range(5):
        (full_run / f"{i:04d}_image.json").write_text(json.dumps({"pad": "x" * 400}))
    monkeypatch.setattr(rf, "MAX_DOWNLOADS_TOTAL", 1500)
    run = read_run_folder(full_run)
    assert {"metrics.json", "evaluation.json", "detection.json"} <= set(run.downloads) and len(run.downloads) < 8
    assert any("more JSON files" in p and "not embedded" in p for p in run.problems)


def test_explained_images_are_captioned_by_their_real_file_names(tmp_path):
    png(tmp_path / "0000_scan_1_.png")
    images = [{"file": "scan 1?.png", "overlay": "0000_scan_1_.png", "json": "0000_scan_1_.json"}]
    (tmp_path / "explain.json").write_text(json.dumps(explain(images, figures={"overlays": ["0000_scan_1_.png"]})))
    save_explorer_items(tmp_path, [ExplorerItem(id="ward 2/scan 1?.png", image=np.zeros((8, 8)), source="explain")])
    html = render_html(read_run_folder(tmp_path))
    assert "<figcaption>ward 2/scan 1?.png" in section_of(html, "maps") and "<td>ward 2/scan 1?.png</td>" in section_of(
        html, "explained"
    )


def test_maps_of_a_folder_without_overlays_are_found_in_the_explorer(tmp_path):
    """A cemap run keeps per-image maps, not overlay figures: the maps section points to the explorer, not to a gap."""
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    save_explorer_items(tmp_path, items(2), class_names=["no", "yes"])
    maps = section_of(render_html(read_run_folder(tmp_path)), "maps")
    assert "image explorer" in maps and "Not computed" not in maps


def test_low_fidelity_is_said_as_the_json_says_it(tmp_path):
    """Agreement 100% with one code for every image: the report gives that reason, never "agrees only 1 of the time"."""
    fid = {"agreement": 1.0, "mean_kl": 0.0, "n": 6, "ok": False, "problems": ["the code is the same for every image"]}
    manifest = {
        "format": "cemap-run/2",
        "complete": True,
        "n_images": 6,
        "n_rows": 6,
        "config": {"dataset": "imagefolder", "model": "resnet18"},
        "autoencoder": {"fidelity": fid},
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    html = render_html(read_run_folder(tmp_path))
    for anchor in ("headline", "fidelity"):
        text = section_of(html, anchor)
        assert "NOT faithful: the code is the same for every image" in text and "100% of the time" in text
        assert "only" not in text


def test_profiles_of_a_run_folder_are_found_in_the_explorer(tmp_path):
    """A cemap run keeps each image's latent CE profile: the profiles section points to them, never "Not computed"."""
    (tmp_path / "metrics.json").write_text(json.dumps(METRICS))
    save_explorer_items(tmp_path, items(2), class_names=["no", "yes"])
    profiles = section_of(render_html(read_run_folder(tmp_path)), "profiles")
    assert "image explorer" in profiles and "Not computed" not in profiles
