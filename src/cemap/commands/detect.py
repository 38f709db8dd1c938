"""``cemap detect``: attacks, CE signatures, the CE detector against the baselines, transfer and an adaptive attack."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DATA_OPT, DEVICE, QUIET, SEED, THREADS, check_device, setup, warn_fidelity
from .model_options import MODEL_OPT


def detect(
    dataset: str = typer.Option(
        ...,
        "--dataset",
        "-d",
        help="Dataset with train and test splits (cemap datasets lists them): mnist5k, synthcxr, or your own "
        "imagefolder with --data-opt root=DIR (DIR/train/<class>/..., DIR/test/<class>/...).",
    ),
    model: str = typer.Option(None, "--model", "-m", help="Model name (default: the dataset's built-in model)."),
    model_opt: list[str] = MODEL_OPT,
    data_opt: list[str] = DATA_OPT,
    out: Path = typer.Option(
        Path("out/detect"), "--out", "-o", help="Folder for detection.json, ce_detector.npz and figures."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="Few images and short attacks: a smoke run in under a minute (same as --size quick)."
    ),
    size: str = typer.Option(
        "full",
        "--size",
        help="full (15-35 min on 2 shared cores), demo (about a minute of CPU; what cemap demo runs) or quick.",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Reuse the attack outcomes an interrupted run saved in --out (features.npz, attacks.json).",
    ),
    train_seed: int = typer.Option(
        0,
        "--train-seed",
        help="Training seed of the built-in model (another seed trains, and caches, another model: repeat the study "
        "over trainings).",
    ),
    device: str = DEVICE,
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Detect adversarial examples with CE signatures and compare, on equal terms, with MSP, feature squeezing, LID,
    Mahalanobis and logit statistics: transfer to unseen (minimal, confidence-matched, C&W) attacks and adaptive
    attacks.

    Example: cemap detect --dataset mnist5k --out out/detect-mnist
    """
    check_device(device)
    setup(seed, threads, quiet)
    from ..report.draw import draw
    from ..studies.context import StudyContext
    from ..studies.detection import DetectionConfig, format_table, run_detection
    from .parsing import study_model

    config = DetectionConfig.sized("quick" if quick else size, seed, resume=resume)
    clf, data_options, name = study_model(dataset, model, model_opt, data_opt, train_seed)
    ctx = StudyContext(
        dataset=dataset,
        out=Path(out),
        seed=seed,
        quick=quick,
        model=name,
        dataset_options=data_options,
        device=device,
        draw=draw,
        train_seed=train_seed,
    )
    ctx.classifier = clf.to(device)
    result = run_detection(ctx, config)
    typer.echo(
        f"{result.dataset} / {result.model} @ {result.layer}: AUROC [95% CI] on held-out test images (successful "
        "adversarials only)"
    )
    for claim in result.headline():
        typer.echo("* " + claim.text)
    typer.echo(format_table(result.table))
    typer.echo(f"wall time {result.timings_s['total']:.0f}s; results written to {(out / 'detection.json').resolve()}")
    warn_fidelity(result.autoencoder_fidelity)
