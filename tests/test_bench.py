"""`cemap bench --quick` writes the JSON it promises, with sane values (no timing assertions)."""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from cemap.causal.batching import balanced_chunks
from cemap.cli import main
from cemap.studies.bench import BenchConfig, bench_classifier, rank_correlation, timed


def test_bench_quick_writes_every_section(tmp_path, capsys, monkeypatch, mnist_clf):
    import cemap.studies.bench.timing as timing

    monkeypatch.setattr(
        timing, "PEAK_GEMMS", ((256, 256, 256), (512, 128, 256))
    )  # small kernels: the structure is what is tested
    monkeypatch.setattr(timing, "PEAK_CONVS", ((2, 16, 16, 28, 3),))
    out = tmp_path / "bench.json"
    try:
        main(
            [
                "bench",
                "--quick",
                "--model",
                "mnist-cnn",
                "--repeats",
                "1",
                "--no-quality",
                "--threads",
                "1",
                "--out",
                str(out),
            ]
        )
    except SystemExit as exc:
        assert exc.code in (0, None)
    result = json.loads(out.read_text())
    assert {"config", "environment", "model", "ce_map", "latent_sweep", "pgd", "efficiency", "incremental"} <= set(
        result
    )
    assert result["model"]["name"] == "mnist-cnn" and result["model"]["input_shape"] == [1, 28, 28]
    env = result["environment"]
    assert env["threads"] == 1 and env["torch"] == torch.__version__
    if sys.platform == "linux":  # cemap tunes glibc for itself; the anchors ran in a fresh, untuned process
        assert env["cemap_allocator_tuned"] is True and env["anchors_allocator_tuned"] is False

    ce = result["ce_map"]
    captum = {
        "captum_occlusion_ppe1",
        "captum_occlusion_ppe7",
        "captum_occlusion_ppe49",
        "captum_feature_ablation_ppe49",
    }
    assert set(ce["s_per_image"]) == {"dense_fp32", "dense_bf16", "adaptive_fp32", "adaptive_bf16"} | captum
    assert ce["best_captum"] in captum and ce["gpu_plans"] == []  # the fastest Captum setting is the reference
    assert all(v > 0 and math.isfinite(v) for v in ce["s_per_image"].values())
    best = ce["s_per_image"][
        ce["best_captum"]
    ]  # each speed-up is the anchor's time over cemap's, as recorded (no timing claim)
    assert ce["speedup_vs_best_captum"] == pytest.approx(
        {k: best / ce["s_per_image"][k] for k in ce["speedup_vs_best_captum"]}
    )
    assert ce["forward_passes_per_image"]["dense"] == 50 > ce["forward_passes_per_image"]["adaptive"]
    assert ce["captum_max_abs_diff_vs_dense_fp32"] < 1e-5  # the same occlusion, computed two ways (cemap's on windows)
    assert ce["dense_uses_windows"] is True and "effective" in result["efficiency"]["note"]
    assert ce["bf16_max_abs_diff_vs_fp32"] < 0.1
    assert ce["adaptive_rank_correlation"]["fp32"] > 0  # the interpolated cells follow the dense map

    lat = result["latent_sweep"]
    assert lat["interventions"] == 16 and lat["max_abs_diff_vs_reference"]["fp32"] < 1e-5
    assert lat["speedup_vs_reference"] == pytest.approx(
        {k: lat["s_per_image"]["reference_fp32"] / lat["s_per_image"][k] for k in ("cemap_fp32", "cemap_bf16")}
    )

    pgd = result["pgd"]
    assert pgd["fp32_identical_to_torchattacks"] is True and pgd["fp32_fraction_differing"] == 0
    rates = pgd["success_rate"]
    assert rates["cemap_fp32"] == rates["torchattacks_fp32"]  # bit-identical attacks succeed on the same images
    prof = pgd["fp32_profile"]
    assert (
        prof["extra_forwards"] == 0 and prof["forward_s"] > 0 and prof["forward_backward_s"] > 0
    )  # softmax head from the clean image: steps only
    assert 0 < prof["share_in_steps"] and prof["share_in_extra_forwards"] == 0

    for precision in ("fp32", "bf16"):
        eff = result["efficiency"][precision]
        assert (
            eff["peak_gflops"] > 0 and eff["achieved_gflops"] > 0 and eff["effective_gflops"] >= eff["achieved_gflops"]
        )
        peak = eff["peak"]
        assert peak["gflops"] == max(t["gflops"] for t in peak["trials"]) == peak["found_by"]["gflops"]
        assert {t["kind"] for t in peak["trials"]} == {"gemm", "conv2d"} and "best of" in peak["method"]
        if eff["above_peak"]:
            assert eff["fraction_of_peak"] is None and "underestimated" in eff["flag"]
        else:
            assert math.isclose(eff["fraction_of_peak"], eff["achieved_gflops"] / eff["peak_gflops"])
    assert (
        0 < result["efficiency"]["executed_gflop_per_image"] < result["efficiency"]["dense_map_gflop_per_image"]
    )  # windows
    assert result["efficiency"]["forward_gflop_per_image"] > 0
    inc = result["incremental"]
    assert set(inc) == {"mnist-cnn", "resnet50"}
    for row in inc.values():
        times = row["s_per_image"]
        assert row["max_abs_diff_vs_full_passes"] <= 1e-5 and row["speedup_vs_full_passes"] == pytest.approx(
            times["full_passes"] / times["incremental"]
        )
    table = capsys.readouterr().out
    assert "ce_map" in table and "latent_sweep" in table and "efficiency" in table


def test_a_fraction_above_the_peak_is_flagged_not_reported():
    from cemap.studies.bench import fraction_of_peak

    assert fraction_of_peak(50.0, 100.0) == {"fraction_of_peak": 0.5, "above_peak": False}
    over = fraction_of_peak(139.0, 100.0)
    assert over["fraction_of_peak"] is None and over["above_peak"] and "underestimated" in over["flag"]


def test_bench_on_cuda_without_a_gpu_fails_with_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the no-GPU error cannot be shown here")
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--quick", "--device", "cuda"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no CUDA device" in err[0]


def test_timed_takes_the_median_of_its_repeats():
    calls = []
    t = timed(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and len(t["runs_s"]) == 5 and t["median_s"] == sorted(t["runs_s"])[2]


def test_rank_correlation_and_balanced_chunks():
    a = torch.tensor([[1.0, 2, 3, 4], [1, 2, 3, 4]])
    assert rank_correlation(a, torch.tensor([[10.0, 20, 30, 40], [4, 3, 2, 1]])) == [1.0, -1.0]
    sizes = [s.stop - s.start for s in balanced_chunks(50, 8)]
    assert sum(sizes) == 50 and max(sizes) <= 8 and max(sizes) - min(sizes) <= 1


def test_bench_builds_torchvision_architectures_with_the_weights_asked_for():
    clf = bench_classifier(BenchConfig(model="resnet18", weights="random"))
    assert clf.name == "resnet18" and clf.input_shape == (3, 224, 224)


def test_pgd_quality_compares_fp32_and_bf16_success_on_a_trained_model(monkeypatch, mnist_clf, mnist_test):
    import cemap.studies.bench.quality as quality

    batch = mnist_test.batch(range(24))
    monkeypatch.setattr(quality, "trained_cxr", lambda n, with_boxes: (mnist_clf, batch))
    monkeypatch.setattr(quality, "PGD_QUALITY_EPS", (0.02, 0.3))
    q = quality.pgd_quality(24, BenchConfig(pgd_steps=5))
    assert q["images"] == 24 and [row["eps"] for row in q["budgets"]] == [0.02, 0.3]
    small, large = q["budgets"]
    assert (
        small["success_rate"]["fp32"] < 0.5 < large["success_rate"]["fp32"]
    )  # partial success, then most: rates that can differ
    for row in q["budgets"]:
        rate = row["success_rate"]
        assert math.isclose(row["difference_points"], 100 * abs(rate["bf16"] - rate["fp32"]))
        assert (
            abs(rate["bf16"] - rate["fp32"]) <= 1 - row["per_image_agreement"] + 1e-9
        )  # rates differ only where outcomes do


@pytest.mark.slow
def test_bench_quality_sections_on_the_trained_cxr_cnn():
    from cemap.studies.bench.quality import adaptive_quality, pgd_quality

    cfg = BenchConfig.quick()
    adaptive = adaptive_quality(8, cfg)
    assert (
        adaptive["images"] == 8
        and adaptive["forward_passes_per_image"]["adaptive"] < adaptive["forward_passes_per_image"]["dense"]
    )
    assert (
        adaptive["pointing_game"]["adaptive"] >= adaptive["pointing_game"]["dense"] - 0.15
        and adaptive["rank_correlation"]["mean"] > 0.7
    )
    q = pgd_quality(32, cfg)
    rates = [row["success_rate"]["fp32"] for row in q["budgets"]]
    assert q["images"] == 32 and rates[0] < rates[-1] and rates[-1] > 0.5
