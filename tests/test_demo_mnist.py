"""The MNIST demo stage meets the issue's quality bars and writes its outputs."""

import json
import subprocess
import sys

from cemap.report.draw import draw
from cemap.studies.context import StudyContext
from cemap.studies.overview import OverviewConfig, run_overview


def test_mnist_demo_quality_and_outputs(tmp_path, mnist_clf, mnist_ae):
    metrics = run_overview(StudyContext("mnist5k", tmp_path, draw=draw), OverviewConfig(n_images=4))
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["classifier"]["accuracy"] >= 0.97
    fid = saved["autoencoder"]["fidelity"]
    assert fid["agreement"] >= 0.99 and fid["mean_kl"] <= 0.02 and fid["n"] == 1000
    assert saved["split_method"] == "fx"
    assert len(saved["latent_profiles"]) == 4 and len(saved["latent_profiles"][0]) == 16
    assert set(metrics.figures) == {"ce_maps", "latent_profiles"}  # no boxes in MNIST: no samples figure
    for name in metrics.figures.values():
        assert (tmp_path / name).stat().st_size > 1000


def test_cli_unknown_dataset_is_one_line_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cemap", "demo", "--dataset", "nope", "--out", str(tmp_path), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown built-in dataset 'nope'" in lines[0] and "mnist5k" in lines[0]
