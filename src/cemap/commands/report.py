"""``cemap report``: render a run folder into one self-contained report.html."""

from __future__ import annotations

from pathlib import Path

import typer


def report(
    run_dir: Path = typer.Argument(..., help="A run folder written by cemap demo, evaluate, detect, explain or run."),
    out: Path = typer.Option(None, "--out", "-o", help="Where to write the HTML (default: RUN_DIR/report.html)."),
) -> None:
    """Render RUN_DIR into one HTML file with every figure, table and setting inlined (opens offline).

    Example: cemap report out/demo --out demo_report.html
    """
    from ..report.html import write_report

    path = write_report(run_dir, out)
    typer.echo(f"report written to {path.resolve()} ({path.stat().st_size / 1e6:.2f} MB)")
