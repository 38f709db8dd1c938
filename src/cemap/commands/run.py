"""``cemap run``: per-image results for a whole dataset split, streamed to a resumable run folder."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..errors import CemapError
from .parsing import builtin_model, checked_options, names, options, scalar
from .common import QUIET, SEED, THREADS, setup, track_output, warn, warn_fidelity
from .model_options import CLASS_NAMES, MEAN, NORMALIZE, SIZE, STD, data_follow_model, model_inputs


def run(
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="Dataset name (see cemap datasets), e.g. mnist5k, synthcxr, imagefolder."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: shards, manifest.json, errors.jsonl."),
    model: str = typer.Option(None, "--model", "-m", help="Model name; default: the built-in model of the dataset."),
    model_opt: list[str] = typer.Option(
        [], "--model-opt", help="Model option KEY=VALUE (repeatable), e.g. weights=/models/chexnet.pt."
    ),
    size: int = SIZE,
    mean: str = MEAN,
    std: str = STD,
    normalize: str = NORMALIZE,
    class_names: str = CLASS_NAMES,
    split: str = typer.Option("test", "--split", help="Dataset split to run over."),
    data_opt: list[str] = typer.Option(
        [], "--data-opt", help="Dataset option KEY=VALUE (repeatable), e.g. root=/data or n_test=4000."
    ),
    methods: list[str] = typer.Option(
        [], "--methods", help="Baseline maps besides the CE map, comma-separated (e.g. gradcam,occlusion)."
    ),
    attacks: list[str] = typer.Option(
        [], "--attacks", help="Attacks to run per image, comma-separated (e.g. fgsm,pgd)."
    ),
    layer: str = typer.Option(
        None, "--layer", help="Layer for the latent autoencoder; default: the model's default layer."
    ),
    cell: int = typer.Option(None, "--cell", help="CE-map cell size in pixels; default about a 7 x 7 grid."),
    stride: int = typer.Option(None, "--stride", help="CE-map stride; default the cell size."),
    fill: str = typer.Option("zero", "--fill", help="Masking fill: zero, max, mean, blur or a number."),
    value: str = typer.Option("zero", "--value", help="Latent intervention value: zero, mean or a number."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue an interrupted run in --out: skip committed shards, discard partial ones."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per batch."),
    shard_size: int = typer.Option(
        256, "--shard-size", help="Images per shard (the unit of resume and of distribution)."
    ),
    limit: int = typer.Option(None, "--limit", help="Only the first N images of the split."),
    ae_dataset: str = typer.Option(
        None, "--ae-dataset", help="Dataset whose images train the autoencoder; default: --dataset."
    ),
    ae_split: str = typer.Option("train", "--ae-split", help="Split that trains the autoencoder."),
    ae_images: int = typer.Option(
        4000, "--ae-images", help="At most this many training images (spread over the split)."
    ),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes reading images ahead."),
    weights: str = typer.Option(
        None, "--weights", hidden=True, help="Not an option of cemap run: use --model-opt weights=FILE."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (under torchrun: one GPU per local rank, nccl)."),
    precision: str = typer.Option(
        "fp32",
        "--precision",
        help="fp32 or bf16 (bfloat16 autocast) for CE maps and latent profiles; "
        "bf16 is about twice as fast on GPUs and AVX-512-BF16 CPUs, to about 1e-2 in probability.",
    ),
    compile_network: bool = typer.Option(
        False,
        "--compile",
        help="GPU only: CE maps' passes through torch.compile of the network "
        "(about a minute to compile; DenseNet-121 ran 1.9x faster on an H200).",
    ),
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Compute predictions, latent CE profiles, CE maps (and optional baselines and attacks) for every image, in
    resumable shards.

    Example: cemap run --dataset mnist5k --out out/run --limit 200
    Distributed: torchrun --nproc_per_node=4 -m cemap run --dataset synthcxr --out out/run
    """
    if weights is not None:
        raise CemapError("cemap run takes the weights file as a model option", f"use --model-opt weights={weights}")
    inputs = model_inputs(size, mean, std, normalize, class_names)
    setup(seed, threads, quiet)
    from ..data.registry import dataset_factory
    from ..models.registry import model_factory
    from ..runner import RunConfig, run_dataset

    data_options = checked_options("dataset", dataset, dataset_factory(dataset), options(data_opt, "--data-opt"))
    if ae_dataset is not None:
        dataset_factory(ae_dataset)  # an unknown name is refused now, not after the folder is prepared
    model = model or builtin_model(dataset)
    model_options = checked_options("model", model, model_factory(model), options(model_opt, "--model-opt"))
    data_options = data_follow_model(dataset, data_options, model, model_options, inputs)
    if "weights" in model_options and int(os.environ.get("RANK", 0)) == 0:
        _warn_sidecar_overrides(model, model_options, inputs)
    track_output(out)
    config = RunConfig(
        dataset=dataset,
        model=model,
        split=split,
        layer=layer,
        dataset_options=data_options,
        model_options=model_options,
        model_inputs=inputs.as_dict(),
        methods=names(methods),
        attacks=names(attacks),
        cell=cell,
        stride=stride,
        fill=scalar(fill),
        value=scalar(value),
        batch_size=batch_size,
        shard_size=shard_size,
        limit=limit,
        seed=seed,
        ae_dataset=ae_dataset,
        ae_split=ae_split,
        ae_images=ae_images,
        precision=precision,
        compiled=compile_network,
    )
    summary = run_dataset(config, out, resume=resume, workers=workers, device=device)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    rate = summary["images_per_s"]
    typer.echo(
        f"{summary['n_rows']} of {summary['n_images']} images done, {summary['n_errors']} unreadable (errors.jsonl), "
        f"{summary['n_shards']} shards; this session {summary['images_processed']} images"
        + (f" at {rate:.2f} images/s" if rate else "")
        + f" on {summary['world_size']} process(es)"
    )
    typer.echo(f"results in {Path(out).resolve()}")
    warn_fidelity(summary.get("fidelity"))


def _warn_sidecar_overrides(model: str, model_options: dict, inputs) -> None:
    """A warning line for each option that overrides the weights' sidecar, as predict and explain print; loading the
    checkpoint once here also refuses one the run could not use before its folder is prepared."""
    from ..models import load_model

    for note in load_model(model, model_options, inputs).notes:
        warn(note)
