"""``cemap evaluate``: CE maps versus CAMs and attribution baselines, by the numbers."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DATA_OPT, DEVICE, QUIET, SEED, THREADS, check_device, out_dir, setup
from .model_options import MODEL_OPT


def _options(ce_cell: int | None, ce_stride: int | None, ce_fill: str | None, ig_steps: int | None) -> dict[str, dict]:
    ce = {k: v for k, v in {"cell": ce_cell, "stride": ce_stride, "fill": ce_fill}.items() if v is not None}
    if "fill" in ce:
        try:
            ce["fill"] = float(ce["fill"])
        except ValueError:
            pass
    options: dict[str, dict] = {"ce": ce} if ce else {}
    if ig_steps is not None:
        options["integrated-gradients"] = {"n_steps": ig_steps}
    return options


# Options of one form only: given to the other, they would be ignored, so they are refused instead.
_BENCHMARK_ONLY = ("models", "sizes", "heldout_seed", "n_faithful", "n_sanity")
_STUDY_ONLY = (
    "model", "model_opt", "data_opt", "methods", "n_robust", "ce_cell", "ce_stride", "ce_fill", "ig_steps", "tune_ce",
    "shortcut",
)  # fmt: skip


def _given(ctx: typer.Context, name: str) -> bool:
    source = ctx.get_parameter_source(name)  # typer may carry its own copy of click's ParameterSource: compare names
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _refuse_ignored(ctx: typer.Context, benchmark: bool) -> None:
    """One line naming the options the chosen form would ignore (``--benchmark`` or the plain evaluation)."""
    from ..errors import CemapError

    names = _STUDY_ONLY if benchmark else _BENCHMARK_ONLY
    given = [n for n in names if _given(ctx, n)]
    if not given:
        return
    flags = ", ".join("--" + n.replace("_", "-") for n in given)
    if benchmark:
        raise CemapError(
            f"--benchmark ignores {flags} (it runs its own methods, tuned by one rule, on built-in synthcxr models)",
            "drop those options, or drop --benchmark to evaluate your model and methods",
        )
    raise CemapError(f"{flags} only apply to --benchmark", "add --benchmark, or drop those options")


def evaluate(
    ctx: typer.Context,
    dataset: str = typer.Option(
        ...,
        "--dataset",
        "-d",
        help="Dataset with a test split (boxes give the localisation columns): synthcxr, mnist5k, or your own "
        "imagefolder with --data-opt root=DIR (box-free metrics only).",
    ),
    model: str = typer.Option(None, "--model", "-m", help="Model name (default: the dataset's built-in model)."),
    model_opt: list[str] = MODEL_OPT,
    data_opt: list[str] = DATA_OPT,
    methods: str = typer.Option(None, "--methods", help="Comma-separated methods (default: all; see below)."),
    n_images: int = typer.Option(
        None, "--n-images", help="Test images to use (a seeded random subset of those with boxes); default all."
    ),
    n_robust: int = typer.Option(64, "--n-robust", help="Pairs for the noise / FGSM / weight-randomisation metrics."),
    steps: int = typer.Option(16, "--steps", help="Deletion / insertion steps."),
    ce_cell: int = typer.Option(None, "--ce-cell", help="CE cell size in pixels (default: about a 7 x 7 grid)."),
    ce_stride: int = typer.Option(None, "--ce-stride", help="CE stride (default: the cell size)."),
    ce_fill: str = typer.Option(None, "--ce-fill", help="CE fill: zero, max, mean, blur or a number in [0, 1]."),
    ig_steps: int = typer.Option(None, "--ig-steps", help="Integrated-gradients steps (default 32)."),
    tune_ce: bool = typer.Option(
        False, "--tune-ce", help="Choose CE's cell and fill on the train split first (ignored when --ce-* are given)."
    ),
    shortcut: bool = typer.Option(
        False, "--shortcut", help="synthcxr's shortcut variant: adds the share of map mass on the spurious tag."
    ),
    out: Path = typer.Option(Path("out/evaluate"), "--out", "-o", help="Folder for evaluation.json and overlays.png."),
    benchmark: bool = typer.Option(
        False,
        "--benchmark",
        help="The explanation benchmark v3 (issue 26; synthcxr only): every method tuned on validation images "
        "by one rule, scored on held-out images against causal ground truth, boxes and three imputers, "
        "with floors, sanity v2 "
        "and image-level 95% intervals. About an hour per model and size on 2 cores.",
    ),
    models: str = typer.Option(
        "cxr-cnn,resnet18-slim-cxr",
        "--models",
        help="--benchmark: comma-separated models, trained on first use "
        "(resnet18-cxr: full-width ResNet-18, hours to train on 2 cores).",
    ),
    sizes: str = typer.Option("64,128", "--sizes", help="--benchmark: comma-separated synthcxr image sizes."),
    heldout_seed: int = typer.Option(
        None,
        "--heldout-seed",
        help="--benchmark: synthcxr generator seed of the held-out test split (default 20261130).",
    ),
    n_faithful: int = typer.Option(
        None,
        "--n-faithful",
        help="--benchmark: pairs scored with the noisy-linear ROAD imputer (its sparse solves are "
        "the slowest metric; default 100).",
    ),
    tune_images: int = typer.Option(
        None,
        "--tune-images",
        help="Images CE's settings (--tune-ce), or with --benchmark every method's settings, are chosen on "
        "(default 60 train images; --benchmark: 50 seed-0 validation images).",
    ),
    n_sanity: int = typer.Option(
        30, "--n-sanity", help="--benchmark: pairs per seed for the randomisation tests (3 seeds)."
    ),
    train_seed: int = typer.Option(
        0,
        "--train-seed",
        help="Training seed of the built-in models (another seed trains, "
        "and caches, another model: run several for a spread over trainings).",
    ),
    device: str = DEVICE,
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Explain the same (image, finding) pairs with every method and score the maps: pointing game, energy, T(IoBB),
    deletion / insertion AUC, stability under noise and FGSM, weight-randomisation sanity.

    Methods: ce, cam, gradcam, gradcam++, scorecam, occlusion, integrated-gradients, random, centre.

    Example: cemap evaluate --dataset synthcxr --methods ce,gradcam,random --n-images 100 --out out/eval
    """
    check_device(device)
    _refuse_ignored(ctx, benchmark)
    setup(seed, threads, quiet)
    if benchmark:
        _benchmark(
            dataset,
            models,
            sizes,
            heldout_seed,
            n_images,
            n_faithful,
            n_sanity,
            50 if tune_images is None else tune_images,
            steps,
            seed,
            device,
            train_seed,
            out,
        )
        return
    from ..report.draw import draw
    from ..studies.context import StudyContext
    from ..studies.evaluation import EvalConfig, format_table, run_evaluation
    from .parsing import study_model

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip()) if methods else None
    cfg = EvalConfig(
        n_images=n_images,
        n_robust=n_robust,
        steps=steps,
        seed=seed,
        method_options=_options(ce_cell, ce_stride, ce_fill, ig_steps),
        methods=chosen,
        tune=tune_ce,
        **({} if tune_images is None else {"tune_images": tune_images}),
    )
    data_options = [*data_opt, *(["shortcut=true"] * shortcut)]
    clf, data_options, name = study_model(dataset, model, model_opt, data_options, train_seed)
    ctx = StudyContext(
        dataset,
        out_dir(out),
        seed=seed,
        model=name,
        dataset_options=data_options,
        device=device,
        draw=draw,
        train_seed=train_seed,
    )
    ctx.classifier = clf.to(device)
    result = run_evaluation(ctx, cfg)
    typer.echo(
        f"{result.model} on {dataset}: {result.n_images} images, {result.n_pairs} (image, target) pairs, "
        f"{result.seconds:.0f} s"
    )
    if result.ce_tuning:
        typer.echo(f"CE settings chosen on the train split: {result.ce_tuning['chosen']}")
    typer.echo(format_table(result.rows))
    typer.echo(f"results written to {(out / 'evaluation.json').resolve()}")


def _benchmark(
    dataset: str,
    models: str,
    sizes: str,
    heldout_seed: int | None,
    n_images: int | None,
    n_faithful: int | None,
    n_sanity: int,
    tune_images: int,
    steps: int,
    seed: int,
    device: str,
    train_seed: int,
    out: Path,
) -> None:
    import json

    from ..errors import CemapError
    from ..studies.context import StudyContext
    from ..studies.explanation_benchmark import HELDOUT_SEED, BenchmarkConfig, format_run, run_explanation_benchmark

    if dataset != "synthcxr":
        raise CemapError(
            "--benchmark runs on synthcxr (it needs boxes and a generator seed to hold out)", "use --dataset synthcxr"
        )
    folder = out_dir(out)
    runs = []
    for model in (m.strip() for m in models.split(",") if m.strip()):
        for size in (int(s) for s in sizes.split(",") if s.strip()):
            cfg = BenchmarkConfig(
                model=model,
                size=size,
                heldout_seed=HELDOUT_SEED if heldout_seed is None else heldout_seed,
                n_images=n_images or 300,
                n_sanity=n_sanity,
                tune_images=tune_images,
                seed=seed,
                device=device,
                train_seed=train_seed,
            )
            if n_faithful is not None:
                cfg = cfg.scaled(n_noisy=n_faithful)
            result = run_explanation_benchmark(StudyContext(dataset, folder, seed=seed, device=device), cfg)
            stem = f"{model}-{size}px-train{train_seed}"
            result.save_values(folder / f"values-{stem}.npz")
            runs.append({**result.to_json(), "values_file": f"values-{stem}.npz"})
            (folder / "evaluation.json").write_text(
                json.dumps({"protocol": "explanation benchmark v3 (issue 26)", "runs": runs}, indent=1)
            )
            typer.echo(format_run(runs[-1]["rows"], runs[-1]["ce_vs_best_tuned_peer"], runs[-1]["floors"]))
            for claim in result.headline():
                typer.echo("* " + claim["claim"])
    typer.echo(f"results written to {(folder / 'evaluation.json').resolve()}")
