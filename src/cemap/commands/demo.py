"""``cemap demo``: the whole study on built-in data, ending in report.html."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from .common import DEVICE, QUIET, SEED, THREADS, check_device, setup, warn_fidelity


def demo(
    dataset: str = typer.Option(
        "synthcxr",
        "--dataset",
        "-d",
        help="Built-in dataset: synthcxr (chest radiographs with exact boxes) or mnist5k.",
    ),
    quick: bool = typer.Option(
        False, "--quick", help="A small subset of every stage: the same report in a fraction of the time."
    ),
    out: Path = typer.Option(
        Path("out/demo"), "--out", "-o", help="Run folder for the JSON results, figures and report.html."
    ),
    recompute: bool = typer.Option(
        False,
        "--recompute",
        help="Recompute every stage instead of restoring those cached by an earlier identical run (models and "
        "autoencoders are still reused).",
    ),
    device: str = DEVICE,
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Train or load the built-in model and autoencoder, then run the paper's experiments, the evaluation and the
    detection study, and write report.html.

    Example: cemap demo --quick --out out/demo-quick
    """
    check_device(device)
    setup(seed, threads, quiet)
    from ..models import default_model_for
    from ..report.draw import draw
    from ..report.html import write_report
    from ..studies.context import StudyContext
    from ..studies.demo import StudyPlan, run_demo

    default_model_for(dataset)  # an unknown dataset fails here, before any work
    start = time.perf_counter()
    ctx = StudyContext(dataset, out, seed=seed, quick=quick, device=device, draw=draw)
    study = run_demo(ctx, StudyPlan.for_mode(quick), reuse=not recompute)
    report = write_report(out)
    fid = study.overview.fidelity
    typer.echo(f"{study.model} on {dataset} @ {study.layer}: classifier {study.overview.classifier}")
    typer.echo(f"autoencoder fidelity: agreement {fid['agreement']:.4f}, mean KL {fid['mean_kl']:.4f}")
    warn_fidelity(fid)
    for name, claim in study.latent_controls["claims"].items():
        typer.echo(f"latent experiment, {name.replace('_', '-')} (beside its control): {claim['verdict']}")
    restored = [name for name, p in study.stages.items() if "restored_from" in p]
    if restored:
        typer.echo(f"restored from an earlier identical run: {', '.join(restored)} (--recompute to redo)")
    typer.echo(
        f"report: {report.resolve()} ({report.stat().st_size / 1e6:.2f} MB) after {time.perf_counter() - start:.0f} s"
    )
