"""Dataset-scale runs: killed and resumed, with a corrupt image, and under torchrun - always the same results.

The data is an image folder of real MNIST digits written as PNGs (plus one corrupt PNG), so the
subprocesses start fast; the autoencoder trains on the folder's own train split.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cemap.errors import CemapError
from cemap.runner import RunConfig, load_run, run_dataset, run_summary
from cemap.runner.engine import STOP_AFTER_SHARDS

N_TEST, N_TRAIN, SHARD, BATCH = 24, 160, 4, 3
N_ITEMS = N_TEST + 1  # plus the corrupt PNG
N_SHARDS = -(-N_ITEMS // SHARD)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "CEMAP_QUIET": "1"}


def _write_png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_test) -> Path:
    """root/{train,test}/<digit>/*.png from disjoint mnist5k test images, and test/<digit>/broken.png."""
    root = tmp_path_factory.mktemp("digits")
    for split, first, n in (("test", 0, N_TEST), ("train", N_TEST, N_TRAIN)):
        for d in range(10):
            (root / split / str(d)).mkdir(parents=True)
        for i in range(first, first + n):
            s = mnist_test[i]
            _write_png(root / split / str(int(s.labels)) / f"img{i:04d}.png", s.image[0].numpy())
    (root / "test" / "5" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"truncated, not an image")
    return root


def run_options(root: Path) -> list[str]:
    return [
        "--dataset",
        "imagefolder",
        "--model",
        "mnist-cnn",
        "--data-opt",
        f"root={root}",
        "--data-opt",
        "channels=1",
        "--data-opt",
        "size=28",
        "--shard-size",
        str(SHARD),
        "--batch-size",
        str(BATCH),
        "--threads",
        "1",
        "--quiet",
    ]


def cemap_run(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "cemap", "run", *run_options(root), "--out", str(out), *extra]


def check(cmd: list[str]) -> None:
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, digits):
    """An uninterrupted single-process run: the results every other way of running must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    check(cemap_run(digits, out))
    return load_run(out)


def assert_same_results(run, expected) -> None:
    got = list(run.results(maps=run.map_names))
    want = list(expected.results(maps=expected.map_names))
    indices = [r.index for r in got]
    assert indices == sorted(set(indices)), "duplicate or unordered rows"
    assert len(got) == len(want) == len(run) == len(expected)
    assert run.map_names == expected.map_names and run.columns == expected.columns
    for g, w in zip(got, want):
        assert g.row.keys() == w.row.keys()
        for name in g.row:
            assert np.array_equal(np.asarray(g.row[name]), np.asarray(w.row[name])), (g.index, name)
        for name in g.maps:
            assert np.array_equal(g.maps[name], w.maps[name]), (g.index, name)
    assert run.errors() == expected.errors()


def test_corrupt_png_is_recorded_and_every_other_image_has_its_row(reference, digits):
    errors = reference.errors()
    assert len(errors) == 1 and "broken.png" in errors[0]["reason"]
    ids = [r["id"] for r in reference.rows(["id"])]
    assert sorted(ids) == sorted(str(p.relative_to(digits / "test")) for p in (digits / "test").rglob("img*.png"))
    summary = run_summary(reference.folder)
    assert (summary["n_images"], summary["n_rows"], summary["n_errors"], summary["n_shards"]) == (
        N_ITEMS,
        N_TEST,
        1,
        N_SHARDS,
    )


def test_reader_gives_rows_and_maps_that_fit_the_model(reference):
    probs = reference.column("probs")
    assert probs.shape == (N_TEST, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.array_equal(reference.column("target"), probs.argmax(1))
    assert (reference.column("label") == probs.argmax(1)).mean() > 0.8  # mnist-cnn reads the PNGs correctly
    assert reference.column("latent_ce").shape == (N_TEST, 16)
    first = next(reference.results())
    assert first.maps["ce"].shape == (28, 28) and first.maps["ce"].dtype == np.float32
    assert reference.summary()["autoencoder_fidelity"]["n"] > 0
    with pytest.raises(CemapError, match="no map"):
        next(reference.results(maps=["gradcam"]))


def test_run_killed_mid_way_and_resumed_matches_uninterrupted_run(tmp_path, digits, reference):
    out = tmp_path / "run"
    # killed (SIGKILL) right after its second shard is committed, on any machine however fast
    proc = subprocess.run(cemap_run(digits, out), env={**ENV, STOP_AFTER_SHARDS: "2"}, capture_output=True, timeout=600)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    committed = sorted(p.name for p in (out / "shards").glob("shard-*.parquet"))
    assert committed == ["shard-000000.parquet", "shard-000001.parquet"]
    last = N_SHARDS - 1
    with pytest.raises(CemapError, match="no finished run"):
        load_run(out)
    # What a kill during a commit leaves behind: a temporary file, and maps whose table never landed.
    (out / "shards" / f"shard-{last:06d}.npz.tmp-99999").write_bytes(b"half")
    (out / "shards" / f"shard-{last:06d}.npz").write_bytes(b"stale")

    check(cemap_run(digits, out, "--resume"))
    assert not list(out.rglob("*.tmp-*"))
    run = load_run(out)
    assert 0 < run.manifest["last_session"]["images_processed"] < N_ITEMS
    assert_same_results(run, reference)


def test_torchrun_two_processes_match_one_process(tmp_path, digits, reference):
    out = tmp_path / "dist"
    torchrun = Path(sys.executable).parent / "torchrun"
    check([str(torchrun), "--standalone", "--nproc_per_node=2", *cemap_run(digits, out)[1:]])
    run = load_run(out)
    assert run.manifest["last_session"]["world_size"] == 2
    assert_same_results(run, reference)


def test_existing_run_needs_resume_and_the_same_settings(digits, reference):
    options = {"root": str(digits), "channels": 1, "size": 28}
    config = RunConfig(
        dataset="imagefolder", model="mnist-cnn", dataset_options=options, shard_size=SHARD, batch_size=BATCH
    )
    with pytest.raises(CemapError, match="already holds a run"):
        run_dataset(config, reference.folder)
    changed = RunConfig(
        dataset="imagefolder", model="mnist-cnn", dataset_options=options, shard_size=SHARD, batch_size=2
    )
    with pytest.raises(CemapError, match="different settings.*batch_size.*rm -r"):  # says what to delete
        run_dataset(changed, reference.folder, resume=True)


def test_a_failed_run_then_a_corrected_run_in_the_same_folder_succeeds(tmp_path, digits, reference, monkeypatch):
    import cemap.runner.engine as engine

    out = tmp_path / "run"
    options = {"root": str(digits), "channels": 1, "size": 28}

    def late_failure(*args, **kwargs):  # after config.json: a failure found while the autoencoder is prepared
        raise CemapError("none of 160 images of imagefolder could be read")

    with monkeypatch.context() as m:
        m.setattr(engine, "ensure_autoencoder", late_failure)
        failing = RunConfig(dataset="imagefolder", model="mnist-cnn", dataset_options=options, fill="max", limit=4)
        with pytest.raises(CemapError, match="could be read"):
            run_dataset(failing, out)
    assert (out / "config.json").exists() and not (out / ".lock").exists()
    corrected = RunConfig(
        dataset="imagefolder", model="mnist-cnn", dataset_options=options, shard_size=SHARD, batch_size=BATCH, limit=4
    )
    assert run_dataset(corrected, out)["n_rows"] == 4
    assert load_run(out).manifest["config"]["fill"] == "zero" and not (out / ".lock").exists()


def test_a_finished_run_leaves_no_lock_and_its_autoencoder_steps_follow_the_data(reference):
    assert not (reference.folder / ".lock").exists()
    assert reference.manifest["autoencoder"]["config"]["steps"] == 200  # 160 training images: not 800 steps


def test_baseline_maps_and_attacks_are_stored_per_image(tmp_path, digits):
    config = RunConfig(
        dataset="imagefolder",
        model="mnist-cnn",
        dataset_options={"root": str(digits), "channels": 1, "size": 28},
        methods=("gradcam",),
        attacks=("fgsm",),
        limit=5,
        shard_size=5,
        batch_size=5,
    )
    summary = run_dataset(config, tmp_path / "run")
    run = load_run(tmp_path / "run")
    assert summary["n_rows"] == 5 and run.map_names == ["ce", "gradcam", "ce@fgsm"]
    assert run.manifest["attacks"]["fgsm"]["eps"] == pytest.approx(8 / 255)
    for r in run.results(maps=run.map_names):
        assert all(m.shape == (28, 28) and np.isfinite(m).all() for m in r.maps.values())
        assert r.row["fgsm.linf"] <= 8 / 255 + 1e-6 and r.row["fgsm.latent_ce"].shape == (16,)
        assert isinstance(r.row["fgsm.success"], bool) and r.row["fgsm.probs"].shape == (10,)
    assert not np.array_equal(run.column("fgsm.probs"), run.column("probs"))


def test_compile_on_the_cpu_is_one_line_before_any_work(tmp_path, capsys):
    from cli_helpers import one_line_error, run_cli

    code, _, err = run_cli(
        ["run", "--dataset", "mnist5k", "--limit", "4", "--compile", "--out", tmp_path / "run", "--quiet"], capsys
    )
    one_line_error(code, err, "--compile", "GPU")
    assert not (tmp_path / "run" / "autoencoder.pt").exists()


def test_the_steady_rate_leaves_out_the_first_shard():
    from cemap.runner.engine import steady_rate

    assert steady_rate([(10, 5.0), (10, 1.0), (30, 2.0)]) == 40 / 3.0
    assert steady_rate([(10, 5.0)]) is None and steady_rate([]) is None


def test_a_finished_run_reports_its_steady_rate(reference):
    assert N_SHARDS >= 2 and reference.manifest["last_session"]["steady_images_per_s"] > 0
