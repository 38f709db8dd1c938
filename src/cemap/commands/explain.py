"""``cemap explain``: CE map, latent CE profile and baselines for your own image files."""

from __future__ import annotations

from pathlib import Path

import typer

from ..cli import app
from .common import QUIET, SEED, THREADS, setup


@app.command()
def explain(
    inputs: list[Path] = typer.Argument(..., help="Image files (PNG, JPEG, BMP, TIFF, DICOM) or folders of them."),
    model: str = typer.Option(..., "--model", "-m", help="Model name (see cemap models), e.g. cxr-cnn, densenet121, chexnet."),
    weights: Path = typer.Option(None, "--weights", "-w", help="State-dict file for the model (loaded weights-only)."),
    layer: str = typer.Option(None, "--layer", "-l", help="Layer for the latent autoencoder (default: the model's)."),
    fit_on: Path = typer.Option(None, "--fit-on", help="Folder of images to fit the latent autoencoder on (cached); without it no latent CE profile."),
    methods: str = typer.Option("ce,gradcam", "--methods", help="Comma-separated maps: ce, cam, gradcam, gradcam++, scorecam, occlusion, integrated-gradients, random, centre."),
    target: str = typer.Option(None, "--target", "-t", help="Class or finding to explain (name or index; default: the most probable per image)."),
    out: Path = typer.Option(Path("out/explain"), "--out", "-o", help="Folder for overlays, one JSON per image, explain.json and report.html."),
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Explain your own images: CE map beside the chosen baselines, plus the latent CE profile when --fit-on is given.

    Example: cemap explain scans/ --model chexnet --weights chexnet.pth --fit-on scans/ --methods ce,gradcam --out out/scans
    """
    setup(seed, threads, quiet)
    from ..studies.explain_files import explain_files, list_image_files, load_classifier

    files = list_image_files(inputs)
    clf = load_classifier(model, weights)
    summary = explain_files(clf, files, out, methods=[m.strip() for m in methods.split(",") if m.strip()], layer=layer, fit_on=fit_on, target=target)
    for row in summary["images"]:
        typer.echo(f"{row['file']}: {row['target']} p={row['probability']:.3f} -> {row['overlay']}")
    if "autoencoder" in summary:
        fid = summary["autoencoder"]["fidelity"]
        typer.echo(f"autoencoder fidelity on these images: agreement {fid['agreement']:.3f}, mean KL {fid['mean_kl']:.4f}" + ("" if fid["ok"] else " (low: read latent CEs with caution)"))
    typer.echo(f"report: {(out / 'report.html').resolve()}")
