"""``cemap bench`` end to end: every section on the same inputs, the result and its printed table."""

from __future__ import annotations

import platform
from dataclasses import asdict

import torch

from ...causal.batching import allocator_tuned, tune_allocator
from ...causal.cemap_map import CEMap
from ...causal.autoencoder import FittedAutoencoder
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
    task, fitted = bench_task(clf, cfg)
    x, px, targets, eps, alpha = task["images"], task["pgd_images"], task["targets"], task["eps"], task["alpha"]
    measured = anchors(task, cfg.anchors_in_process)
    ce_map, dense = map_section(clf, x, targets, cfg, measured)
    return BenchResult(
        config=asdict(cfg),
        environment=environment(cfg, measured),
        model={
            "name": clf.name,
            "input_shape": list(clf.input_shape),
            "classes": clf.num_classes,
            "head": clf.head,
            "weights": cfg.weights if cfg.model == DEFAULT_MODEL else "built-in",
        },
        ce_map=ce_map,
        latent_sweep=latent_section(clf, x, fitted, cfg, measured),
        pgd=pgd_section(clf, px, task["pgd_labels"], cfg, measured, eps, alpha),
        incremental=incremental_section(clf, x, targets, cfg),
        efficiency=efficiency_section(clf, x, targets, ce_map, dense, cfg),
        adaptive_quality=adaptive_quality(cfg.quality_images, cfg) if quality else None,
        pgd_quality=pgd_quality(cfg.pgd_quality_images, cfg) if quality else None,
    )


def bench_task(clf, cfg: BenchConfig) -> tuple[dict, FittedAutoencoder]:
    """(the inputs every figure shares - images, targets, PGD's batch and labels, the autoencoder, the budget - as the
    anchors receive them in a fresh process, plain values and tensors; the autoencoder with its split)."""
    x = bench_images(clf, max(cfg.images, cfg.pgd_batch), cfg.seed).to(cfg.device)
    px, x = x[: cfg.pgd_batch], x[: cfg.images]
    with torch.inference_mode():
        p = clf.predict_proba(x).float()
        plabels_logits = clf(px).float()
    pgd_labels = plabels_logits.argmax(1)
    pgd_original = (plabels_logits.gather(1, pgd_labels[:, None]).squeeze(1) > 0).float() if clf.multilabel else None
    layer = latent_layer(clf)
    fitted = bench_autoencoder(clf, layer, x[0], cfg.seed)
    probe = CEMap(clf, cell=cfg.cell)
    return {
        "classifier": clf,
        "images": x,
        "targets": resolve_targets(p, None),
        "cell": probe.cell,
        "cells": probe.masks.shape[0],
        "ae": fitted.autoencoder,
        "layer": layer,
        "pgd_images": px,
        "pgd_labels": pgd_labels,
        "pgd_original": pgd_original,
        "eps": 8 / 255,
        "alpha": 2 / 255,
        "steps": cfg.pgd_steps,
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
        "threads": torch.get_num_threads(),
    }, fitted


def environment(cfg: BenchConfig, measured: dict) -> dict:
    """Where the figures were measured: versions, threads, processor, allocator tuning, device."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cemap_allocator_tuned": allocator_tuned(),
        "anchors_allocator_tuned": measured["allocator_tuned"],
        "anchors_in_process": cfg.anchors_in_process or cfg.device != "cpu",
        "device": cfg.device,
        "gpu": torch.cuda.get_device_name(cfg.device) if cfg.device.startswith("cuda") else None,
    }
