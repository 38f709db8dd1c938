"""The table ``cemap bench`` prints: one block per figure, each a ratio from the same run."""

from __future__ import annotations


def format_table(result: dict) -> str:
    """The readable summary printed by ``cemap bench`` (from bench.json's content)."""
    pgd = pgd_lines(result["pgd"])
    blocks = (map_lines(result), latent_lines(result), pgd, efficiency_lines(result), quality_lines(result))
    return "\n".join(line for block in blocks for line in block)


def map_lines(result: dict) -> list[str]:
    m, c, env = result["model"], result["ce_map"], result["environment"]
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
    return lines


def latent_lines(result: dict) -> list[str]:
    lat = result["latent_sweep"]
    lines = [f"latent_sweep ({lat['interventions']} at {lat['layer']})   s/image   vs reference"]
    for k in ("cemap_fp32", "cemap_bf16"):
        lines.append(f"  {k:<34}{lat['s_per_image'][k]:>8.3f}   {lat['speedup_vs_reference'][k]:5.2f}x")
    lines.append(f"  {'reference_fp32':<34}{lat['s_per_image']['reference_fp32']:>8.3f}")
    return lines


def pgd_lines(pgd: dict) -> list[str]:
    if "skipped" in pgd:
        return [f"pgd: {pgd['skipped']}"]
    lines = []
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
    return lines


def efficiency_lines(result: dict) -> list[str]:
    eff, lines = result["efficiency"], []
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
    return lines


def quality_lines(result: dict) -> list[str]:
    lines = []
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
    return lines
