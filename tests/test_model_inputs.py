"""Preprocessing that follows the model: input size, normalisation and class names from the model's options, its
sidecar (cemap export) or the command line; unreadable files skipped; NaN models refused before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from cemap.models import ModelInputs
from cemap.models.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from cemap.models.sidecar import sidecar_path

from cli_helpers import one_line_error, run_cli


@pytest.fixture(scope="module")
def net64():
    """A two-class ResNet-18 as if trained at 64 px (random weights, saved as a plain state dict)."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=2).eval()


@pytest.fixture
def weights(net64, tmp_path):
    path = tmp_path / "net64.pt"
    torch.save(net64.state_dict(), path)
    return path


@pytest.fixture
def images(tmp_path):
    """A 64 x 64 image (the model's own input size), a 90 x 70 one, and a truncated PNG."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(folder / "a64.png")
    Image.fromarray((rng.random((90, 70, 3)) * 255).astype(np.uint8)).save(folder / "b90x70.png")
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (folder / "c_truncated.png").write_bytes(data[: len(data) // 2])
    return folder


def own_probabilities(net, path) -> torch.Tensor:
    """The network on its own 64-px input, normalised as it was trained (ImageNet statistics)."""
    x = torch.from_numpy(np.asarray(Image.open(path), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.inference_mode():
        return torch.softmax(net(x), -1)[0]


def test_predict_on_a_64px_model_gives_the_models_own_probabilities(net64, weights, images, tmp_path, capsys):
    out = tmp_path / "p.json"
    code, _, _ = run_cli(
        ["predict", images / "a64.png", "-m", "resnet18", "-w", weights, "--size", "64", "--out", out], capsys
    )
    assert code == 0
    result = json.loads(out.read_text())
    got = {c["class"]: c["probability"] for c in result["predictions"][0]["top"]}
    want = own_probabilities(net64, images / "a64.png")
    assert abs(got["class_0"] - float(want[0])) < 1e-6 and abs(got["class_1"] - float(want[1])) < 1e-6
    pre = result["preprocessing"]
    assert pre["input_shape"] == [3, 64, 64] and pre["normalize"] == "imagenet"
    assert pre["sources"]["size"] == "--size" and result["predictions"][0]["original_size"] == [64, 64]


def test_exported_sidecar_gives_size_classes_and_architecture_once(net64, weights, images, tmp_path, capsys):
    code, stdout, _ = run_cli(
        ["export", "-m", "resnet18", "-w", weights, "--size", "64", "--class-names", "cat,dog"], capsys
    )
    assert code == 0 and "3 x 64 x 64" in stdout
    side = json.loads(sidecar_path(weights).read_text())
    assert side["architecture"] == "resnet18" and side["input_shape"] == [3, 64, 64]
    assert side["class_names"] == ["cat", "dog"] and side["mean"] == list(IMAGENET_MEAN)
    out = tmp_path / "p.json"
    code, _, _ = run_cli(["predict", images / "a64.png", "-w", weights, "--out", out], capsys)  # no --model
    result = json.loads(out.read_text())
    got = {c["class"]: c["probability"] for c in result["predictions"][0]["top"]}
    assert code == 0 and abs(got["dog"] - float(own_probabilities(net64, images / "a64.png")[1])) < 1e-6
    assert result["preprocessing"]["sources"] == {"size": "sidecar", "normalize": "sidecar", "class_names": "sidecar"}
    code, _, err = run_cli(["predict", images / "a64.png", "-m", "resnet50", "-w", weights], capsys)
    one_line_error(code, err, "--model resnet50", "resnet18")


def test_a_size_conflict_is_named(weights, images, tmp_path, capsys):
    args = ["predict", images / "a64.png", "-m", "resnet18", "-w", weights]
    code, _, err = run_cli([*args, "--size", "64", "--model-opt", "size=32"], capsys)
    one_line_error(code, err, "--size 64 but --model-opt size=32")
    run_cli(["export", "-m", "resnet18", "-w", weights, "--size", "64"], capsys)
    code, _, err = run_cli([*args, "--size", "32"], capsys)  # an explicit option beats the sidecar, with a warning
    assert code == 0 and err.strip().splitlines() == [f"warning: --size 32 overrides the 64 px in {weights}.cemap.json"]


def test_run_warns_where_an_option_overrides_the_sidecar(weights, capsys):
    from cemap.commands.run import _warn_sidecar_overrides

    run_cli(["export", "-m", "resnet18", "-w", weights, "--size", "64"], capsys)
    _warn_sidecar_overrides("resnet18", {"weights": str(weights)}, ModelInputs(size=32))
    assert capsys.readouterr().err.strip().splitlines() == [
        f"warning: --size 32 overrides the 64 px in {weights}.cemap.json"
    ]
    _warn_sidecar_overrides("resnet18", {"weights": str(weights)}, ModelInputs(size=64))  # agrees: no warning
    assert capsys.readouterr().err == ""


def test_run_data_follow_the_model_and_a_given_mismatch_is_named(weights, tmp_path, capsys):
    from cemap.commands.model_options import data_follow_model

    assert data_follow_model("imagefolder", {}, "resnet18", {"weights": str(weights)}, ModelInputs(size=64)) == {
        "size": 64
    }
    assert data_follow_model("imagefolder", {}, "cxr-cnn", {"size": 64}, ModelInputs()) == {"size": 64}
    assert data_follow_model("imagefolder", {}, "resnet18", {}, ModelInputs()) == {}  # 224 both: nothing added
    root = tmp_path / "folder"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(root / c / "x.png")
    out = tmp_path / "run"
    code, _, err = run_cli(
        [
            "run",
            "--dataset",
            "imagefolder",
            "--data-opt",
            f"root={root}",
            "--data-opt",
            "size=128",
            "--model",
            "resnet18",
            "--model-opt",
            f"weights={weights}",
            "--size",
            "64",
            "--out",
            out,
        ],
        capsys,
    )
    one_line_error(code, err, "model expects 64 px, data are 128 px")
    assert not out.exists()


def test_nan_model_is_exit_2_before_anything_is_written(net64, images, tmp_path, capsys):
    state = net64.state_dict()
    state["fc.weight"] = torch.full_like(state["fc.weight"], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    pred = tmp_path / "sub" / "p.json"
    code, stdout, err = run_cli(["predict", images, "-m", "resnet18", "-w", path, "--size", "64", "-o", pred], capsys)
    one_line_error(code, err, "NaN")
    assert stdout == "" and not (tmp_path / "sub").exists()
    out = tmp_path / "explained"
    code, _, err = run_cli(["explain", images, "-m", "resnet18", "-w", path, "--size", "64", "-o", out], capsys)
    one_line_error(code, err, "NaN")
    assert not out.exists()


def test_class_names_by_list_and_by_file_are_checked_against_the_outputs(weights, images, tmp_path, capsys):
    args = ["predict", images / "a64.png", "-m", "resnet18", "-w", weights, "--size", "64", "--top", "2"]
    code, stdout, _ = run_cli([*args, "--class-names", "cat,dog"], capsys)
    assert code == 0 and "cat" in stdout and "dog" in stdout
    names = tmp_path / "classes.txt"
    names.write_text("tabby\n\nbeagle\n")
    code, stdout, _ = run_cli([*args, "--class-names", f"@{names}"], capsys)
    assert code == 0 and "tabby" in stdout and "beagle" in stdout
    code, _, err = run_cli([*args, "--class-names", "a,b,c"], capsys)
    one_line_error(code, err, "--class-names gives 3 class names", "2 outputs")
    code, _, err = run_cli([*args, "--class-names", f"@{tmp_path / 'none.txt'}"], capsys)
    one_line_error(code, err, "none.txt")


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--normalize", "zscore"], ["unknown --normalize 'zscore'"]),
        (["--normalize", "none", "--mean", "0.5"], ["--normalize none and --mean/--std"]),
        (["--mean", "0.5"], ["--mean and --std go together"]),
        (["--mean", "x", "--std", "1"], ["--mean 'x'"]),
        (["--mean", "0.1,0.2", "--std", "1"], ["--mean has 2 values for a 3-channel model"]),
        (["--size", "0"], ["--size 0 must be positive"]),
    ],
)
def test_impossible_preprocessing_is_one_line(weights, images, extra, words, capsys):
    code, _, err = run_cli(["predict", images / "a64.png", "-m", "resnet18", "-w", weights, *extra], capsys)
    one_line_error(code, err, *words)


def test_normalize_none_and_custom_mean_are_applied_and_recorded(net64, weights, images, tmp_path, capsys):
    out = tmp_path / "p.json"
    args = ["predict", images / "a64.png", "-m", "resnet18", "-w", weights, "--size", "64", "-o", out]
    run_cli([*args, "--mean", "0.5", "--std", "0.25"], capsys)
    pre = json.loads(out.read_text())["preprocessing"]
    assert pre["normalize"] == "custom" and pre["mean"] == [0.5] and pre["sources"]["normalize"] == "--mean/--std"
    run_cli([*args, "--normalize", "none"], capsys)
    result = json.loads(out.read_text())
    x = torch.from_numpy(np.asarray(Image.open(images / "a64.png"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.inference_mode():
        want = torch.softmax(net64(x), -1)[0]
    got = {c["class"]: c["probability"] for c in result["predictions"][0]["top"]}
    assert result["preprocessing"]["normalize"] == "none" and abs(got["class_0"] - float(want[0])) < 1e-6


def test_unreadable_files_are_skipped_and_listed(weights, images, tmp_path, capsys):
    out = tmp_path / "p.json"
    code, stdout, err = run_cli(["predict", images, "-m", "resnet18", "-w", weights, "--size", "64", "-o", out], capsys)
    assert code == 0 and "c_truncated.png" not in stdout
    assert [ln for ln in err.splitlines() if ln.startswith("warning: skipped")][0].count("c_truncated.png") >= 1
    result = json.loads(out.read_text())
    assert [r["file"] for r in result["skipped"]] == [str(images / "c_truncated.png")]
    assert len(result["predictions"]) == 2
    code, _, err = run_cli(["predict", images / "c_truncated.png", "-m", "resnet18", "-w", weights], capsys)
    one_line_error(code, err, "none of 1 image file(s) could be read", "c_truncated.png")


def test_explain_skips_unreadable_files_and_reports_in_the_files_pixels(weights, images, tmp_path, capsys):
    out = tmp_path / "explained"
    code, _, err = run_cli(
        [
            "explain",
            images,
            "-m",
            "resnet18",
            "-w",
            weights,
            "--size",
            "64",
            "--class-names",
            "cat,dog",
            "--target",
            "dog",
            "--methods",
            "ce",
            "-o",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    assert "warning: skipped" in err and "c_truncated.png" in err
    summary = json.loads((out / "explain.json").read_text())
    assert summary["n_images"] == 2 and [r["file"] for r in summary["skipped"]] == [str(images / "c_truncated.png")]
    assert summary["preprocessing"]["input_shape"] == [3, 64, 64] and {r["target"] for r in summary["images"]} == {
        "dog"
    }
    row = json.loads((out / summary["images"][1]["json"]).read_text())
    assert row["original_size"] == [90, 70]
    y, x = row["maps"]["ce"]["peak_yx"]
    assert 0 <= y < 90 and 0 <= x < 70


def test_peak_coordinates_are_scaled_to_the_original_pixels():
    from cemap.studies.explain_files import _map_stats

    m = torch.zeros(64, 64)
    m[63, 0] = 1.0
    assert _map_stats(m, (640, 320))["peak_yx"] == [635, 2]  # the centre of map pixel (63, 0)
