"""cemap's side of each figure of ``cemap bench``: CE maps, the latent sweep, PGD, efficiency and windows, timed beside
the anchors' results (:mod:`.references`) on the same inputs."""

from __future__ import annotations

import math
import statistics
import time

import torch

from ...causal.adaptive import AdaptiveCEMap
from ...causal.cemap_map import CEMap
from ...causal.latent import LatentCE
from ...models.classifier import Classifier
from .inputs import LATENT_K, BenchConfig
from .timing import executed_flops, forward_flops, fraction_of_peak, measured_peak, per_image, sync_all, timed


def pgd_success(classifier: Classifier, clean: torch.Tensor, adv: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Did the attack flip the prediction (softmax) or the attacked finding's decision (sigmoid)?"""
    with torch.inference_mode():
        za, zc = classifier(adv).float(), classifier(clean).float()
    if classifier.multilabel:
        return (za.gather(1, labels[:, None]) > 0).squeeze(1) != (zc.gather(1, labels[:, None]) > 0).squeeze(1)
    return za.argmax(1) != labels


def cell_values(maps: torch.Tensor, grid: AdaptiveCEMap) -> torch.Tensor:
    """B x cells: each map sampled at the centre of each cell of ``grid``."""
    ys = torch.tensor(grid.ys) + grid.cell // 2
    xs = torch.tensor(grid.xs) + grid.cell // 2
    return maps[:, ys][:, :, xs].flatten(1)


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Spearman's rho per row (B x cells each); 1.0 where both rows are constant."""
    from scipy.stats import spearmanr

    out = []
    for u, v in zip(a.tolist(), b.tolist()):
        rho = spearmanr(u, v)[0]
        out.append(1.0 if math.isnan(rho) and len(set(u)) == 1 and len(set(v)) == 1 else float(rho))
    return out


def ratio(anchor: float, ours: float) -> float:
    return anchor / ours if ours > 0 else float("inf")


def map_section(clf, x, targets, cfg, anchors) -> dict:
    n = x.shape[0]
    dense = {p: CEMap(clf, cell=cfg.cell, precision=p) for p in ("fp32", "bf16")}
    cell = dense["fp32"].cell
    adaptive = {p: AdaptiveCEMap(clf, cell=cell, refine=cfg.adaptive_refine, precision=p) for p in ("fp32", "bf16")}
    t, maps = {}, {}
    for p in ("fp32", "bf16"):
        t[f"dense_{p}"] = timed(lambda p=p: dense[p].attribute(x, targets), cfg.repeats, cfg.warmup)
        maps[f"dense_{p}"] = dense[p].attribute(x, targets)
        t[f"adaptive_{p}"] = timed(lambda p=p: adaptive[p].attribute(x, targets), cfg.repeats, cfg.warmup)
        maps[f"adaptive_{p}"] = adaptive[p].attribute(x, targets)
    captum = {k: v for k, v in anchors["captum"].items() if not k.endswith("_map")}
    captum_s = {k: per_image(v, n) for k, v in captum.items()}
    best_name = min(captum_s, key=captum_s.get)
    best = captum_s[best_name]
    reference = anchors["captum"]["captum_occlusion_ppe1_map"].cpu()
    section = {
        "grid": list(adaptive["fp32"].grid),
        "cell": cell,
        "images": n,
        # windows of the local layers instead of full passes (cemap.causal.incremental): cxr-cnn, VGG, DenseNet, ResNet
        "dense_uses_windows": dense["fp32"].incremental is not None
        and dense["fp32"].incremental.worthwhile(dense["fp32"].masks),
        "forward_passes_per_image": {
            "dense": dense["fp32"].forward_passes_per_image,
            "adaptive": adaptive["fp32"].forward_passes_per_image,
        },
        "s_per_image": {**{k: per_image(v, n) for k, v in t.items()}, **captum_s},
        "cpu_s_per_image": {
            **{k: v["cpu_median_s"] / n for k, v in t.items()},
            **{k: v["cpu_median_s"] / n for k, v in captum.items()},
        },
        "best_captum": best_name,
        "speedup_vs_best_captum": {k: ratio(best, per_image(v, n)) for k, v in t.items()},
        "bf16_max_abs_diff_vs_fp32": float((maps["dense_bf16"] - maps["dense_fp32"]).abs().max()),
        "captum_max_abs_diff_vs_dense_fp32": float((reference - maps["dense_fp32"].cpu()).abs().max()),
        "gpu_plans": dense["fp32"].plans() if torch.device(cfg.device).type == "cuda" else [],
        "adaptive_rank_correlation": {
            p: statistics.mean(
                rank_correlation(
                    cell_values(maps[f"dense_{p}"], adaptive[p]), cell_values(maps[f"adaptive_{p}"], adaptive[p])
                )
            )
            for p in ("fp32", "bf16")
        },
    }
    return section, dense


def latent_section(clf, x, fitted, cfg, anchors) -> dict:
    n = x.shape[0]
    t, ece = {}, {}
    for p in ("fp32", "bf16"):
        latent = LatentCE(clf, fitted, value="zero", precision=p)
        t[p] = timed(lambda latent=latent: latent.attribute(x), cfg.repeats, cfg.warmup)
        ece[p] = latent.attribute(x)
    ref = per_image(anchors["latent_reference"], n)
    return {
        "layer": fitted.layer,
        "interventions": LATENT_K,
        "images": n,
        "s_per_image": {
            "cemap_fp32": per_image(t["fp32"], n),
            "cemap_bf16": per_image(t["bf16"], n),
            "reference_fp32": ref,
        },
        "speedup_vs_reference": {
            "cemap_fp32": ratio(ref, per_image(t["fp32"], n)),
            "cemap_bf16": ratio(ref, per_image(t["bf16"], n)),
        },
        "max_abs_diff_vs_reference": {
            p: float((ece[p].cpu() - anchors["latent_reference_ece"].cpu()).abs().max()) for p in ece
        },
    }


def pgd_section(clf, px, labels, cfg, anchors, eps: float, alpha: float) -> dict:
    try:
        from ...attacks import PGD
    except ImportError as exc:  # the attacks package is optional for a partial install
        return {"skipped": f"cemap.attacks.PGD unavailable ({exc})"}
    n = px.shape[0]
    t, adv, rate = {}, {}, {}
    for p in ("fp32", "bf16"):
        attack = PGD(
            clf, eps=eps, alpha=alpha, steps=cfg.pgd_steps, random_start=False, precision=p, loss="ce"
        )  # torchattacks' loss
        t[p] = timed(lambda attack=attack: attack(px, labels), cfg.repeats, cfg.warmup)
        result = attack(px, labels)
        adv[p], rate[p] = result.adversarial, result.success_rate
    profile = pgd_profile(
        PGD(clf, eps=eps, alpha=alpha, steps=cfg.pgd_steps, random_start=False, loss="ce"), px, labels, t["fp32"], cfg
    )
    ta = {p: anchors[f"torchattacks_{p}_adv"] for p in ("fp32", "bf16")}
    ta_rate = {p: float(pgd_success(clf, px, ta[p], labels).float().mean()) for p in ta}
    ta_time = {p: per_image(anchors[f"torchattacks_{p}"], n) for p in ta}
    return {
        "batch": n,
        "eps": eps,
        "alpha": alpha,
        "steps": cfg.pgd_steps,
        "random_start": False,
        "s_per_image": {
            "cemap_fp32": per_image(t["fp32"], n),
            "cemap_bf16": per_image(t["bf16"], n),
            "torchattacks_fp32": ta_time["fp32"],
            "torchattacks_bf16": ta_time["bf16"],
        },
        "speedup_vs_torchattacks_fp32": {p: ratio(ta_time["fp32"], per_image(t[p], n)) for p in t},
        "speedup_vs_torchattacks_same_precision": {p: ratio(ta_time[p], per_image(t[p], n)) for p in t},
        "success_rate": {
            "cemap_fp32": rate["fp32"],
            "cemap_bf16": rate["bf16"],
            "torchattacks_fp32": ta_rate["fp32"],
            "torchattacks_bf16": ta_rate["bf16"],
        },
        "fp32_identical_to_torchattacks": bool(torch.equal(adv["fp32"].cpu(), ta["fp32"].cpu())),
        "fp32_max_abs_diff_vs_torchattacks": float((adv["fp32"] - ta["fp32"]).abs().max()),
        # Sigmoid heads: torchattacks' cross-entropy over [0, z_t] equals cemap's BCE only up to rounding, which
        # flips the sign of near-zero gradient entries over the steps; softmax heads share the loss exactly.
        "fp32_fraction_differing": float((adv["fp32"] != ta["fp32"]).float().mean()),
        "fp32_profile": profile,
    }


def pgd_profile(attack, images: torch.Tensor, labels: torch.Tensor, total: dict, cfg: BenchConfig) -> dict:
    """Where cemap's fp32 PGD time goes: ``steps`` forward+backward passes (all a plain loop such as torchattacks
    runs) and any forward around them (a sigmoid head's clean decision when not read off the first step). Success is
    judged later, on first access to ``result.success``, by one more forward (``forward_s``), outside the timing as
    for torchattacks, whose success rate the bench judges by the same forward."""
    with torch.no_grad():
        original = attack.decisions(attack.logits(images), labels) if attack.classifier.multilabel else None
        forward = timed(lambda: attack.logits(images), cfg.repeats, cfg.warmup)["median_s"]
    step = timed(lambda: attack.gradient(images, labels, None, original), cfg.repeats, cfg.warmup)["median_s"]
    total = total["median_s"]
    extra = 1 if attack.classifier.multilabel and not attack.starts_at_clean() else 0
    return {
        "forward_s": forward,
        "forward_backward_s": step,
        "extra_forwards": extra,
        "attack_s": total,
        "share_in_steps": attack.steps * step / total,
        "share_in_extra_forwards": extra * forward / total,
        "note": "the steps are a plain loop's whole cost; with bit-identical outputs both sides do the same arithmetic",
    }


def efficiency_section(clf, x, targets, ce_map: dict, dense: dict, cfg) -> dict:
    """Achieved GFLOP/s of the dense CE map (FLOPs it executes: windows count as windows) against the machine's
    measured peak (:func:`measured_peak`); a fraction above 100% is flagged instead of printed. The effective rate
    (full-pass FLOPs over the time taken) is reported beside it."""
    n = x.shape[0]
    flops = forward_flops(clf, x[0])
    passes = ce_map["forward_passes_per_image"]["dense"]
    with torch.inference_mode():
        executed = executed_flops(lambda: dense["fp32"].attribute(x, targets)) / n
    out = {
        "forward_gflop_per_image": flops / 1e9,
        "dense_map_gflop_per_image": flops * passes / 1e9,
        "executed_gflop_per_image": executed / 1e9,
    }
    for p, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = measured_peak(dtype, repeats=cfg.repeats, device=cfg.device)
        seconds = ce_map["s_per_image"][f"dense_{p}"]
        achieved = executed / seconds / 1e9
        out[p] = {
            "peak_gflops": peak["gflops"],
            "achieved_gflops": achieved,
            "effective_gflops": flops * passes / seconds / 1e9,
            **fraction_of_peak(achieved, peak["gflops"]),
            "peak": peak,
        }
    if ce_map["dense_uses_windows"]:
        out["note"] = (
            "the dense map recomputes only the windows each cell changes: achieved counts the FLOPs it executes, "
            "effective the FLOPs of the full forward passes it replaces (that one may exceed the peak)"
        )
    return out


def incremental_section(clf, x, targets, cfg) -> dict:
    """Dense fp32 CE maps with windows (cemap.causal.incremental) against the same maps by full passes, timed
    interleaved in this run on one image, for the bench model and ResNet-50 (random weights): speed-up and max
    |diff|."""
    from ...models.torchvision_models import torchvision_classifier

    models = [(clf.name, clf, x[:1], targets[:1])]
    if cfg.compare_resnet50 and clf.name != "resnet50":
        torch.manual_seed(cfg.seed)
        resnet = torchvision_classifier("resnet50", "random", size=clf.input_shape[-1]).to(cfg.device)
        if clf.input_shape[0] == 3:
            models.append(("resnet50", resnet, x[:1], None))
        else:
            models.append(
                (
                    "resnet50",
                    resnet,
                    torch.rand(1, *resnet.input_shape, generator=torch.Generator().manual_seed(cfg.seed)).to(
                        cfg.device
                    ),
                    None,
                )
            )
    out = {}
    for name, model, images, target in models:
        fast, slow = CEMap(model, cell=cfg.cell), CEMap(model, cell=cfg.cell, incremental=False)
        engine = fast.incremental
        uses = engine is not None and engine.worthwhile(fast.masks)
        runs: dict[str, list[float]] = {"incremental": [], "full_passes": []}
        for r in range(cfg.warmup + cfg.repeats):  # interleaved, so both see the same machine
            for key, cemap in (("incremental", fast), ("full_passes", slow)):
                t = time.perf_counter()
                cemap.attribute(images, target)
                sync_all()
                if r >= cfg.warmup:
                    runs[key].append(time.perf_counter() - t)
        diff = float((fast.attribute(images, target) - slow.attribute(images, target)).abs().max())
        inc, full = statistics.median(runs["incremental"]), statistics.median(runs["full_passes"])
        out[name] = {
            "uses_windows": uses,
            "estimated_cost_ratio": engine.cost_ratio(fast.masks) if engine is not None else 1.0,
            "local_nodes": len(engine.nodes) if engine is not None else 0,
            "grid_cells": fast.masks.shape[0],
            "s_per_image": {"incremental": inc, "full_passes": full},
            "runs_s": runs,
            "speedup_vs_full_passes": ratio(full, inc),
            "max_abs_diff_vs_full_passes": diff,
        }
    return out
