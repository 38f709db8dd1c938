"""Unattended GPU check (issue 27): one run measures what cemap's GPU path is worth, everything into one folder.

Sections, most important first (each one's failure is recorded and the next one runs; late sections are skipped,
saying so, when the time budget is spent):

1. ``ce_maps``: DenseNet-121 (random weights, 14 sigmoid findings, 224 px, 7 x 7 cells of 32 px) dense and adaptive CE
   maps per second in fp32 and bf16, against Captum ``Occlusion`` and ``FeatureAblation`` at every
   ``perturbations_per_eval`` and both cuDNN search settings (the best counts); max |diff| against full passes with
   TF32 (PyTorch's cuDNN default) and without it; the plans the chunk planner measured.
2. ``cemap_run``: ``cemap run`` on synthcxr at 224 px with a one-channel DenseNet-121 (CE map, latent profile,
   predictions) in fp32 and bf16, and the projected time for all 112,120 ChestX-ray14 images; then two processes
   sharing the GPU (what torchrun on N GPUs would scale from).
3. ``bench``: ``cemap bench --device cuda --quick``: every anchor on this GPU in one run (PGD against torchattacks too).
4. ``crossover``: full passes (both layouts) and windows at several chunk sizes: where each way wins.
5. ``cuda_tests``: tests/test_cuda.py.
6. ``commands``: explain, evaluate, detect and demo with ``--device cuda`` on built-in data.
7. ``compile``: torch.compile of the network for fixed chunk shapes (recorded, not used by cemap unless it pays).
8. ``profile_run``: one fp32 ``cemap run`` under cProfile: where the wall time of a run goes (``profile_run.txt``).
9. ``run_stages``: one batch of ``cemap run``'s work, stage by stage with the GPU synchronised (predictions, CE map
   eager and compiled, latent profile), so the seconds per image of each stage add up to the run's.

Usage: python scripts/gpu_check.py --out-dir gpu_check_out [--budget 430] [--only ce_maps,bench]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NIH_IMAGES = 112_120  # ChestX-ray14
START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[gpu_check {time.perf_counter() - START:6.1f} s] {msg}", flush=True)


def elapsed() -> float:
    return time.perf_counter() - START


def timed(fn, device, repeats: int = 3) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up, the GPU synchronised around each."""
    import statistics

    from cemap.causal.planning import sync

    fn()
    sync(device)
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync(device)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def densenet(device: str, batch: int):
    import torch

    from cemap.models.registry import get_model

    torch.manual_seed(0)
    clf = get_model("chexnet", weights="random").to(device).eval()
    images = torch.rand(batch, *clf.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    return clf, images


def ce_maps(device: str, batch: int) -> dict:
    import torch

    from cemap.causal import CEMap
    from cemap.causal.adaptive import AdaptiveCEMap
    from cemap.studies.bench.references import captum_runs

    clf, images = densenet(device, batch)
    with torch.inference_mode():
        targets = clf.predict_proba(images).argmax(1)
    out = {
        "model": "chexnet (DenseNet-121, random weights)",
        "images": batch,
        "input": list(clf.input_shape),
        "tf32": {"cudnn": torch.backends.cudnn.allow_tf32, "matmul": torch.backends.cuda.matmul.allow_tf32},
    }
    runs = {
        "dense_fp32": CEMap(clf, precision="fp32"),
        "dense_bf16": CEMap(clf, precision="bf16"),
        "dense_fp32_compiled": CEMap(clf, precision="fp32", compiled=True),
        "dense_bf16_compiled": CEMap(clf, precision="bf16", compiled=True),
        "adaptive_bf16": AdaptiveCEMap(clf, precision="bf16"),
    }
    maps, seconds = {}, {}
    for name, explainer in runs.items():
        seconds[name] = timed(lambda e=explainer: e.attribute(images, targets), device) / batch
        maps[name] = explainer.attribute(images, targets)
        log(f"cemap {name:<28} {1 / seconds[name]:8.1f} maps/s")
    reference = CEMap(clf, precision="fp32", incremental=False, chunk_size=64)  # plain full passes, fixed chunks
    full = reference.attribute(images, targets)
    out["max_abs_diff_vs_full_passes_tf32"] = float((maps["dense_fp32"] - full).abs().max())
    out["compiled_max_abs_diff_vs_full_passes_tf32"] = float((maps["dense_fp32_compiled"] - full).abs().max())
    b = torch.backends.cudnn
    with b.flags(enabled=True, benchmark=b.benchmark, deterministic=b.deterministic, allow_tf32=False):
        strict = runs["dense_fp32"].attribute(images, targets)
        strict_full = reference.attribute(images, targets)
    out["max_abs_diff_vs_full_passes_no_tf32"] = float((strict - strict_full).abs().max())
    log(
        f"max |diff| vs full passes: {out['max_abs_diff_vs_full_passes_tf32']:.2e} (TF32), {out['max_abs_diff_vs_full_passes_no_tf32']:.2e} (no TF32)"
    )
    task = {
        "classifier": clf,
        "images": images,
        "targets": targets,
        "cell": runs["dense_fp32"].cell,
        "cells": runs["dense_fp32"].masks.shape[0],
        "repeats": 3,
        "warmup": 1,
    }
    captum = captum_runs(task)
    captum_s = {k: v["median_s"] / batch for k, v in captum.items() if not k.endswith("_map")}
    for k, v in captum_s.items():
        log(f"{k:<52} {1 / v:8.1f} maps/s")
    best = min(captum_s, key=captum_s.get)
    out["captum_max_abs_diff_vs_dense_fp32"] = float(
        (captum["captum_occlusion_ppe49_map"] - maps["dense_fp32"]).abs().max()
    )
    out["s_per_map"] = {**seconds, **captum_s}
    out["maps_per_s"] = {k: 1 / v for k, v in out["s_per_map"].items()}
    out["best_captum"] = best
    out["speedup_vs_best_captum"] = {k: captum_s[best] / v for k, v in seconds.items()}
    out["plans"] = runs["dense_fp32"].plans()
    log(
        f"best Captum: {best}; dense fp32 {out['speedup_vs_best_captum']['dense_fp32']:.2f}x, "
        f"dense bf16 {out['speedup_vs_best_captum']['dense_bf16']:.2f}x; compiled fp32 "
        f"{out['speedup_vs_best_captum']['dense_fp32_compiled']:.2f}x, bf16 {out['speedup_vs_best_captum']['dense_bf16_compiled']:.2f}x"
    )
    for plan in out["plans"]:
        log(
            f"plan {plan['name']} ({plan['source']}): "
            + ", ".join(f"{k} {1e3 * v:.3f} ms" for k, v in plan["seconds_per_image"].items())
        )
    return out


def run_command(
    images: int, device: str, precision: str, shard_size: int, workers: int, out_dir: Path, compiled: bool = False
) -> list[str]:
    """The ``cemap run`` arguments (script first) that cemap_run and profile_run both time: one place, one workload."""
    return [
        str(Path(__file__).with_name("gpu_check_run.py")),
        "run",
        "--dataset",
        "synthcxr",
        "--data-opt",
        "size=224",
        "--data-opt",
        f"n_test={images}",
        "--data-opt",
        "n_train=512",
        "--model",
        "densenet121-1ch-random",
        "--ae-images",
        "512",
        "--batch-size",
        "64",
        "--shard-size",
        str(shard_size),
        "--limit",
        str(images),
        "--device",
        device,
        "--workers",
        str(workers),
        "--precision",
        precision,
        "--out",
        str(out_dir),
        "--quiet",
        *(["--compile"] if compiled else []),
    ]


def cemap_run(
    device: str, images: int, precision: str, workdir: Path, processes: int = 1, compiled: bool = False
) -> dict:
    """``cemap run`` throughput (images/s of the CE map + latent profile + predictions) and the ChestX-ray14 projection;
    with ``processes`` > 1, that many runs share the GPU at once, each on its own folder (the combined rate is reported)."""
    procs, started = [], time.perf_counter()
    for rank in range(processes):
        out_dir = workdir / f"run-{precision}-{processes}p-{rank}{'-compiled' if compiled else ''}"
        cmd = [
            sys.executable,
            *run_command(images, device, precision, max(64, images // 4), max(2, 8 // processes), out_dir, compiled),
        ]
        procs.append(
            subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "CEMAP_QUIET": "1"}
            )
        )
    rates, outputs = [], []
    for p in procs:
        stdout, stderr = p.communicate()
        outputs.append({"returncode": p.returncode, "stdout_tail": stdout[-1500:], "stderr_tail": stderr[-1500:]})
        for line in stdout.splitlines():
            if " images/s" in line:
                rates.append(float(line.split(" at ")[1].split(" images/s")[0]))
    wall = time.perf_counter() - started
    result = {
        "precision": precision,
        "compiled": compiled,
        "processes": processes,
        "images_per_process": images,
        "wall_s": wall,
        "runs": outputs,
        "images_per_s_each": rates,
    }
    steady = [
        json.loads(m.read_text())["last_session"].get("steady_images_per_s")
        for m in (
            workdir / f"run-{precision}-{processes}p-{r}{'-compiled' if compiled else ''}" / "manifest.json"
            for r in range(processes)
        )
        if m.exists()
    ]
    if steady and all(steady):
        result["steady_images_per_s"] = sum(steady)  # shards after each process's first: no start-up costs
        result["steady_projected_chestxray14_min"] = NIH_IMAGES / result["steady_images_per_s"] / 60
        log(
            f"cemap run {precision}{' compiled' if compiled else ''}, steady: {result['steady_images_per_s']:.1f} images/s -> "
            f"ChestX-ray14 in {result['steady_projected_chestxray14_min']:.1f} min"
        )
    if len(rates) == processes:
        result["images_per_s"] = sum(rates)
        result["projected_chestxray14_min"] = NIH_IMAGES / result["images_per_s"] / 60
        log(
            f"cemap run {precision}, {processes} process(es): {result['images_per_s']:.1f} images/s -> ChestX-ray14 in "
            f"{result['projected_chestxray14_min']:.1f} min on this GPU"
        )
    else:
        log(f"cemap run {precision} gave no throughput: " + " | ".join(o["stderr_tail"][-300:] for o in outputs))
    return result


def bench(device: str, workdir: Path, timeout: int) -> dict:
    out = workdir / "bench_cuda.json"
    cmd = [
        sys.executable,
        "-m",
        "cemap",
        "bench",
        "--quick",
        "--no-quality",
        "--no-resnet50",
        "--images",
        "16",
        "--device",
        device,
        "--out",
        str(out),
    ]
    log("running: cemap " + " ".join(cmd[3:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "CEMAP_QUIET": "1"})
    print(proc.stdout[-5000:], proc.stderr[-2000:], sep="\n", flush=True)
    return (
        json.loads(out.read_text())
        if out.exists()
        else {"returncode": proc.returncode, "stderr_tail": proc.stderr[-2000:]}
    )


def cuda_tests(timeout: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py", "-rs", "-x"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    tail = (proc.stdout + proc.stderr)[-3000:]
    print(tail, flush=True)
    return {"returncode": proc.returncode, "tail": tail}


def commands(device: str, workdir: Path, timeout: int, names: list[str]) -> dict:
    """Each command that explains, evaluates or attacks, once with --device cuda on built-in data."""
    import numpy as np
    from PIL import Image

    from cemap.data.registry import get_dataset

    folder = workdir / "digits"
    folder.mkdir(exist_ok=True)
    test = get_dataset("mnist5k", split="test")
    for i in range(4):
        Image.fromarray((test[i].image[0].numpy() * 255).astype(np.uint8)).save(folder / f"digit{i}.png")
    argvs = {
        "explain": [
            "explain",
            str(folder),
            "--model",
            "mnist-cnn",
            "--methods",
            "ce,gradcam,integrated-gradients",
            "--out",
            str(workdir / "explain"),
        ],
        "evaluate": [
            "evaluate",
            "--dataset",
            "mnist5k",
            "--n-images",
            "16",
            "--methods",
            "ce,gradcam,integrated-gradients,random",
            "--out",
            str(workdir / "evaluate"),
        ],
        "detect": ["detect", "--dataset", "mnist5k", "--quick", "--out", str(workdir / "detect")],
        "demo": ["demo", "--dataset", "mnist5k", "--quick", "--out", str(workdir / "demo")],
    }
    out = {}
    for name in names:
        argv = argvs[name]
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "cemap", *argv, "--device", device],
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, "CEMAP_QUIET": "1"},
            )
            out[name] = {
                "returncode": proc.returncode,
                "wall_s": time.perf_counter() - start,
                "stdout_tail": proc.stdout[-1200:],
                "stderr_tail": proc.stderr[-1500:],
            }
        except subprocess.TimeoutExpired:
            out[name] = {"returncode": None, "wall_s": timeout, "stderr_tail": f"timed out after {timeout} s"}
        log(
            f"cemap {name} --device {device}: exit {out[name]['returncode']} in {out[name]['wall_s']:.0f} s"
            + ("" if out[name]["returncode"] == 0 else " :: " + out[name]["stderr_tail"][-400:].replace("\n", " | "))
        )
    return out


def crossover(device: str, batch: int) -> dict:
    """Seconds per masked image of full passes (NCHW, NHWC) and windows at several chunk sizes, fp32 and bf16."""
    import torch

    from cemap.causal import CEMap
    from cemap.causal.batching import autocast
    from cemap.causal.masks import fill_images
    from cemap.causal.planning import MaskPlan, measure

    clf, images = densenet(device, batch)
    ce = CEMap(clf)
    m = ce.masks.shape[0] + 1
    masks = torch.cat([ce.masks.new_zeros(1, *ce.masks.shape[1:]), ce.masks]).to(device)
    owner = torch.arange(batch, device=device).repeat_interleave(m)
    which = torch.arange(m, device=device).repeat(batch)
    fills = fill_images(images, "zero")
    out = {"images": batch, "masked_images": owner.numel()}
    for precision in ("fp32", "bf16"):
        ce = CEMap(clf, precision=precision)
        plans = [MaskPlan(c, False, cl, "sweep") for cl in (False, True) for c in (64, 128, 256, 512, 1024)]
        plans += [MaskPlan(c, True, False, "sweep") for c in (256, 1024, 4096)]
        with torch.inference_mode(), autocast(precision, device):
            seconds = measure(
                {p.name: (lambda p=p: ce._evaluate(p, images, owner, masks, which, fills)) for p in plans}, device
            )
        out[precision] = {k: v / owner.numel() for k, v in seconds.items()}
        best = min(out[precision], key=out[precision].get)
        log(
            f"crossover {precision}: best {best}; "
            + ", ".join(f"{k} {1e3 * v:.3f}" for k, v in out[precision].items())
            + " ms/masked image"
        )
    return out


def profile_run(device: str, images: int, workdir: Path, out_dir: Path, timeout: int) -> dict:
    """``cemap run`` (fp32) under cProfile; the top functions by cumulative and own time go to ``profile_run.txt``."""
    import pstats

    stats_file = workdir / "run.prof"
    cmd = [
        sys.executable,
        "-m",
        "cProfile",
        "-o",
        str(stats_file),
        *run_command(images, device, "fp32", images, 8, workdir / "run-profiled"),
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "CEMAP_QUIET": "1"})
    result = {
        "returncode": proc.returncode,
        "wall_s": time.perf_counter() - start,
        "stdout_tail": proc.stdout[-800:],
        "stderr_tail": proc.stderr[-1500:],
    }
    if stats_file.exists():
        import io

        text = io.StringIO()
        stats = pstats.Stats(str(stats_file), stream=text)
        stats.sort_stats("cumulative").print_stats(45)
        stats.sort_stats("tottime").print_stats(30)
        (out_dir / "profile_run.txt").write_text(text.getvalue())
        print(text.getvalue()[-9000:], flush=True)
    last = proc.stdout.strip().splitlines()[-1:] or ["no output"]
    log(f"profiled cemap run: exit {proc.returncode} in {result['wall_s']:.0f} s; {last[0]}")
    return result


def run_stages(device: str, batch: int = 64) -> dict:
    """Seconds per image of each stage of a ``cemap run`` batch (synthcxr-sized one-channel DenseNet-121 at 224 px)."""
    import torch

    from cemap.causal import CEMap
    from cemap.causal.autoencoder import AEConfig, fit_autoencoder
    from cemap.causal.latent import LatentCE
    from gpu_check_run import densenet121_1ch_random

    clf = densenet121_1ch_random().to(device).eval()
    images = torch.rand(batch, *clf.input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    fitted = fit_autoencoder(
        clf, images, layer=clf.default_layer, config=AEConfig(steps=10, batch_size=32), use_cache=False
    )
    out = {"images": batch, "layer": fitted.layer, "code_channels": fitted.autoencoder.code_channels}
    stages = {
        "predict": lambda: clf.predict_proba(images),
        "ce_map_fp32": lambda: CEMap(clf).attribute(images),
        "ce_map_fp32_compiled": lambda: CEMap(clf, compiled=True).attribute(images),
        "ce_map_bf16_compiled": lambda: CEMap(clf, precision="bf16", compiled=True).attribute(images),
        "latent_fp32": lambda: LatentCE(clf, fitted).attribute(images),
        "latent_bf16": lambda: LatentCE(clf, fitted, precision="bf16").attribute(images),
    }
    for name, fn in stages.items():
        with torch.inference_mode():
            out[name + "_ms_per_image"] = 1e3 * timed(fn, device, repeats=2) / batch
        log(f"stage {name:<24} {out[name + '_ms_per_image']:8.3f} ms per image")
    return out


def compile_trial(device: str, batch: int) -> dict:
    """torch.compile (default mode) of the whole network for fixed 512-image chunks: compile time and ms per masked image."""
    import torch

    from cemap.causal.batching import autocast
    from cemap.causal.planning import sync

    clf, images = densenet(device, 1)
    x = images.expand(512, *images.shape[1:]).contiguous()
    out = {}
    compiled = torch.compile(clf.model, dynamic=False)
    for precision in ("fp32", "bf16"):
        with torch.inference_mode(), autocast(precision, device):
            eager = timed(lambda: clf.model(x), device)
            start = time.perf_counter()
            compiled(x)
            sync(device)
            first = time.perf_counter() - start
            fast = timed(lambda: compiled(x), device)
        out[precision] = {
            "eager_ms_per_image": 1e3 * eager / 512,
            "compiled_ms_per_image": 1e3 * fast / 512,
            "compile_s": first,
            "speedup": eager / fast,
        }
        log(
            f"torch.compile {precision}: {out[precision]['speedup']:.2f}x eager at 512 images per pass (first call {first:.0f} s)"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out-dir", default="gpu_check_out")
    parser.add_argument("--batch", type=int, default=32, help="images per CE-map timing")
    parser.add_argument("--run-images", type=int, default=512, help="synthcxr images per cemap run")
    parser.add_argument(
        "--budget", type=float, default=430, help="seconds; a section that would start later is skipped"
    )
    parser.add_argument("--only", default="", help="comma-separated sections to run, in that order (default: all)")
    parser.add_argument("--commands", default="explain,evaluate,detect,demo", help="the commands section's commands")
    args = parser.parse_args()

    import torch

    if (
        args.device.startswith("cuda") and not torch.cuda.is_available()
    ):  # --device cpu: a smoke test of the script itself
        print(
            "gpu_check: no CUDA device is visible (torch.cuda.is_available() is False); nothing measured",
            file=sys.stderr,
        )
        return 2
    device = args.device
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "gpu": torch.cuda.get_device_name(device) if device.startswith("cuda") else "none (CPU smoke test)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "cpu_cores": os.cpu_count(),
    }
    sys.path.insert(0, str(Path(__file__).parent))  # gpu_check_run's model for run_stages
    log(f"{result['gpu']}, torch {result['torch']}, CUDA {result['cuda']}, cuDNN {result['cudnn']}")
    tmp = Path(tempfile.mkdtemp(prefix="cemap-gpu-check-"))
    sections = {
        "ce_maps": lambda: ce_maps(device, args.batch),
        "cemap_run": lambda: {
            "fp32": cemap_run(device, args.run_images, "fp32", tmp),
            "bf16": cemap_run(device, args.run_images, "bf16", tmp),
            "bf16_two_processes": cemap_run(device, args.run_images // 2, "bf16", tmp, processes=2),
        },
        "cemap_run_compiled": lambda: {"fp32": cemap_run(device, args.run_images, "fp32", tmp, compiled=True)},
        "profile_run": lambda: profile_run(device, args.run_images // 2, tmp, out_dir, timeout=150),
        "bench": lambda: bench(device, tmp, timeout=150),
        "crossover": lambda: crossover(device, args.batch),
        "cuda_tests": lambda: cuda_tests(timeout=120),
        "commands": lambda: commands(device, tmp, timeout=100, names=args.commands.split(",")),
        "compile": lambda: compile_trial(device, args.batch),
        "run_stages": lambda: run_stages(device),
    }
    only = [s for s in args.only.split(",") if s]
    unknown = set(only) - set(sections)
    if unknown:
        print(f"gpu_check: unknown sections {sorted(unknown)}; sections: {', '.join(sections)}", file=sys.stderr)
        return 2
    for name in only or list(sections):  # in the order given
        section = sections[name]
        if elapsed() > args.budget:
            result[name] = {"skipped": f"time budget of {args.budget:.0f} s spent"}
            log(f"{name} skipped: budget spent")
            continue
        log(f"--- {name}")
        start = time.perf_counter()
        try:
            result[name] = section()
        except Exception as exc:  # noqa: BLE001 - recorded, and the next section runs
            import traceback

            traceback.print_exc()
            result[name] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{name} failed: {type(exc).__name__}: {exc}")
        result.setdefault("section_s", {})[name] = time.perf_counter() - start
        (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    result["wall_s"] = elapsed()
    (out_dir / "gpu_check.json").write_text(json.dumps(result, indent=2, default=str))
    log(f"done in {result['wall_s']:.0f} s; JSON in {(out_dir / 'gpu_check.json').resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
