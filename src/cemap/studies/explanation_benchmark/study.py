"""One run of the explanation benchmark v3: ``run_explanation_benchmark(ctx, config) -> BenchmarkResult``.

A run is one model at one size from one training seed: every method tuned on validation
images, then every method, floor and CE variant scored on ``n_images`` held-out images (ground
truth, localisation, CheXlocalize, ROAD under three imputers), the sanity tests on the first
``n_sanity`` pairs, and the verdicts of this run (image-level intervals). Verdicts over
trainings come from merging runs (:func:`.verdicts.merged_verdicts`, docs/results/merge_benchmark.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...causal.autoencoder import model_fingerprint
from ...models import get_model
from .config import BenchmarkConfig
from .data import BenchPairs, bench_pairs, heldout_split, tuning_split
from .methods import MethodFactory
from .metrics import effects_of, faithfulness, ground_truth, localisation
from .sanity import permuted_label_model, run_sanity
from .tuning import chexlocalize_thresholds, thresholds_for, tune_all
from .verdicts import run_verdicts

log = logging.getLogger(__name__)


def benchmark_model(model: str, size: int, device: str = "cpu", train_seed: int = 0):
    """The built-in model at ``size`` px on ``device``, trained from ``train_seed`` on first use (off the CPU also
    trained
    there: its own cache key)."""
    train: dict = {}
    if device != "cpu":
        train["device"] = device
    if train_seed:
        train["seed"] = train_seed
    return get_model(model, size=size, **({"train_config": train} if train else {})).to(device)


def model_quality(clf, test) -> dict:
    """Held-out macro AUROC of the classifier whose maps are scored (a map of a poor model says little)."""
    from ...evaluate.classification import macro_auroc

    probs, labels = [], []
    with torch.inference_mode():
        for batch in test.loader(batch_size=128):
            probs.append(clf.predict_proba(batch.images).cpu())
            labels.append(batch.labels)
    return {
        "heldout_macro_auroc": macro_auroc(torch.cat(probs), torch.cat(labels), clf.class_names),
        "n_test_images": len(test),
    }


@dataclass
class BenchmarkResult:
    """The numbers of one run; ``values`` (method -> metric -> per-pair array) and ``clusters`` feed the merge over
    trainings."""

    config: dict
    run: dict
    values: dict[str, dict[str, np.ndarray]] = field(repr=False)
    clusters: np.ndarray = field(repr=False)

    def to_json(self) -> dict:
        from .report import clean

        return clean({"protocol": "explanation benchmark v3 (issue 26)", "config": self.config, **self.run})

    def headline(self) -> list[dict]:
        from .report import run_claims

        return run_claims(self.run)

    def save_values(self, path: Path) -> None:
        """Per-pair values and image clusters as a compressed .npz (what the merge over trainings reads)."""
        arrays = {f"{m}|{k}": v for m, by in self.values.items() for k, v in by.items()}
        np.savez_compressed(path, clusters=self.clusters, **arrays)


def load_values(path: Path) -> dict:
    """{"values": method -> metric -> array, "clusters": array} from :meth:`BenchmarkResult.save_values`."""
    data = np.load(path)
    values: dict[str, dict[str, np.ndarray]] = {}
    for key in data.files:
        if key != "clusters":
            m, k = key.split("|", 1)
            values.setdefault(m, {})[k] = data[key]
    return {"values": values, "clusters": data["clusters"]}


def score_method(method, clf, pairs: BenchPairs, factory, cfg, effects, thresholds) -> tuple[dict, torch.Tensor, float]:
    """(per-pair values of every metric, the maps, ms per map) of one method on the held-out pairs."""
    t = time.perf_counter()
    maps = factory(method, clf, pairs).attribute(pairs.images, pairs.targets).cpu()
    ms = 1000 * (time.perf_counter() - t) / len(pairs)
    values = localisation(maps, pairs, cfg.seed, thresholds_for(thresholds.get(method, {}), pairs.targets))
    values.update(ground_truth(maps, pairs, effects, cfg.seed))
    values.update(faithfulness(clf, maps, pairs, cfg.imputers, cfg.road_fractions, cfg.seed, cfg.n_noisy))
    return values, maps, ms


def _classifier(ctx, cfg: BenchmarkConfig):
    if cfg.model is None:
        clf = ctx.classifier
        return clf, clf.input_shape[-1], getattr(clf, "name", "") or str(ctx.model)
    return benchmark_model(cfg.model, cfg.size, cfg.device, cfg.train_seed), cfg.size, cfg.model


def run_explanation_benchmark(ctx, config: BenchmarkConfig | None = None) -> BenchmarkResult:
    """The whole v3 protocol for one model, size and training seed (see the module docstring). ``ctx`` is a
    :class:`cemap.studies.context.StudyContext` (its classifier is used when ``config.model`` is None)."""
    cfg = config or BenchmarkConfig()
    t0, timing = time.perf_counter(), {}
    clf, size, name = _classifier(ctx, cfg)
    cfg = cfg.scaled(size=size)
    val = bench_pairs(tuning_split(size, cfg.tune_seed), cfg.tune_images, cfg.seed)
    chosen, tuning, val_maps = tune_all(clf, val, cfg)
    timing["tuning"] = time.perf_counter() - t0
    factory = MethodFactory(chosen, size, cfg.seed)
    for m in cfg.methods:
        if m not in val_maps:
            val_maps[m] = factory(m, clf, val).attribute(val.images, val.targets).cpu()
    thresholds = chexlocalize_thresholds({m: val_maps[m] for m in cfg.methods}, val)
    timing["chexlocalize_thresholds"] = time.perf_counter() - t0 - timing["tuning"]
    test_split = heldout_split(size, cfg.heldout_seed)
    pairs = bench_pairs(test_split, cfg.n_images, cfg.seed)
    effects = effects_of(clf, pairs)
    values, ms, sanity_maps = {}, {}, {}
    for method in cfg.methods:
        values[method], maps, ms[method] = score_method(method, clf, pairs, factory, cfg, effects, thresholds)
        sanity_maps[method] = maps[: cfg.n_sanity]
        log.info(
            "%s %d px: %s scored (%.0f ms/map, %.0f s so far)", name, size, method, ms[method], time.perf_counter() - t0
        )
    timing["heldout"] = time.perf_counter() - t0 - sum(timing.values())
    sanity = run_all_sanity(clf, pairs.take(cfg.n_sanity), sanity_maps, factory, cfg, name, size)
    timing["sanity"] = time.perf_counter() - t0 - sum(timing.values())
    clusters = pairs.image_index.numpy()
    verdicts = run_verdicts(values, clusters, [p for p in cfg.peers if p in values], cfg.n_boot)
    run = {
        "model": name,
        "size": size,
        "device": cfg.device,
        "train_seed": cfg.train_seed,
        "model_fingerprint": model_fingerprint(clf),
        "model_quality": model_quality(clf, test_split),
        "n_images": pairs.n_images,
        "n_pairs": len(pairs),
        "n_pairs_several_lesions": int(pairs.several.sum()),
        "n_images_several_lesions": int(torch.unique(pairs.image_index[pairs.several]).numel()),
        "tuning": tuning,
        "chosen": chosen,
        "chexlocalize_thresholds": thresholds,
        "ms_per_map": ms,
        **verdicts,
        "sanity": sanity,
        "inpainter": _inpainter_quality(factory, val) if "ce-inpaint" in cfg.methods else None,
        "seconds": time.perf_counter() - t0,
        "seconds_by_stage": timing,
    }
    return BenchmarkResult(asdict(cfg), run, values, clusters)


def run_all_sanity(clf, pairs: BenchPairs, maps: dict, factory, cfg: BenchmarkConfig, name: str, size: int) -> dict:
    """Sanity v2 for every method in ``cfg.sanity_methods`` that was scored (plus the permuted-label model for
    cxr-cnn)."""
    permuted = None
    if (
        cfg.data_randomisation and name == "cxr-cnn" and cfg.train_seed == 0
    ):  # one small model, as the issue asks: the seed-0 training
        permuted = permuted_label_model(size, cfg.train_seed).to(cfg.device)
    out = {}
    for method in cfg.sanity_methods:
        if method in maps:
            t = time.perf_counter()
            out[method] = run_sanity(method, clf, pairs, maps[method], factory, cfg, permuted)
            out[method]["seconds"] = time.perf_counter() - t
            log.info(
                "sanity %s: %s (%.0f s)",
                method,
                "passes" if out[method]["cascading_full"]["passes"] else "fails",
                out[method]["seconds"],
            )
    return out


def _inpainter_quality(factory: MethodFactory, val: BenchPairs) -> dict:
    from ...causal.masks import gaussian_blur
    from ...models.inpainting import inpainting_error

    def blur_fill(x: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(x, max(1.0, x.shape[-1] / 16))

    return {
        "trained_on": "synthcxr train split (seed 0)",
        "validation_error": inpainting_error(factory.inpainter(), val.images, blur_fill),
    }
