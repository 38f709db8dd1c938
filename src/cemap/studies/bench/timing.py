"""Timing and the machine's measured peak: medians after warm-ups, FLOPs executed, fractions of the peak."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch

from ...models.classifier import Classifier


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> dict:
    """Median wall and CPU seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    sync_all()
    wall, cpu = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        sync_all()
        wall.append(time.perf_counter() - w)
        cpu.append(time.process_time() - c)
    return {"median_s": statistics.median(wall), "cpu_median_s": statistics.median(cpu), "runs_s": wall}


def sync_all() -> None:
    """Wait for queued GPU work, so that timings cover it (a no-op without CUDA)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def per_image(t: dict, n: int) -> float:
    return t["median_s"] / n


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def gflops(flops: float, fn: Callable[[], object], repeats: int, device) -> float:
    """GFLOP/s of ``fn`` (``flops`` per call): median of ``repeats`` timed calls after one warm-up, synchronised on
    GPUs."""

    def run():
        fn()
        sync(device)

    return flops / timed(run, repeats, 1)["median_s"] / 1e9


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 5, device="cpu") -> float:
    """GFLOP/s of an n x n x n torch.mm in ``dtype`` (one GEMM shape; :func:`measured_peak` takes the best of many)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g).to(device, dtype), torch.randn(n, n, generator=g).to(device, dtype)
    return gflops(2 * n**3, lambda: torch.mm(a, b), repeats, device)


PEAK_GEMMS = (
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 4096, 1024),
    (3136, 256, 2304),
    (12544, 64, 576),
    (8192, 1024, 512),
)

PEAK_CONVS = (
    (8, 256, 256, 56, 3),
    (8, 128, 128, 56, 3),
    (32, 64, 64, 56, 3),
    (8, 512, 512, 28, 1),
)  # batch, in, out, size, kernel


def concurrent_gemms(m: int, n: int, k: int, dtype, workers: int, repeats: int) -> float:
    """GFLOP/s of ``workers`` single-threaded GEMMs at once, one per core (torch.mm releases the GIL)."""
    from concurrent.futures import ThreadPoolExecutor

    g = torch.Generator().manual_seed(1)
    pairs = [
        (torch.randn(m, k, generator=g).to(dtype), torch.randn(k, n, generator=g).to(dtype)) for _ in range(workers)
    ]
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return gflops(
                2 * m * n * k * workers, lambda: list(pool.map(lambda ab: torch.mm(*ab), pairs)), repeats, "cpu"
            )
    finally:
        torch.set_num_threads(saved)


def measured_peak(dtype: torch.dtype, repeats: int = 3, device="cpu") -> dict:
    """The machine's practical peak in ``dtype``: the best of several GEMM shapes (square, wide, and the tall-skinny
    im2col shapes of DenseNet's convolutions), two thread layouts on a CPU (one GEMM on every thread; one
    single-threaded
    GEMM per core at once) and a convolution micro-benchmark (channels-last, as the CE maps run). Returns the peak and
    every measurement it was chosen from, so a reader can see how it was found."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    trials = []
    for m, n, k in PEAK_GEMMS:
        a, b = torch.randn(m, k, generator=g).to(device, dtype), torch.randn(k, n, generator=g).to(device, dtype)
        trials.append(
            {
                "kind": "gemm",
                "shape": [m, n, k],
                "threads": torch.get_num_threads() if torch.device(device).type == "cpu" else None,
                "gflops": gflops(2 * m * n * k, lambda a=a, b=b: torch.mm(a, b), repeats, device),
            }
        )
        del a, b
    if torch.device(device).type == "cpu" and torch.get_num_threads() > 1:
        workers = torch.get_num_threads()
        for m, n, k in ((1024, 1024, 1024), (2048, 2048, 1024)):
            trials.append(
                {
                    "kind": "gemm",
                    "shape": [m, n, k],
                    "threads": f"{workers} x 1 (concurrent)",
                    "gflops": concurrent_gemms(m, n, k, dtype, workers, repeats),
                }
            )
    for b, cin, cout, size, k in PEAK_CONVS:
        x = torch.randn(b, cin, size, size, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(cout, cin, k, k, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
        flops = 2 * b * cout * size * size * cin * k * k
        with torch.inference_mode():
            trials.append(
                {
                    "kind": "conv2d",
                    "shape": [b, cin, cout, size, k],
                    "threads": torch.get_num_threads() if torch.device(device).type == "cpu" else None,
                    "gflops": gflops(flops, lambda x=x, w=w, k=k: F.conv2d(x, w, padding=k // 2), repeats, device),
                }
            )
    best = max(trials, key=lambda t: t["gflops"])
    return {
        "gflops": best["gflops"],
        "found_by": best,
        "trials": trials,
        "method": f"best of {len(trials)} timed kernels (median of {repeats} runs each after a warm-up): GEMM shapes, "
        "thread layouts, convolutions",
    }


def fraction_of_peak(achieved: float, peak: float) -> dict:
    """``achieved`` against ``peak``; a figure above 100% means the peak was underestimated, so it is flagged, never
    printed."""
    fraction = achieved / peak if peak > 0 else float("inf")
    if fraction > 1.0:
        return {
            "fraction_of_peak": None,
            "above_peak": True,
            "flag": f"achieved {achieved:.1f} GFLOP/s exceeds the measured peak {peak:.1f}: the peak is "
            "underestimated, no fraction reported",
        }
    return {"fraction_of_peak": fraction, "above_peak": False}


def executed_flops(fn: Callable[[], object]) -> int:
    """FLOPs that ``fn`` actually executes (convolutions and matmuls, as FlopCounterMode counts them): a windowed
    CE map counts its windows, not full passes."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def forward_flops(classifier: Classifier, image: torch.Tensor) -> int:
    """FLOPs of one forward pass on one image (convolutions and matmuls, as FlopCounterMode counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        classifier(image[None])
    return int(counter.get_total_flops())
