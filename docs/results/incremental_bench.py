"""The acceptance figures of issue 20 from the bench's own functions, in one process, when a whole ``cemap bench`` does
not fit the time at hand (a shared, heavily loaded 2-core machine): DenseNet-121 (the bench model, random weights) and
ResNet-50 dense fp32 CE maps with windows vs full passes (interleaved), and the efficiency section (executed FLOPs
against the measured peak). Writes docs/results/bench_incremental.json.

Usage: CEMAP_QUIET=1 python docs/results/incremental_bench.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from cemap.causal import CEMap
from cemap.causal.effects import resolve_targets
from cemap.causal.batching import tune_allocator
from cemap.studies.bench import BenchConfig, bench_classifier, bench_images, timed
from cemap.studies.bench.sections import efficiency_section, incremental_section


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(Path(__file__).with_name("bench_incremental.json")))
    args = parser.parse_args()
    start = time.perf_counter()
    cfg = BenchConfig(images=1, repeats=args.repeats, warmup=1)
    tune_allocator()
    clf = bench_classifier(cfg)
    x = bench_images(clf, 1, cfg.seed)
    with torch.inference_mode():
        targets = resolve_targets(clf.predict_proba(x).float(), None)
    result = {
        "config": {"repeats": cfg.repeats, "warmup": cfg.warmup, "images": 1, "cell": "default (32 px at 224)"},
        "environment": {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "note": "shared 2-core machine under heavy load from other jobs: absolute times are inflated; ratios are "
            "interleaved",
        },
        "model": {"name": clf.name, "input_shape": list(clf.input_shape), "weights": "random"},
    }
    result["incremental"] = incremental_section(clf, x, targets, cfg)
    print(json.dumps(result["incremental"], indent=1), flush=True)
    dense = {p: CEMap(clf, precision=p) for p in ("fp32", "bf16")}
    seconds = {
        "dense_fp32": result["incremental"][clf.name]["s_per_image"]["incremental"],
        "dense_bf16": timed(lambda: dense["bf16"].attribute(x, targets), cfg.repeats, cfg.warmup)["median_s"],
    }
    ce_map = {
        "forward_passes_per_image": {"dense": dense["fp32"].forward_passes_per_image},
        "s_per_image": seconds,
        "dense_uses_windows": dense["fp32"].incremental is not None
        and dense["fp32"].incremental.worthwhile(dense["fp32"].masks),
    }
    result["ce_map"] = ce_map
    result["efficiency"] = efficiency_section(clf, x, targets, ce_map, dense, cfg)
    result["wall_s"] = time.perf_counter() - start
    Path(args.out).write_text(json.dumps(result, indent=2))
    for p in ("fp32", "bf16"):
        e = result["efficiency"][p]
        print(
            p,
            {k: e[k] for k in ("peak_gflops", "achieved_gflops", "effective_gflops", "fraction_of_peak", "above_peak")},
            e["peak"]["found_by"],
            flush=True,
        )


if __name__ == "__main__":
    main()
