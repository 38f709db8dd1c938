"""``cemap predict``: plain predictions for image files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..errors import CemapError
from .common import DEVICE, QUIET, SEED, THREADS, check_device, on_device, setup, track_output, warn
from .model_options import (
    CLASS_NAMES,
    FILE_MODEL,
    IMAGE_FILES,
    MEAN,
    MODEL_OPT,
    NORMALIZE,
    SIZE,
    STD,
    WEIGHTS,
    load,
    model_inputs,
)


def predict(
    inputs: list[Path] = IMAGE_FILES,
    model: str = FILE_MODEL,
    weights: Path = WEIGHTS,
    model_opt: list[str] = MODEL_OPT,
    size: int = SIZE,
    mean: str = MEAN,
    std: str = STD,
    normalize: str = NORMALIZE,
    class_names: str = CLASS_NAMES,
    top: int = typer.Option(3, "--top", help="How many classes (or findings) to show per image."),
    out: Path = typer.Option(None, "--out", "-o", help="Also write the predictions to this JSON file."),
    device: str = DEVICE,
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Print the most probable classes (or findings) for each image.

    Unreadable files are skipped with a warning and listed in the JSON.

    Example: cemap predict scans/ --model resnet18 --weights net.pt --size 64 --class-names cat,dog --out p.json
    """
    if top < 1:
        raise CemapError(f"--top {top} must be at least 1", "e.g. --top 3 for the three most probable classes")
    if out is not None and out.is_dir():
        raise CemapError(f"--out {out} is a folder", "pass a file name, e.g. --out predictions.json")
    inputs_given = model_inputs(size, mean, std, normalize, class_names)
    check_device(device)
    setup(seed, threads, quiet)
    from ..studies.explain_files import list_image_files, predict_files

    files = list_image_files(inputs)
    loaded = load(model, weights, model_opt, inputs_given)
    clf = on_device(loaded.classifier, device)
    if out is not None:
        track_output(out.parent)
    rows, skipped = predict_files(clf, files, top=min(top, clf.num_classes))
    for row in skipped:
        warn(f"skipped {row['file']}: {row['error']}")
    for row in rows:
        typer.echo(row["file"] + ": " + ", ".join(f"{c['class']} {c['probability']:.3f}" for c in row["top"]))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "model": loaded.name,
                    "preprocessing": loaded.preprocessing,
                    "class_names": clf.class_names,
                    "predictions": rows,
                    "skipped": skipped,
                },
                indent=2,
            )
        )
        typer.echo(f"predictions written to {out.resolve()}")
