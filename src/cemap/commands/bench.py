"""``cemap bench``: cemap's hot paths against Captum, torchattacks and the plain loops, as ratios from one run."""

from __future__ import annotations

from pathlib import Path

import typer

from .common import DEVICE, SEED, THREADS, check_device, setup


def bench(
    out: Path = typer.Option(Path("bench.json"), "--out", "-o", help="Where to write the JSON results."),
    quick: bool = typer.Option(False, "--quick", help="One image, three repeats, a small PGD batch: a minute or two."),
    model: str = typer.Option(
        "chexnet", "--model", "-m", help="A built-in or registered model (default: DenseNet-121, 14 sigmoid findings)."
    ),
    weights: str = typer.Option(
        "random",
        "--weights",
        help="Weights for the default model or a torchvision architecture (vgg16, ...): a state-dict file or 'random' "
        "(seeded).",
    ),
    images: int = typer.Option(0, "--images", help="Images per CE-map and latent figure (0 = 2, or 1 with --quick)."),
    repeats: int = typer.Option(
        0, "--repeats", help="Timed runs per figure, after one warm-up (0 = 5, or 3 with --quick)."
    ),
    anchors_in_process: bool = typer.Option(
        False,
        "--anchors-in-process",
        help="Run Captum/torchattacks beside cemap (sharing its allocator tuning) instead of in a fresh process.",
    ),
    quality: bool = typer.Option(
        True,
        "--quality/--no-quality",
        help="Also measure, with the trained cxr-cnn on synthcxr, adaptive vs dense maps (pointing game, "
        "rank correlation) and PGD success in fp32 vs bf16.",
    ),
    resnet50: bool = typer.Option(
        True, "--resnet50/--no-resnet50", help="Also time ResNet-50 (random weights) CE maps with and without windows."
    ),
    device: str = DEVICE,
    seed: int = SEED,
    threads: int = THREADS,
) -> None:
    """Measure CE maps, latent sweeps, PGD and efficiency against the anchors; write JSON and print a table.

    Each figure is the median of the repeats after a warm-up, all in one run on the same inputs.
    Example: cemap bench --out bench.json   (on a GPU: cemap bench --device cuda)
    """
    check_device(device)
    setup(seed, threads, quiet=True)
    from ..jsonio import write_json
    from ..studies.bench import BenchConfig, format_table, run_bench

    overrides = {k: v for k, v in {"images": images, "repeats": repeats}.items() if v > 0}
    base = dict(
        model=model,
        weights=weights,
        threads=threads,
        seed=seed,
        anchors_in_process=anchors_in_process,
        device=device,
        compare_resnet50=resnet50,
        **overrides,
    )
    config = BenchConfig.quick(**base) if quick else BenchConfig(**base)
    result = run_bench(config, quality=quality)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result.to_json())
    typer.echo(format_table(result.to_json()))
    typer.echo(f"results written to {out.resolve()}")
