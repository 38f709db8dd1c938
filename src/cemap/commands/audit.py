"""``cemap audit``: what does the model rely on beyond the findings? A causal reliance audit, and its benchmark."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from .common import DATA_OPT, QUIET, SEED, THREADS, out_dir, setup


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _audit(
    dataset: str,
    model: str | None,
    model_opt: list[str],
    data_opt: list[str],
    quick: bool,
    n_images: int | None,
    known: list[str],
    latent: bool,
    threshold: float | None,
    seed: int,
    out: Path,
) -> None:
    from ..cache import save_json_atomic
    from ..report.reliance import write_reliance_page
    from ..studies.audit import AuditConfig, run_audit
    from ..studies.context import StudyContext
    from .parsing import study_model

    clf, data_options, name = study_model(dataset, model, model_opt, data_opt)
    if dataset.endswith("-planted"):  # audited where the artifact appears independently of the findings
        data_options.setdefault("mode", "normal")
    ctx = StudyContext(dataset=dataset, out=out, model=name, seed=seed, dataset_options=data_options)
    ctx.classifier = clf
    overrides = {
        k: v
        for k, v in {
            "n_images": n_images,
            "known": tuple(known),
            "latent": latent,
            "seed": seed,
            "threshold": threshold,
        }.items()
        if v is not None
    }
    cfg = AuditConfig.quick_form(**overrides) if quick else AuditConfig(**overrides)
    result = run_audit(ctx, cfg)
    folder = out_dir(out)
    save_json_atomic(result.to_json(), folder / "audit.json")
    page = write_reliance_page(result, folder / "reliance.html")
    for claim in result.headline():
        typer.echo("* " + claim["claim"])
    typer.echo(
        f"timings {result.timings_s}; results written to {(folder / 'audit.json').resolve()} and {page.resolve()}"
    )


def _benchmark(
    seeds: str, calibration_seeds: str, artifacts: str, n_attr: int, audit_images: int, seed: int, out: Path
) -> None:
    from ..studies.reliance_benchmark import RelianceBenchmarkConfig, run_reliance_benchmark

    cfg = RelianceBenchmarkConfig(
        artifacts=_names(artifacts),
        reported_seeds=_ints(seeds),
        calibration_seeds=_ints(calibration_seeds),
        n_attr=n_attr,
        audit_images=audit_images,
        seed=seed,
    )
    command = (
        f"cemap audit --benchmark --seeds {','.join(map(str, cfg.reported_seeds))} --calibration-seeds "
        f"{','.join(map(str, cfg.calibration_seeds))} "
        f"--artifacts {','.join(cfg.artifacts)} --n-attr {n_attr} --audit-images {audit_images} --seed {seed} --out "
        f"{shlex.quote(str(out))}"
    )
    result = run_reliance_benchmark(cfg, out_dir(out), command=command, log=lambda s: typer.echo(s, err=True))
    for claim in result.headline():
        typer.echo("* " + claim["claim"])
    typer.echo(f"results written to {(Path(out) / 'reliance_benchmark.json').resolve()}")


def audit(
    dataset: str = typer.Option(
        "synthcxr-planted",
        "--dataset",
        "-d",
        help="Dataset whose test split is audited (cemap datasets lists them), e.g. "
        "synthcxr, imagefolder, nih, or synthcxr-planted (the default, for the demo: a planted artifact, on the "
        "audited "
        "images independent of the findings unless --data-opt mode=spurious).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Model name (default: the dataset's built-in model; cxr-cnn-planted on synthcxr-planted).",
    ),
    model_opt: list[str] = typer.Option(
        [], "--model-opt", help="Model option KEY=VALUE (repeatable), e.g. weights=/models/net.pt or mode=normal."
    ),
    data_opt: list[str] = DATA_OPT,
    quick: bool = typer.Option(
        False,
        "--quick",
        help="The quick form: ~160 images, fewer image pairs and strengths, a short autoencoder fit "
        "(seconds to a minute once the model exists). Without it: the full form (a few minutes).",
    ),
    n_images: int = typer.Option(None, "--n-images", help="Held-out images to audit (default 400, quick 160)."),
    known: list[str] = typer.Option(
        [],
        "--known",
        help="Known-artifact candidate (repeatable): a transform ('blur 0.7', 'contrast 0.8', "
        "'hflip'), a mask file (.png/.npy: nonzero = the region), or 'planted' on a planted dataset.",
    ),
    latent: bool = typer.Option(
        True, "--latent/--no-latent", help="Latent channel interventions (fits the autoencoder on first use)."
    ),
    threshold: float = typer.Option(
        None, "--threshold", help="The decision rule's threshold (default: the one chosen on calibration models)."
    ),
    benchmark: bool = typer.Option(
        False,
        "--benchmark",
        help="Issue 25's benchmark instead: spurious and normal models per planted artifact and "
        "seed, verified, audited and explained by every attribution method (hours on 2 cores; resumable).",
    ),
    seeds: str = typer.Option("2,3,4,5,6", "--seeds", help="--benchmark: reported training seeds."),
    calibration_seeds: str = typer.Option(
        "0,1", "--calibration-seeds", help="--benchmark: seeds whose models only choose thresholds."
    ),
    artifacts: str = typer.Option(
        "tag,letter,grid,blur,contrast,noise", "--artifacts", help="--benchmark: planted artifact kinds."
    ),
    n_attr: int = typer.Option(
        16, "--n-attr", help="--benchmark: held-out images explained per model and attribution method."
    ),
    audit_images: int = typer.Option(400, "--audit-images", help="--benchmark: held-out images each audit sees."),
    out: Path = typer.Option(
        Path("out/audit"), "--out", "-o", help="Folder for audit.json and reliance.html (or the benchmark's files)."
    ),
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Audit what a classifier relies on beyond the annotated findings, by intervention: which swapped property (a
    region,
    texture, brightness and contrast) carries its decisions between images with the same labels, what global transforms,
    regions and latent channels change, and any known candidate's effect - each with an interval, and a verdict.

    Example: cemap audit --quick --out out/audit   (the demo: a model trained where a corner tag goes with Nodule)
    Example: cemap audit --dataset synthcxr --model cxr-cnn --known "blur 0.7" --out out/audit-cxr
    """
    setup(seed, threads, quiet)
    if benchmark:
        _benchmark(seeds, calibration_seeds, artifacts, n_attr, audit_images, seed, out)
        return
    _audit(dataset, model, model_opt, data_opt, quick, n_images, known, latent, threshold, seed, out)
