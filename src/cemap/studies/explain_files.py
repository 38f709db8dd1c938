"""Explaining the user's own image files: CE map, latent CE profile and baselines, written per image.

This is what ``cemap explain`` and ``cemap predict`` run. Files (PNG, JPEG, BMP, TIFF, DICOM)
are read into the classifier's input shape, processed in batches, and each image gets a JSON and
(when a drawer is given) an overlay PNG; ``explain.json`` sums up the run (:class:`ExplainResult`)
and ``cemap explain`` renders report.html from the folder.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import torch

from ..causal import Fidelity, FittedAutoencoder, fidelity, fit_autoencoder, sized_config
from ..data.images import IMAGE_SUFFIXES, is_image_file, load_image, resize
from ..errors import CemapError
from ..jsonio import write_json
from ..models import Classifier
from ..models.preprocessing import describe
from ..pipeline import BatchResult, ImagePipeline
from ..progress import progress_bar
from .explorer import MAX_ITEMS, ExplorerItem, relative_names, save_explorer_items
from .figures import Draw, OverlayGrid, ProfileBars
from .results import ExplainResult

DEFAULT_METHODS = ("ce", "gradcam")
BATCH = 16


def list_image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """Image files named directly, plus every image file under the named folders (sorted)."""
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                raise CemapError(
                    f"no image files under {item}", f"supported: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}"
                )
            files += found
        elif item.is_file():
            if not is_image_file(item):
                raise CemapError(
                    f"{item} is not an image file", f"supported: {', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)}"
                )
            files.append(item)
        else:
            raise CemapError(f"no such file or folder: {item}", "pass image files or a folder of images")
    return files


@dataclass
class ReadFiles:
    """The files of a batch that could be read, as the classifier's input, with each one's native size; and the
    files that could not (unreadable, truncated, NaN pixels), with the reason."""

    files: list[Path]
    positions: list[int]  # of the files read, in the list given
    images: torch.Tensor | None
    sizes: list[tuple[int, int]]
    skipped: list[dict]


def read_files(files: Sequence[Path], classifier: Classifier) -> ReadFiles:
    """Read ``files`` at the classifier's input shape, skipping the ones that cannot be read (``predict`` and
    ``explain`` go on with the others, as a run does)."""
    c, h, w = classifier.input_shape
    kept, positions, images, sizes, skipped = [], [], [], [], []
    for position, path in enumerate(files):
        try:
            native = load_image(path, channels=c)
            if not torch.isfinite(native).all():
                raise CemapError(f"{path} contains NaN or infinite pixel values")
        except CemapError as exc:
            skipped.append({"file": str(path), "error": exc.message})
            continue
        kept.append(path)
        positions.append(position)
        sizes.append((int(native.shape[1]), int(native.shape[2])))
        images.append(resize(native, (h, w)))
    return ReadFiles(kept, positions, torch.stack(images) if images else None, sizes, skipped)


def none_read(skipped: list[dict]) -> CemapError:
    """The error when not one of the files could be read: the first file's reason, and how many there were."""
    return CemapError(
        f"none of {len(skipped)} image file(s) could be read; first: {skipped[0]['error']}",
        "the files are corrupt or not images; remove or replace them",
    )


def folder_key(files: Sequence[Path], shape: tuple[int, ...]) -> str:
    """Cache key of a set of image files: names, sizes and modification times, plus the input shape."""
    h = hashlib.sha256(repr(shape).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return f"files-{h.hexdigest()[:16]}"


def fit_on_files(
    classifier: Classifier, fit_on: str | Path, layer: str | None = None
) -> tuple[FittedAutoencoder, int, list[dict]]:
    """The autoencoder at ``layer`` trained on the readable images under ``fit_on`` (cached per model, layer and
    files), how many it was fitted on, and the files skipped as unreadable (each with its reason)."""
    read = read_files(list_image_files([fit_on]), classifier)
    if read.images is None:
        raise none_read(read.skipped)
    key = folder_key(read.files, classifier.input_shape)
    fitted = fit_autoencoder(classifier, read.images, layer=layer, config=sized_config(len(read.files)), data_key=key)
    return fitted, len(read.files), read.skipped


def resolve_target(classifier: Classifier, target: str | None) -> int | None:
    """A class (or finding) given by name or index, or None for the model's own choice per image."""
    return None if target is None else classifier.class_index(target)


def _batch_starts(files: Sequence[Path], desc: str) -> Iterator[int]:
    """The first index of each BATCH of ``files``, with progress: a bar on a terminal, lines in a log."""
    bar = progress_bar(len(files), desc, unit="image", leave=False)
    try:
        for start in range(0, len(files), BATCH):
            yield start
            bar.update(min(BATCH, len(files) - start))
    finally:  # a caller that stops early (an error in a batch) still closes the bar
        bar.close()


def predict_files(classifier: Classifier, files: Sequence[Path], top: int = 3) -> tuple[list[dict], list[dict]]:
    """One row per readable file (the ``top`` most probable classes with their probabilities, and the file's native
    size), and the files skipped as unreadable; not one readable file is a CemapError."""
    rows, skipped = [], []
    for start in _batch_starts(files, "predict"):
        batch = read_files(files[start : start + BATCH], classifier)
        skipped += batch.skipped
        if batch.images is None:
            continue
        with torch.inference_mode():
            probs = classifier.predict_proba(batch.images)
        for path, size, p in zip(batch.files, batch.sizes, probs):
            best = p.argsort(descending=True)[:top].tolist()
            rows.append(
                {
                    "file": str(path),
                    "original_size": list(size),
                    "top": [{"class": classifier.class_names[i], "probability": float(p[i])} for i in best],
                }
            )
    if not rows:
        raise none_read(skipped)
    return rows, skipped


def _safe_stem(index: int, path: Path) -> str:
    return f"{index:04d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', path.stem)[:60]}"


def _map_stats(m: torch.Tensor, original: tuple[int, int]) -> dict:
    """Extremes of a map and where it peaks, in the original image's pixels (the centre of the peak's map pixel)."""
    flat = m.flatten()
    peak = int(flat.argmax())
    y, x = peak // m.shape[1], peak % m.shape[1]
    (oh, ow), (h, w) = original, m.shape
    return {
        "max": float(flat.max()),
        "min": float(flat.min()),
        "peak_yx": [min(int((y + 0.5) * oh / h), oh - 1), min(int((x + 0.5) * ow / w), ow - 1)],
    }


@dataclass(frozen=True)
class ExplainConfig:
    """What ``cemap explain`` computes for each file."""

    methods: Sequence[str] = DEFAULT_METHODS  # the maps (``cemap methods``): "ce" is the CE map
    layer: str | None = None  # the latent autoencoder's layer (default: the model's)
    fit_on: str | Path | None = None  # the images the autoencoder is fitted on; None: no latent profile
    target: str | None = None  # the class or finding explained (name or index); None: the most probable per image


@dataclass
class _Running:
    """What the files explained so far add up to: summary rows, explorer items, latent profiles, fidelity."""

    rows: list = field(default_factory=list)
    explorer: list = field(default_factory=list)
    profiles: list = field(default_factory=list)
    agree: float = 0.0
    kl: float = 0.0
    problems: list = field(default_factory=list)

    def add_fidelity(self, fid: Fidelity, profiles: torch.Tensor) -> None:
        """Accumulate one batch's fidelity (weighted by its images) and latent profiles."""
        self.agree, self.kl = self.agree + fid.agreement * fid.n, self.kl + fid.mean_kl * fid.n
        self.problems += [p for p in fid.problems if p not in self.problems]
        self.profiles.append(profiles)


def _autoencoder_summary(
    config: "ExplainConfig", fitted: FittedAutoencoder, n_fit: int, fit_skipped: list[dict], running: "_Running"
) -> dict:
    """explain.json's autoencoder entry: what it was fitted on (and skipped), and its fidelity on the explained
    images."""
    n = len(running.rows)
    fid = Fidelity(agreement=running.agree / n, mean_kl=running.kl / n, n=n, problems=tuple(running.problems))
    return {
        "fit_on": str(config.fit_on),
        "fit_images": n_fit,
        "fit_skipped": fit_skipped,
        "code_channels": fitted.autoencoder.code_channels,
        "fidelity": fid.as_dict(),
    }


def run_explain(
    classifier: Classifier,
    files: Sequence[Path],
    out: str | Path,
    config: ExplainConfig = ExplainConfig(),
    draw: Draw | None = None,
    preprocessing: dict | None = None,
) -> ExplainResult:
    """Explain each readable file; writes ``<n>_<name>.json`` (and, with ``draw``, ``<n>_<name>.png``) per image, the
    explorer's items and ``explain.json`` into ``out``. Unreadable files are skipped and listed; ``preprocessing`` is
    recorded (default: what the classifier applies)."""
    out, timings, t = Path(out), {}, time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    fitted, n_fit, fit_skipped = (
        fit_on_files(classifier, config.fit_on, config.layer) if config.fit_on is not None else (None, 0, [])
    )
    timings["autoencoder"] = time.perf_counter() - t
    pipeline = ImagePipeline(classifier, fitted, methods=config.methods)
    wanted = resolve_target(classifier, config.target)
    running, names, skipped = _Running(), relative_names(files), []
    t = time.perf_counter()
    for start in _batch_starts(files, "explain"):
        batch = read_files(files[start : start + BATCH], classifier)
        skipped += batch.skipped
        if batch.images is None:
            continue
        images = batch.images
        result = pipeline(images, None if wanted is None else torch.full((len(images),), wanted))
        if fitted is not None:
            running.add_fidelity(fidelity(classifier, fitted, images), result.latent)
        _record_chunk(classifier, out, batch, start, result, names, running, draw)
    if not running.rows:
        raise none_read(skipped)
    timings["explain"] = time.perf_counter() - t
    summary = ExplainResult(
        model=classifier.name,
        layer=fitted.layer if fitted is not None else config.layer or classifier.default_layer,
        methods=list(config.methods),
        n_images=len(running.rows),
        images=running.rows,
        figures={"overlays": [r["overlay"] for r in running.rows]},
        timings_s=timings,
        preprocessing=preprocessing or describe(classifier),
        skipped=skipped,
    )
    if fitted is not None:
        summary.autoencoder = _autoencoder_summary(config, fitted, n_fit, fit_skipped, running)
        bars = ProfileBars("latent_profiles.png", {"explained images": torch.cat(running.profiles)})
        if draw is not None:
            summary.figures["latent_profiles"] = draw(bars, out).name
    summary.write(out)
    save_explorer_items(out, running.explorer, classifier.class_names)
    return summary


def _record_chunk(
    classifier: Classifier,
    out: Path,
    batch: ReadFiles,
    start: int,
    result: BatchResult,
    names: list[str],
    running: _Running,
    draw: Draw | None,
) -> None:
    """Each image of a chunk: its JSON (coordinates in the file's own pixels), its overlay (when drawn), its explorer
    item and its summary row."""
    probs, targets, maps, profile, images = result.probs, result.targets, result.maps, result.latent, batch.images
    for i, (position, path, size) in enumerate(zip(batch.positions, batch.files, batch.sizes)):
        index = start + position
        stem, t_i = _safe_stem(index, path), int(targets[i])
        title = f"{path.name}: {classifier.class_names[t_i]} p={float(probs[i, t_i]):.2f}"
        if draw is not None:
            draw(
                OverlayGrid(f"{stem}.png", images[i : i + 1], {m: maps[m][i : i + 1] for m in maps}, titles=[title]),
                out,
            )
        row = {
            "file": str(path),
            "target": classifier.class_names[t_i],
            "probability": float(probs[i, t_i]),
            "probabilities": {name: float(p) for name, p in zip(classifier.class_names, probs[i])},
            "original_size": list(size),
            "maps": {m: _map_stats(maps[m][i], size) for m in maps},
            "latent_profile": profile[i].tolist() if profile is not None else None,
            "overlay": f"{stem}.png",
        }
        write_json(out / f"{stem}.json", row)
        if index < MAX_ITEMS:  # the explorer shows the first MAX_ITEMS images
            running.explorer.append(
                ExplorerItem(
                    id=names[index],
                    image=images[i],
                    maps={m: maps[m][i] for m in maps},
                    probs=probs[i],
                    target=t_i,
                    profile=profile[i] if profile is not None else None,
                    source="explain",
                )
            )
        running.rows.append(
            {
                "file": path.name,
                "target": row["target"],
                "probability": row["probability"],
                "overlay": row["overlay"],
                "json": f"{stem}.json",
            }
        )
