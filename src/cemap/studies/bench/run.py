"""``cemap bench`` end to end: every section on the same inputs, the result and its printed table."""

from __future__ import annotations

import platform
from dataclasses import asdict

import torch

from ...causal.batching import allocator_tuned, tune_allocator
from ...causal.cemap_map import CEMap
from ...causal.effects import resolve_targets
from ..results import BenchResult
from .inputs import DEFAULT_MODEL, BenchConfig, bench_autoencoder, bench_classifier, bench_images, latent_layer
from .quality import adaptive_quality, pgd_quality
from .references import anchors
from .sections import efficiency_section, incremental_section, latent_section, map_section, pgd_section




def run_bench(cfg: BenchConfig, quality: bool = True) -> BenchResult:
    """Every section of the benchmark (cemap's side runs with the tuned allocator)."""
    tune_allocator()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    clf = bench_classifier(cfg).to(cfg.device)
    x = bench_images(clf, max(cfg.images, cfg.pgd_batch), cfg.seed).to(cfg.device)
    px, x = x[: cfg.pgd_batch], x[: cfg.images]
    with torch.inference_mode():
        p = clf.predict_proba(x).float()
        plabels_logits = clf(px).float()
    targets = resolve_targets(p, None)
    pgd_labels = plabels_logits.argmax(1)
    pgd_original = (plabels_logits.gather(1, pgd_labels[:, None]).squeeze(1) > 0).float() if clf.multilabel else None
    layer = latent_layer(clf)
    fitted = bench_autoencoder(clf, layer, x[0], cfg.seed)
    probe = CEMap(clf, cell=cfg.cell)
    eps, alpha = 8 / 255, 2 / 255
    task = {
        "classifier": clf,
        "images": x,
        "targets": targets,
        "cell": probe.cell,
        "cells": probe.masks.shape[0],
        "ae": fitted.autoencoder,
        "layer": layer,
        "pgd_images": px,
        "pgd_labels": pgd_labels,
        "pgd_original": pgd_original,
        "eps": eps,
        "alpha": alpha,
        "steps": cfg.pgd_steps,
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
        "threads": torch.get_num_threads(),
    }
    measured = anchors(task, cfg.anchors_in_process)
    ce_map, dense = map_section(clf, x, targets, cfg, measured)
    return BenchResult(
        config=asdict(cfg),
        environment={
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "cemap_allocator_tuned": allocator_tuned(),
            "anchors_allocator_tuned": measured["allocator_tuned"],
            "anchors_in_process": cfg.anchors_in_process or cfg.device != "cpu",
            "device": cfg.device,
            "gpu": torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda") else None,
        },
        model={
            "name": clf.name,
            "input_shape": list(clf.input_shape),
            "classes": clf.num_classes,
            "head": clf.head,
            "weights": cfg.weights if cfg.model == DEFAULT_MODEL else "built-in",
        },
        ce_map=ce_map,
        latent_sweep=latent_section(clf, x, fitted, cfg, measured),
        pgd=pgd_section(clf, px, pgd_labels, cfg, measured, eps, alpha),
        incremental=incremental_section(clf, x, targets, cfg),
        efficiency=efficiency_section(clf, x, targets, ce_map, dense, cfg),
        adaptive_quality=adaptive_quality(cfg.quality_images, cfg) if quality else None,
        pgd_quality=pgd_quality(cfg.pgd_quality_images, cfg) if quality else None,
    )


def format_table(result: dict) -> str:
    """The readable summary printed by ``cemap bench``."""
    m, c, lat, pgd, eff = result["model"], result["ce_map"], result["latent_sweep"], result["pgd"], result["efficiency"]
    env = result["environment"]
    lines = [
        f"model {m['name']} {'x'.join(map(str, m['input_shape']))} ({m['classes']} {m['head']}), torch "
        f"{env['torch']}, {env['threads']} threads, "
        f"anchors {'in process' if env['anchors_in_process'] else 'in a fresh process'}",
        f"ce_map ({c['grid'][0]}x{c['grid'][1]} cells of {c['cell']} px)          s/image   vs best Captum",
    ]
    for k, v in c["speedup_vs_best_captum"].items():
        lines.append(f"  cemap {k:<28}{c['s_per_image'][k]:>8.3f}   {v:5.2f}x")
    for k in c["s_per_image"]:
        if k.startswith("captum"):
            lines.append(f"  {k:<34}{c['s_per_image'][k]:>8.3f}{'   (best)' if k == c['best_captum'] else ''}")
    lines.append(
        f"  passes/image dense {c['forward_passes_per_image']['dense']}, adaptive "
        f"{c['forward_passes_per_image']['adaptive']:.1f}; "
        f"adaptive rank corr {c['adaptive_rank_correlation']['fp32']:.3f}; bf16 max |diff| "
        f"{c['bf16_max_abs_diff_vs_fp32']:.2e}"
    )
    lines.append(f"latent_sweep ({lat['interventions']} at {lat['layer']})   s/image   vs reference")
    for k in ("cemap_fp32", "cemap_bf16"):
        lines.append(f"  {k:<34}{lat['s_per_image'][k]:>8.3f}   {lat['speedup_vs_reference'][k]:5.2f}x")
    lines.append(f"  {'reference_fp32':<34}{lat['s_per_image']['reference_fp32']:>8.3f}")
    if "skipped" in pgd:
        lines.append(f"pgd: {pgd['skipped']}")
    else:
        lines.append(
            f"pgd (eps {pgd['eps']:.4f}, {pgd['steps']} steps, batch {pgd['batch']})  s/image   vs torchattacks fp32  "
            " success"
        )
        for k in ("cemap_fp32", "cemap_bf16", "torchattacks_fp32", "torchattacks_bf16"):
            ratio = pgd["speedup_vs_torchattacks_fp32"].get(k.split("_")[1]) if k.startswith("cemap") else None
            lines.append(
                f"  {k:<34}{pgd['s_per_image'][k]:>8.3f}   "
                f"{'' if ratio is None else f'{ratio:5.2f}x':<21}{pgd['success_rate'][k]:.2f}"
            )
        lines.append(
            f"  fp32 identical to torchattacks: {pgd['fp32_identical_to_torchattacks']} (max |diff| "
            f"{pgd['fp32_max_abs_diff_vs_torchattacks']:.2e})"
        )
        prof = pgd["fp32_profile"]
        lines.append(
            f"  fp32 profile: {pgd['steps']} x forward+backward {prof['forward_backward_s']:.3f} s = "
            f"{100 * prof['share_in_steps']:.0f}%, "
            f"{prof['extra_forwards']} x forward {prof['forward_s']:.3f} s = "
            f"{100 * prof['share_in_extra_forwards']:.0f}% of {prof['attack_s']:.3f} s"
        )
    if "incremental" in result:
        lines.append("dense fp32 CE map with windows vs full passes (same run, interleaved, 1 image)")
        for name, r in result["incremental"].items():
            lines.append(
                f"  {name:<20} {r['s_per_image']['incremental']:>8.3f} s vs {r['s_per_image']['full_passes']:>8.3f} s "
                "= "
                f"{r['speedup_vs_full_passes']:.2f}x (estimated cost {r['estimated_cost_ratio']:.2f}), max |diff| "
                f"{r['max_abs_diff_vs_full_passes']:.1e}"
            )
    lines.append(
        "efficiency of the dense CE map (executed FLOPs; peak = best of GEMM shapes, thread layouts and convolutions)"
    )
    for p in ("fp32", "bf16"):
        e = eff[p]
        share = (
            f"{100 * e['fraction_of_peak']:.0f}%"
            if e.get("fraction_of_peak") is not None
            else "ABOVE THE MEASURED PEAK (peak underestimated; no fraction)"
        )
        lines.append(
            f"  {p}: {e['achieved_gflops']:.1f} GFLOP/s of {e['peak_gflops']:.1f} peak "
            f"({e['peak']['found_by']['kind']} "
            f"{'x'.join(map(str, e['peak']['found_by']['shape']))}) = {share}; effective {e['effective_gflops']:.1f}"
        )
    if "adaptive_quality" in result:
        q = result["adaptive_quality"]
        lines.append(
            f"adaptive vs dense on {q['dataset']} ({q['model']}, {q['images']} images): pointing game "
            f"{q['pointing_game']['adaptive']:.3f} vs {q['pointing_game']['dense']:.3f}, rank corr mean "
            f"{q['rank_correlation']['mean']:.3f}, "
            f"passes {q['forward_passes_per_image']['adaptive']:.1f} vs {q['forward_passes_per_image']['dense']}"
        )
        for row in q["tradeoff"]:
            lines.append(
                f"  refine {row['refine']:.2f}: passes {row['forward_passes_per_image']:.1f}, pointing game "
                f"{row['pointing_game']:.3f}, "
                f"rank corr {row['rank_correlation']['mean']:.3f}"
            )
    if "pgd_quality" in result:
        q = result["pgd_quality"]
        lines.append(
            f"pgd success fp32 vs bf16 on {q['dataset']} ({q['model']}, {q['images']} images, {q['steps']} steps)"
        )
        for row in q["budgets"]:
            lines.append(
                f"  eps {255 * row['eps']:g}/255: {row['success_rate']['fp32']:.3f} vs "
                f"{row['success_rate']['bf16']:.3f} "
                f"({row['difference_points']:.1f} points; same outcome for {100 * row['per_image_agreement']:.1f}% of "
                "images)"
            )
    return "\n".join(lines)
