"""The command line: help with an example everywhere, one-line errors with exit code 2, and the everyday verbs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cemap.cli import app

from cli_helpers import one_line_error, run_cli


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_test):
    folder = tmp_path_factory.mktemp("digits")
    for i in (0, 150, 300):
        s = mnist_test[i]
        Image.fromarray((s.image[0].numpy() * 255).astype(np.uint8)).save(folder / f"digit{s.labels.item()}.png")
    return folder


def test_version(capsys):
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("cemap ")


def test_every_command_has_help_with_an_example(capsys):
    main_help = run_cli(["--help"], capsys)
    assert main_help[0] == 0
    names = [c.name or c.callback.__name__ for c in app.registered_commands]
    assert {"demo", "report", "explain", "predict"} <= set(names)
    for name in names:
        code, out, _ = run_cli([name, "--help"], capsys)
        assert code == 0 and "Example: cemap" in out, name


def test_long_running_commands_share_the_common_options(capsys):
    for name in ("demo", "explain", "predict"):
        out = run_cli([name, "--help"], capsys)[1]
        for flag in ("--seed", "--threads", "--quiet", "--out"):
            assert flag in out, (name, flag)


@pytest.mark.parametrize(
    "args, words",
    [
        (["demo", "--dataset", "nope"], ["unknown built-in dataset 'nope'", "mnist5k, synthcxr"]),
        (["report", "--bogus"], ["No such option: --bogus", "cemap report --help"]),
        (["nocommand"], ["No such command"]),
        (["predict", "x.png", "--model", "mnist-cnn", "--top", "many"], ["--top"]),
        (["predict", "missing.png", "--model", "mnist-cnn"], ["no such file or folder"]),
        (["explain", "missing.png", "--model", "not-a-model"], ["no such file"]),
    ],
)
def test_mistakes_are_one_line_with_exit_code_2(args, words, capsys):
    code, _, err = run_cli(args, capsys)
    one_line_error(code, err, *words)


def test_unknown_model_lists_valid_ones(digits, capsys):
    code, _, err = run_cli(["predict", str(digits), "--model", "not-a-model"], capsys)
    one_line_error(code, err, "unknown model 'not-a-model'", "mnist-cnn")


def test_corrupt_image_is_one_line_error(tmp_path, mnist_clf, capsys):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    code, _, err = run_cli(
        ["explain", str(tmp_path / "scan.png"), "--model", "mnist-cnn", "--out", str(tmp_path / "o")], capsys
    )
    one_line_error(code, err, "cannot read image", "scan.png")


def test_nan_image_is_one_line_error(tmp_path, mnist_clf, capsys):
    pixels = np.full((28, 28), 0.5, dtype=np.float32)
    pixels[3, 4] = np.nan
    Image.fromarray(pixels, mode="F").save(tmp_path / "nan.tif")
    code, _, err = run_cli(
        ["explain", str(tmp_path / "nan.tif"), "--model", "mnist-cnn", "--out", str(tmp_path / "o")], capsys
    )
    one_line_error(code, err, "NaN", "nan.tif")


def test_weights_file_problems_are_clear(tmp_path):
    from cemap.errors import CemapError
    from cemap.models import load_model

    with pytest.raises(CemapError, match="weights file not found"):
        load_model("mnist-cnn", {"weights": str(tmp_path / "missing.pt")})
    with pytest.raises(CemapError, match="does not take a weights file"):
        load_model("xrv-densenet121-res224-all", {"weights": str(tmp_path / "w.pt")})


def test_predict_prints_and_writes(digits, tmp_path, mnist_clf, capsys):
    out = tmp_path / "pred.json"
    code, stdout, _ = run_cli(
        ["predict", str(digits), "--model", "mnist-cnn", "--top", "2", "--quiet", "--out", str(out)], capsys
    )
    assert code == 0
    rows = json.loads(out.read_text())["predictions"]
    assert len(rows) == 3 and all(len(r["top"]) == 2 for r in rows)
    for r in rows:  # files are named after their true digit; the trained CNN gets them right
        assert r["top"][0]["class"] == r["file"].rsplit("digit", 1)[1][0]
    assert "digit0.png: 0" in stdout


def write_dicom(path, pixels: np.ndarray) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID, meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = (
        ExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid(),
    )
    ds = Dataset()
    ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = (
        meta,
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_predict_reads_dicom_like_png(tmp_path, mnist_test, mnist_clf, capsys):
    digit = mnist_test[300]
    write_dicom(tmp_path / "digit.dcm", (digit.image[0].numpy() * 4000).round())
    code, stdout, _ = run_cli(["predict", str(tmp_path / "digit.dcm"), "--model", "mnist-cnn", "--top", "1"], capsys)
    assert code == 0 and stdout.startswith(f"{tmp_path / 'digit.dcm'}: {digit.labels.item()} ")


def test_explain_writes_overlays_json_and_report(digits, tmp_path, mnist_clf, capsys):
    out = tmp_path / "explained"
    args = [
        "explain",
        str(digits),
        "--model",
        "mnist-cnn",
        "--fit-on",
        str(digits),
        "--methods",
        "ce,gradcam,random",
        "--out",
        str(out),
        "--quiet",
        "--threads",
        "1",
        "--seed",
        "3",
    ]
    threads = torch.get_num_threads()
    try:
        code, stdout, _ = run_cli(args, capsys)
        assert code == 0 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((out / "explain.json").read_text())
    assert summary["n_images"] == 3 and summary["methods"] == ["ce", "gradcam", "random"]
    assert set(summary["autoencoder"]["fidelity"]) >= {"agreement", "mean_kl", "ok"}
    for row in summary["images"]:
        per_image = json.loads((out / row["json"]).read_text())
        assert set(per_image["maps"]) == {"ce", "gradcam", "random"} and len(per_image["latent_profile"]) == 16
        assert (out / row["overlay"]).stat().st_size > 1000
    html = (out / "report.html").read_text()
    # three overlays and the latent profile figure; the explorer: one thumbnail per image and its colour scale
    assert (
        html.count('class="xp-thumb"') == 3
        and html.count('<img class="px"') == 3
        and html.count('alt="colour scale"') == 1
    )
    assert html.count("<img ") == 4 + 3 + 1 and "digit0.png" in html and "report:" in stdout


def test_explain_fits_on_the_readable_images_and_names_the_rest(digits, tmp_path, mnist_clf, capsys):
    import shutil

    fit = tmp_path / "fit"
    shutil.copytree(digits, fit)
    (fit / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    out = tmp_path / "explained"
    args = ["explain", str(digits / "digit0.png"), "--model", "mnist-cnn", "--fit-on", str(fit), "--methods", "ce"]
    code, _, err = run_cli([*args, "--out", str(out), "--quiet"], capsys)
    autoencoder = json.loads((out / "explain.json").read_text())["autoencoder"]
    assert code == 0 and autoencoder["fit_images"] == 3
    assert [Path(r["file"]).name for r in autoencoder["fit_skipped"]] == ["broken.png"]
    assert f"not fitted on {fit / 'broken.png'}" in err


def test_explain_without_fit_on_skips_the_latent_profile(digits, tmp_path, mnist_clf, capsys):
    code, _, _ = run_cli(
        [
            "explain",
            str(digits / "digit0.png"),
            "--model",
            "mnist-cnn",
            "--methods",
            "ce",
            "--target",
            "3",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
        capsys,
    )
    assert code == 0
    summary = json.loads((tmp_path / "explain.json").read_text())
    assert "autoencoder" not in summary and summary["images"][0]["target"] == "3"
    assert "Not computed: no autoencoder" in (tmp_path / "report.html").read_text()


def test_console_entry_point_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cemap", "report", str(tmp_path / "none")], capture_output=True, text=True, timeout=120
    )
    assert (
        proc.returncode == 2
        and proc.stderr.strip().splitlines() == [proc.stderr.strip()]
        and "run folder not found" in proc.stderr
    )


@pytest.mark.slow
def test_demo_quick_runs_the_whole_study(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(["demo", "--dataset", "mnist5k", "--quick", "--out", str(out), "--quiet"], capsys)
    assert code == 0 and "report:" in stdout
    study = json.loads((out / "study.json").read_text())
    assert set(study["timings_s"]) >= {"overview", "latent_controls", "evaluation", "detection", "audit", "total"}
    assert set(study["latent_controls"]["claims"]) and study["latent_controls"]["files"]
    for name in (
        "metrics.json",
        "evaluation.json",
        "detection.json",
        "latent_controls.json",
        "latent_concepts.json",
        "audit.json",
        "report.html",
    ):
        assert (out / name).is_file(), name
    html = (out / "report.html").read_text()
    assert "no evaluation.json" not in html and "no detection.json" not in html and html.count("<img ") >= 6
    assert '<section id="reliance">' in html and "What this model relies on" in html
    for path in out.rglob("*.json"):  # every file strict JSON: a NaN is null, never a bare NaN
        json.loads(path.read_text(), parse_constant=lambda c: 1 / 0)
    from cemap.report.run_folder import read_run_folder

    run = read_run_folder(out)  # every study's file reads back into its typed result
    assert run.problems == [] and set(run.results) == {
        "metrics",
        "study",
        "evaluation",
        "detection",
        "latent_controls",
        "latent_concepts",
        "audit",
    }
    # the same study again: every stage restored from the cache, the same results, a fresh report
    again = tmp_path / "again"
    code, stdout, _ = run_cli(["demo", "--dataset", "mnist5k", "--quick", "--out", str(again), "--quiet"], capsys)
    assert (
        code == 0
        and "restored from an earlier identical run: overview, latent_controls, evaluation, detection, audit" in stdout
    )
    assert all("restored_from" in p for p in json.loads((again / "study.json").read_text())["stages"].values())
    for name in ("metrics.json", "evaluation.json", "detection.json", "overlays.png"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert (again / "report.html").is_file()
