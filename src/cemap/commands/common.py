"""Options shared by every command (seed, threads, quiet, out) and the setup they imply."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from ..progress import set_progress

SEED = typer.Option(0, "--seed", help="Random seed for everything random in the run.")
THREADS = typer.Option(0, "--threads", help="CPU threads for torch (0 = all cores).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars; only the final summary.")


def setup(seed: int, threads: int, quiet: bool) -> None:
    """Apply the shared options before any work starts."""
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    set_progress(False if quiet else None)  # None: bars when stderr is a terminal and CEMAP_QUIET is unset


def out_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
