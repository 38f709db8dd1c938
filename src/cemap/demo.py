"""The demo study on built-in data: train or load the model and its autoencoder, compute CE maps
and latent CE profiles for test images, and write metrics.json and PNG figures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .causal import CEMap, LatentCE, fidelity, fit_autoencoder
from .data import get_dataset
from .data.base import stack_images
from .evaluate.classification import accuracy, macro_auroc, per_class_auroc
from .models import default_model_for, get_model
from .report.figures import overlay_grid, profile_bars


def classifier_quality(classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> dict:
    with torch.inference_mode():
        probs = torch.cat([classifier.predict_proba(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])
    if classifier.multilabel:
        return {"macro_auroc": macro_auroc(probs, labels, classifier.class_names), "auroc": per_class_auroc(probs, labels, classifier.class_names)}
    return {"accuracy": accuracy(probs, labels)}


def run_demo(dataset: str = "mnist5k", out: Path = Path("out/demo"), n_images: int = 8, seed: int = 0) -> dict:
    """Run the study and return the metrics it wrote to ``out/metrics.json``."""
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    train, test = get_dataset(dataset, split="train"), get_dataset(dataset, split="test")
    model_name = default_model_for(dataset)
    clf = get_model(model_name)
    test_all = test.batch(range(len(test)))
    timings["model"] = time.perf_counter() - t0

    t = time.perf_counter()
    fitted = fit_autoencoder(clf, stack_images(train), data_key=f"{dataset}-train")
    fid = fidelity(fitted, clf, test_all.images)
    timings["autoencoder"] = time.perf_counter() - t

    t = time.perf_counter()
    torch.manual_seed(seed)
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n_images].tolist()
    batch = test.batch(chosen)
    ce = CEMap(clf)
    maps = ce.attribute(batch.images)
    profiles = LatentCE(clf, fitted).attribute(batch.images)
    timings["effects"] = time.perf_counter() - t

    with torch.inference_mode():
        pred = clf.decisions(clf.predict_proba(batch.images))
    titles = [f"{i}: pred {clf.class_names[int(p)]}" if not clf.multilabel else i for i, p in zip(batch.ids, pred)]
    figures = {
        "ce_maps": overlay_grid(batch.images, {"CE map": maps}, out / "ce_maps.png", titles=titles).name,
        "latent_profiles": profile_bars({"clean": profiles}, out / "latent_profiles.png").name,
    }
    metrics = {
        "dataset": dataset,
        "model": model_name,
        "layer": fitted.layer,
        "split_method": fitted.split.method,
        "classifier": classifier_quality(clf, test_all.images, test_all.labels),
        "autoencoder": {"code_channels": fitted.autoencoder.code_channels, "fidelity": fid.as_dict()},
        "ce_map": {"cell": ce.cell, "stride": ce.stride, "fill": ce.fill, "forward_passes_per_image": ce.forward_passes_per_image},
        "images": batch.ids,
        "latent_profiles": profiles.tolist(),
        "figures": figures,
        "timings_s": {**timings, "total": time.perf_counter() - t0},
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics
