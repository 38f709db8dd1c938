"""Unattended GPU check (issue 20): DenseNet-121 CE maps per second, ``cemap run`` throughput on synthcxr at 224 px,
and the projected time for all 112,120 ChestX-ray14 images. Run it through scripts/gpu_check.sh; about 5-8 minutes on
one recent GPU. Every figure is measured after a warm-up, with the GPU synchronised around each timing.

Usage: python scripts/gpu_check.py [--device cuda] [--out gpu_check.json] [--skip-run] [--skip-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NIH_IMAGES = 112_120  # ChestX-ray14


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed(fn, device, repeats: int = 3) -> float:
    import torch

    fn()
    torch.cuda.synchronize(device)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize(device)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def densenet_maps(device: str, batch: int) -> dict:
    """CE maps/s of DenseNet-121 (random weights, 14 sigmoid findings, 224 px, 7 x 7 cells of 32 px)."""
    import torch

    from cemap.causal import CEMap
    from cemap.causal.adaptive import AdaptiveCEMap
    from cemap.models.registry import get_model

    torch.manual_seed(0)
    clf = get_model("chexnet", weights="random").to(device).eval()
    images = torch.rand(batch, *clf.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    out = {"model": "chexnet (DenseNet-121, random weights)", "batch": batch, "input": list(clf.input_shape)}
    runs = {
        "dense_fp32": CEMap(clf, precision="fp32"),
        "dense_fp32_full_passes": CEMap(clf, precision="fp32", incremental=False),
        "dense_bf16": CEMap(clf, precision="bf16"),
        "dense_bf16_full_passes": CEMap(clf, precision="bf16", incremental=False),
        "adaptive_fp32": AdaptiveCEMap(clf, precision="fp32"),
        "adaptive_bf16": AdaptiveCEMap(clf, precision="bf16"),
    }
    maps = {}
    for name, explainer in runs.items():
        seconds = timed(lambda e=explainer: e.attribute(images), device)
        maps[name] = explainer.attribute(images)
        out[name] = {"maps_per_s": batch / seconds, "s_per_map": seconds / batch}
        windows = getattr(explainer, "incremental", None)
        extra = f" (windows: {windows is not None and windows.worthwhile(explainer.masks)})" if hasattr(explainer, "masks") else ""
        log(f"DenseNet-121 {name:<24} {batch / seconds:8.2f} CE maps/s{extra}")
    out["max_abs_diff_windows_vs_full_fp32"] = float((maps["dense_fp32"] - maps["dense_fp32_full_passes"]).abs().max())
    log(f"windows vs full passes (fp32): max |diff| {out['max_abs_diff_windows_vs_full_fp32']:.2e}")
    return out


def cemap_run(device: str, limit: int, workdir: Path) -> dict:
    """``cemap run`` on synthcxr at 224 px with a one-channel DenseNet-121 (CheXNet's architecture, random weights):
    images/s of the CE maps + latent CE profiles + predictions, and the projected time for ChestX-ray14."""
    out_dir = workdir / "run"
    cmd = [sys.executable, str(Path(__file__).with_name("gpu_check_run.py")), "run", "--dataset", "synthcxr",
           "--data-opt", "size=224", "--data-opt", f"n_test={limit}", "--data-opt", "n_train=512",
           "--model", "densenet121-1ch-random", "--ae-images", "512", "--batch-size", "64", "--shard-size", "512",
           "--limit", str(limit), "--device", device, "--workers", "4", "--out", str(out_dir), "--quiet"]
    log("running: " + " ".join(cmd[1:]))
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CEMAP_QUIET": "1"})
    wall = time.perf_counter() - start
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", flush=True)
    result = {"command": "cemap " + " ".join(cmd[2:]), "returncode": proc.returncode, "wall_s": wall, "images": limit}
    manifest = out_dir / "manifest.json"
    rate = None
    if manifest.exists():
        try:
            summary = json.loads(manifest.read_text())
            rate = (summary.get("summary") or summary).get("images_per_s")
        except (ValueError, AttributeError):
            rate = None
    for line in proc.stdout.splitlines():
        if "images/s" in line:
            try:
                rate = float(line.split(" at ")[1].split(" images/s")[0])
            except (IndexError, ValueError):
                pass
    result["images_per_s"] = rate
    if rate:
        hours = NIH_IMAGES / rate / 3600
        result["projected_chestxray14_h"] = hours
        log(f"cemap run on synthcxr 224 px: {rate:.2f} images/s -> all {NIH_IMAGES:,} ChestX-ray14 images in {hours:.2f} h on this GPU")
    else:
        log(f"cemap run gave no throughput (exit {proc.returncode})")
    return result


def bench_quick(device: str, workdir: Path, timeout: int) -> dict:
    """``cemap bench --device cuda --quick``: the same anchors (Captum, torchattacks, the latent loop) on this GPU."""
    out = workdir / "bench_cuda.json"
    cmd = [sys.executable, "-m", "cemap", "bench", "--quick", "--no-quality", "--no-resnet50", "--device", device, "--out", str(out)]
    log("running: cemap " + " ".join(cmd[3:]))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "CEMAP_QUIET": "1"})
    except subprocess.TimeoutExpired:
        log(f"cemap bench --device cuda did not finish within {timeout} s (skipped)")
        return {"skipped": f"timeout {timeout} s"}
    print(proc.stdout[-4000:], proc.stderr[-2000:], sep="\n", flush=True)
    return json.loads(out.read_text()) if out.exists() else {"returncode": proc.returncode}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", default="gpu_check.json")
    parser.add_argument("--batch", type=int, default=16, help="images per CE-map timing")
    parser.add_argument("--run-images", type=int, default=512, help="synthcxr images for the cemap run throughput")
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--skip-bench", action="store_true")
    parser.add_argument("--bench-timeout", type=int, default=180)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); nothing measured", file=sys.stderr)
        return 2
    device = args.device
    started = time.perf_counter()
    result = {"gpu": torch.cuda.get_device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    log(f"{result['gpu']}, torch {result['torch']}, CUDA {result['cuda']}")
    sections = [("densenet121_ce_maps", lambda tmp: densenet_maps(device, args.batch))]
    if not args.skip_run:
        sections.append(("cemap_run", lambda tmp: cemap_run(device, args.run_images, tmp)))
    if not args.skip_bench:
        sections.append(("bench_quick", lambda tmp: bench_quick(device, tmp, args.bench_timeout)))
    with tempfile.TemporaryDirectory(prefix="cemap-gpu-check-") as tmp:
        for name, section in sections:  # one failing section does not lose the others
            try:
                result[name] = section(Path(tmp))
            except Exception as exc:  # noqa: BLE001 - reported, and the check goes on
                log(f"{name} failed: {type(exc).__name__}: {exc}")
                result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    result["wall_s"] = time.perf_counter() - started
    Path(args.out).write_text(json.dumps(result, indent=2, default=str))
    m = result["densenet121_ce_maps"]
    if "error" in m:
        return 1
    log("summary: DenseNet-121 224 px CE maps/s: "
        f"fp32 {m['dense_fp32']['maps_per_s']:.2f}, bf16 {m['dense_bf16']['maps_per_s']:.2f}, adaptive bf16 {m['adaptive_bf16']['maps_per_s']:.2f}"
        + (f"; cemap run {result['cemap_run']['images_per_s']:.2f} images/s, ChestX-ray14 in {result['cemap_run']['projected_chestxray14_h']:.2f} h"
           if result.get("cemap_run", {}).get("images_per_s") else "")
        + f"; {result['wall_s']:.0f} s in all; JSON in {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
