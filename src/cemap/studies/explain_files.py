"""Explaining the user's own image files: CE map, latent CE profile and baselines, written per image.

This is what ``cemap explain`` and ``cemap predict`` run. Files (PNG, JPEG, BMP, TIFF, DICOM)
are read into the classifier's input shape, processed in batches, and each image gets an
overlay PNG and a JSON; ``explain.json`` sums up the run and ``report.html`` shows it.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from ..causal import fidelity, fit_autoencoder
from ..causal.autoencoder import Fidelity, FittedAutoencoder
from ..data.images import IMAGE_SUFFIXES, is_image_file, read_image
from ..errors import CemapError, unknown_name
from ..pipeline import ImagePipeline
from ..models import Classifier, get_model
from ..progress import progress_enabled
from ..report.explorer import MAX_ITEMS, ExplorerItem, relative_names, save_explorer_items
from ..report.figures import overlay_grid, profile_bars

DEFAULT_METHODS = ("ce", "gradcam")
BATCH = 16


def load_classifier(name: str, weights: str | Path | None = None) -> Classifier:
    """Model ``name`` from the registry, with its weights from ``weights`` when given."""
    if weights is None:
        return get_model(name)
    try:
        return get_model(name, weights=str(weights))
    except TypeError as exc:
        if "weights" not in str(exc):
            raise
        raise CemapError(f"model {name!r} does not take a weights file", "drop --weights (torchxrayvision models read theirs from ~/.torchxrayvision/models_data/)") from exc


def list_image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, plus every image file under the named folders (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise CemapError(f"no image files under {item}", f"supported: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}")
            files += found
        elif item.is_file():
            if not is_image_file(item):
                raise CemapError(f"{item} is not an image file", f"supported: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}")
            files.append(item)
        else:
            raise CemapError(f"no such file or folder: {item}", "pass image files or a folder of images")
    return files


def load_images(files: Sequence[Path], classifier: Classifier) -> torch.Tensor:
    """N x C x H x W in [0, 1], each file resized to the classifier's input; bad pixels are a CemapError naming the file."""
    c, h, w = classifier.input_shape
    images = []
    for path in files:
        image = read_image(path, channels=c, size=(h, w))
        if not torch.isfinite(image).all():
            raise CemapError(f"{path} contains NaN or infinite pixel values", "clean or drop the image before explaining it")
        images.append(image)
    return torch.stack(images)


def folder_key(files: Sequence[Path], shape: tuple[int, ...]) -> str:
    """Cache key of a set of image files: names, sizes and modification times, plus the input shape."""
    h = hashlib.sha256(repr(shape).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return f"files-{h.hexdigest()[:16]}"


def fit_on_files(classifier: Classifier, fit_on: str | Path, layer: str | None = None) -> tuple[FittedAutoencoder, int]:
    """The autoencoder at ``layer`` trained on the images under ``fit_on`` (cached per model, layer and files)."""
    files = list_image_files([fit_on])
    images = load_images(files, classifier)
    return fit_autoencoder(classifier, images, layer=layer, data_key=folder_key(files, classifier.input_shape)), len(files)


def resolve_target(classifier: Classifier, target: str | None) -> int | None:
    """A class (or finding) given by name or index, or None for the model's own choice per image."""
    if target is None:
        return None
    if target in classifier.class_names:
        return classifier.class_names.index(target)
    if target.isdigit() and int(target) < classifier.num_classes:
        return int(target)
    raise unknown_name("class", target, classifier.class_names)


def predict_files(classifier: Classifier, files: Sequence[Path], top: int = 3) -> list[dict]:
    """One row per file: the ``top`` most probable classes (or findings) with their probabilities."""
    rows = []
    for start in tqdm(range(0, len(files), BATCH), desc="predict", disable=not progress_enabled(), leave=False):
        chunk = files[start : start + BATCH]
        with torch.inference_mode():
            probs = classifier.predict_proba(load_images(chunk, classifier))
        for path, p in zip(chunk, probs):
            best = p.argsort(descending=True)[:top].tolist()
            rows.append({"file": str(path), "top": [{"class": classifier.class_names[i], "probability": float(p[i])} for i in best]})
    return rows


def _safe_stem(index: int, path: Path) -> str:
    return f"{index:04d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', path.stem)[:60]}"


def _map_stats(m: torch.Tensor) -> dict:
    flat = m.flatten()
    peak = int(flat.argmax())
    return {"max": float(flat.max()), "min": float(flat.min()), "peak_yx": [peak // m.shape[1], peak % m.shape[1]]}


def explain_files(
    classifier: Classifier,
    files: Sequence[Path],
    out: str | Path,
    methods: Sequence[str] = DEFAULT_METHODS,
    layer: str | None = None,
    fit_on: str | Path | None = None,
    target: str | None = None,
) -> dict:
    """Explain each file; writes ``<n>_<name>.png`` and ``.json`` per image, ``explain.json`` and ``report.html`` to ``out``."""
    from ..report.html import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    fitted, n_fit = fit_on_files(classifier, fit_on, layer) if fit_on is not None else (None, 0)
    timings["autoencoder"] = time.perf_counter() - t
    pipeline = ImagePipeline(classifier, fitted, methods=methods)
    wanted = resolve_target(classifier, target)
    rows, profiles, agree, kl, problems = [], [], 0.0, 0.0, []
    names, explorer = relative_names(files), []
    t = time.perf_counter()
    for start in tqdm(range(0, len(files), BATCH), desc="explain", disable=not progress_enabled(), leave=False):
        chunk = list(files[start : start + BATCH])
        images = load_images(chunk, classifier)
        result = pipeline(images, None if wanted is None else torch.full((len(images),), wanted))
        probs, targets, maps, profile = result.probs, result.targets, result.maps, result.latent
        if fitted is not None:
            fid = fidelity(fitted, classifier, images)
            agree, kl = agree + fid.agreement * fid.n, kl + fid.mean_kl * fid.n
            problems += [p for p in fid.problems if p not in problems]
            profiles.append(profile)
        for i, path in enumerate(chunk):
            stem, t_i = _safe_stem(start + i, path), int(targets[i])
            title = f"{path.name}: {classifier.class_names[t_i]} p={float(probs[i, t_i]):.2f}"
            overlay_grid(images[i : i + 1], {m: maps[m][i : i + 1] for m in maps}, out / f"{stem}.png", titles=[title])
            row = {
                "file": str(path),
                "target": classifier.class_names[t_i],
                "probability": float(probs[i, t_i]),
                "probabilities": {name: float(p) for name, p in zip(classifier.class_names, probs[i])},
                "maps": {m: _map_stats(maps[m][i]) for m in maps},
                "latent_profile": profile[i].tolist() if profile is not None else None,
                "overlay": f"{stem}.png",
            }
            (out / f"{stem}.json").write_text(json.dumps(row, indent=2))
            if start + i < MAX_ITEMS:  # the explorer shows the first MAX_ITEMS images
                explorer.append(ExplorerItem(id=names[start + i], image=images[i], maps={m: maps[m][i] for m in maps}, probs=probs[i], target=t_i,
                                             profile=profile[i] if profile is not None else None, source="explain"))
            rows.append({"file": path.name, "target": row["target"], "probability": row["probability"], "overlay": row["overlay"], "json": f"{stem}.json"})
    timings["explain"] = time.perf_counter() - t
    summary = {
        "model": classifier.name,
        "layer": fitted.layer if fitted is not None else layer or classifier.default_layer,
        "methods": list(methods),
        "n_images": len(files),
        "images": rows,
        "figures": {"overlays": [r["overlay"] for r in rows]},
        "timings_s": timings,
    }
    if fitted is not None:
        n = len(files)
        summary["autoencoder"] = {
            "fit_on": str(fit_on), "fit_images": n_fit, "code_channels": fitted.autoencoder.code_channels,
            "fidelity": Fidelity(agreement=agree / n, mean_kl=kl / n, n=n, problems=tuple(problems)).as_dict(),
        }
        summary["figures"]["latent_profiles"] = profile_bars({"explained images": torch.cat(profiles)}, out / "latent_profiles.png").name
    (out / "explain.json").write_text(json.dumps(summary, indent=2))
    save_explorer_items(out, explorer, classifier.class_names)
    write_report(out)
    return summary
