"""Options shared by every command (seed, threads, quiet, out) and the setup they imply."""

from __future__ import annotations

from pathlib import Path

import torch
import typer

from ..errors import warn
from ..progress import set_progress

SEED = typer.Option(0, "--seed", help="Random seed for everything random in the run.")
THREADS = typer.Option(0, "--threads", help="CPU threads for torch (0 = all cores).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bars; only the final summary.")
DEVICE = typer.Option("cpu", "--device", help="Where the model runs: cpu, cuda or cuda:N.")
DATA_OPT = typer.Option(
    [], "--data-opt", help="Dataset option KEY=VALUE (repeatable), e.g. root=/data or class_names=normal,pneumonia."
)


def check_device(device: str) -> str:
    """``device`` when it is usable here; a one-line error (exit 2) for an unknown name or a GPU that is not present."""
    from ..errors import CemapError

    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise CemapError(f"unknown device {device!r}", "use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CemapError(f"--device {device} but no CUDA device is visible", "use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CemapError(
                f"--device {device} but only {torch.cuda.device_count()} CUDA device(s) are visible",
                "use --device cuda:0",
            )
    elif dev.type != "cpu":
        raise CemapError(f"unsupported device {device!r}", "use cpu, cuda or cuda:N")
    return device


def on_device(classifier, device: str):
    """``classifier`` moved to ``device``; it still takes images from the CPU (``Classifier.forward`` moves each
    batch)."""
    return classifier if torch.device(device).type == "cpu" else classifier.to(device)


# Folders this process created for its output: a failed command removes those left empty (cli.main).
_CREATED: list[Path] = []


def setup(seed: int, threads: int, quiet: bool) -> None:
    """Apply the shared options before any work starts (a negative thread count is refused, not ignored)."""
    from ..errors import CemapError

    if threads < 0:
        raise CemapError(f"--threads {threads} must be 0 (all cores) or a positive count")
    torch.manual_seed(seed)
    if threads > 0:
        torch.set_num_threads(threads)
    set_progress(False if quiet else None)  # None: bars when stderr is a terminal and CEMAP_QUIET is unset


def out_dir(path: Path) -> Path:
    """Create the output folder ``path``; if the command then fails, the folders it created are removed when still
    empty."""
    path = track_output(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def forget_outputs() -> None:
    """Start a command with no output folders tracked (tests run several commands in one process)."""
    _CREATED.clear()


def track_output(path: Path) -> Path:
    """The output folder ``path`` that the command creates later, checked now: a file where the folder or one above
    it would go is one line before any work, not a traceback after it. Its missing folders are remembered, to
    remove them if the command fails with them empty."""
    from ..errors import CemapError

    path = Path(path)
    blocking = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise CemapError(f"--out {path} cannot be a folder: {blocking} is a file", "choose a folder for --out")
    remember_missing(path)
    return path


def remember_missing(path: Path) -> None:
    """Remember the folders of ``path`` that do not exist yet, to remove them if the command fails with them empty
    (cli.main does this for every ``--out``, whether a folder or a file)."""
    path = Path(path)
    _CREATED.extend(reversed([p for p in [path, *path.parents] if not p.exists()]))


def remove_empty_outputs() -> None:
    """After a failed command: remove the output folders it created that hold nothing (innermost first)."""
    for root in reversed(_CREATED):
        if not root.is_dir():
            continue
        for sub in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                sub.rmdir()
            except OSError:
                pass
        try:
            root.rmdir()
        except OSError:
            pass
    _CREATED.clear()


def warn_fidelity(fidelity: dict | None, where: str = "") -> None:
    """The coloured warning whenever the latent autoencoder's fidelity is not ok (latent CEs would not describe the
    model)."""
    if not fidelity or fidelity.get("ok", True):
        return
    parts = [
        f"agreement {fidelity['agreement']:.3f}" if "agreement" in fidelity else "",
        f"mean KL {fidelity['mean_kl']:.4f}" if "mean_kl" in fidelity else "",
    ]
    for reason in fidelity.get("problems", []):
        parts.append(reason)
    detail = "; ".join(p for p in parts if p)
    warn(
        f"low autoencoder fidelity{where} ({detail}): latent CE profiles do not describe the original model; read "
        "them with caution"
    )
