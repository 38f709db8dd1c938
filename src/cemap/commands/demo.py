"""``cemap demo``: the whole study on built-in data."""

from __future__ import annotations

from pathlib import Path

import typer

from ..cli import app
from .common import QUIET, SEED, THREADS, setup


@app.command()
def demo(
    dataset: str = typer.Option("mnist5k", "--dataset", "-d", help="Built-in dataset: mnist5k or synthcxr."),
    out: Path = typer.Option(Path("out/demo"), "--out", "-o", help="Folder for metrics.json and figures."),
    n_images: int = typer.Option(8, "--n-images", help="Test images to explain in the figures."),
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Train or load the built-in model and autoencoder, compute CE maps and latent CE profiles, write metrics and figures.

    Example: cemap demo --dataset mnist5k --out out/demo
    """
    setup(seed, threads, quiet)
    from ..demo import run_demo

    metrics = run_demo(dataset=dataset, out=out, n_images=n_images, seed=seed)
    fid = metrics["autoencoder"]["fidelity"]
    typer.echo(f"classifier: {metrics['classifier']}")
    typer.echo(f"autoencoder fidelity: agreement {fid['agreement']:.4f}, mean KL {fid['mean_kl']:.4f}")
    typer.echo(f"results written to {out.resolve()}")
