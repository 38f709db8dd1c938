"""`cemap detect` and `cemap evaluate` on the user's own image folder (train/ and test/, one subfolder per class) with a
named model: the images follow the model's input shape, and data without boxes gets the box-free metrics only."""

import json

import numpy as np
import pytest
from PIL import Image

from cli_helpers import run_cli


@pytest.fixture(scope="module")
def digit_folder(tmp_path_factory, mnist_test):
    """80 train and 80 test digits of mnist5k's test split as PNG files under root/<split>/<digit>/."""
    root = tmp_path_factory.mktemp("digits")
    for split, indices in (("train", range(0, 80)), ("test", range(80, 160))):
        for i in indices:
            sample = mnist_test[i]
            folder = root / split / mnist_test.class_names[int(sample.labels)]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = (sample.image[0].numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_detect_runs_on_an_image_folder_with_a_named_model(tmp_path, capsys, digit_folder, mnist_clf):
    out = tmp_path / "detect"
    code, stdout, err = run_cli(
        ["detect", "--dataset", "imagefolder", "--data-opt", f"root={digit_folder}", "--model", "mnist-cnn"]
        + ["--quick", "--quiet", "--out", out],
        capsys,
    )
    assert code == 0, err
    result = json.loads((out / "detection.json").read_text())
    assert result["dataset"] == "imagefolder" and result["model"] == "mnist-cnn" and result["transfer"]


def test_evaluate_runs_on_an_image_folder_with_box_free_metrics(tmp_path, capsys, digit_folder, mnist_clf):
    out = tmp_path / "evaluate"
    code, stdout, err = run_cli(
        ["evaluate", "--dataset", "imagefolder", "--data-opt", f"root={digit_folder}", "--model", "mnist-cnn"]
        + ["--methods", "ce,random", "--n-images", "6", "--n-robust", "2", "--quiet", "--out", out],
        capsys,
    )
    assert code == 0, err
    rows = json.loads((out / "evaluation.json").read_text())["rows"]
    assert {r["method"] for r in rows} == {"ce", "random"}
    assert all("deletion_auc" in r and "pointing_game" not in r for r in rows)


def test_a_data_option_the_dataset_does_not_take_is_one_line_before_any_work(tmp_path, capsys):
    code, _, err = run_cli(
        ["detect", "--dataset", "mnist5k", "--data-opt", "colour=red", "--quick", "--out", tmp_path / "d"], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1 and "colour" in err
    assert not (tmp_path / "d").exists()
