"""``cemap explain``: CE map, latent CE profile and baselines for your own image files."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DEVICE, QUIET, SEED, THREADS, check_device, on_device, setup, track_output, warn, warn_fidelity
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


def explain(
    inputs: list[Path] = IMAGE_FILES,
    model: str = FILE_MODEL,
    weights: Path = WEIGHTS,
    model_opt: list[str] = MODEL_OPT,
    size: int = SIZE,
    mean: str = MEAN,
    std: str = STD,
    normalize: str = NORMALIZE,
    class_names: str = CLASS_NAMES,
    layer: str = typer.Option(None, "--layer", "-l", help="Layer for the latent autoencoder (default: the model's)."),
    fit_on: Path = typer.Option(
        None,
        "--fit-on",
        help="Folder of images to fit the latent autoencoder on (cached); without it no latent CE profile.",
    ),
    methods: str = typer.Option(
        "ce,gradcam",
        "--methods",
        help="Comma-separated maps: ce, cam, gradcam, gradcam++, scorecam, occlusion, integrated-gradients, random, "
        "centre.",
    ),
    target: str = typer.Option(
        None,
        "--target",
        "-t",
        help="Class or finding to explain (name or index; default: the most probable per image).",
    ),
    out: Path = typer.Option(
        Path("out/explain"),
        "--out",
        "-o",
        help="Folder for overlays, one JSON per image, explain.json and report.html.",
    ),
    device: str = DEVICE,
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Explain your own images: CE map beside the chosen baselines, plus the latent CE profile when --fit-on is given.

    Unreadable files are skipped with a warning and listed in explain.json; map coordinates (peak_yx) are in each
    file's own pixels.

    Example: cemap explain scans/ --model chexnet --weights chexnet.pth --fit-on scans/ --methods ce,gradcam --out
    out/scans
    """
    inputs_given = model_inputs(size, mean, std, normalize, class_names)
    check_device(device)
    setup(seed, threads, quiet)
    from ..report.draw import draw
    from ..report.html import write_report
    from ..studies.explain_files import ExplainConfig, list_image_files, run_explain

    files = list_image_files(inputs)
    loaded = load(model, weights, model_opt, inputs_given)
    clf = on_device(loaded.classifier, device)
    check_choices(clf, layer, target, methods)
    if fit_on is not None:
        list_image_files([fit_on])
    track_output(out)
    config = ExplainConfig(
        methods=tuple(m.strip() for m in methods.split(",") if m.strip()), layer=layer, fit_on=fit_on, target=target
    )
    summary = run_explain(clf, files, out, config, draw=draw, preprocessing=loaded.preprocessing)
    for row in summary.skipped:
        warn(f"skipped {row['file']}: {row['error']}")
    for row in (summary.autoencoder or {}).get("fit_skipped", []):
        warn(f"not fitted on {row['file']}: {row['error']}")
    write_report(out)
    for row in summary.images:
        typer.echo(f"{row['file']}: {row['target']} p={row['probability']:.3f} -> {row['overlay']}")
    if summary.autoencoder is not None:
        fid = summary.autoencoder["fidelity"]
        typer.echo(
            f"autoencoder fidelity on these images: agreement {fid['agreement']:.3f}, mean KL {fid['mean_kl']:.4f}"
        )
        warn_fidelity(fid, " on these images")
    typer.echo(f"report: {(out / 'report.html').resolve()}")


def check_choices(clf, layer: str | None, target: str | None, methods: str) -> None:
    """--layer, --target and --methods checked against the model before anything is fitted or written."""
    from ..explain import list_explainers

    if layer is not None:
        clf.resolve_layer(layer)  # an unknown layer lists the valid ones, with or without --fit-on
    valid = list_explainers()
    for m in (m.strip() for m in methods.split(",")):
        if m and m not in valid:
            from ..errors import unknown_name

            raise unknown_name("method", m, valid)
    if target is not None:
        clf.class_index(target)
