"""``cemap run``: per-image results for a whole dataset split, streamed to a resumable run folder."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from ..cli import app
from ..errors import CemapError
from .common import QUIET, SEED, THREADS, setup


def names(values: list[str]) -> tuple[str, ...]:
    """Accept both ``--methods a,b`` and ``--methods a --methods b``."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def scalar(text: str) -> int | float | str | bool:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def options(pairs: list[str], flag: str) -> dict:
    """``KEY=VALUE`` pairs -> keyword arguments for a dataset or model factory (numbers parsed)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CemapError(f"{flag} {pair!r} is not KEY=VALUE", f"e.g. {flag} root=/data/images")
        out[key.strip()] = scalar(value.strip())
    return out


@app.command()
def run(
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name (see cemap datasets), e.g. mnist5k, synthcxr, imagefolder."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: shards, manifest.json, errors.jsonl."),
    model: str = typer.Option(None, "--model", "-m", help="Model name; default: the built-in model of the dataset."),
    model_opt: list[str] = typer.Option([], "--model-opt", help="Model option KEY=VALUE (repeatable), e.g. weights=/models/chexnet.pt."),
    split: str = typer.Option("test", "--split", help="Dataset split to run over."),
    data_opt: list[str] = typer.Option([], "--data-opt", help="Dataset option KEY=VALUE (repeatable), e.g. root=/data or n_test=4000."),
    methods: list[str] = typer.Option([], "--methods", help="Baseline maps besides the CE map, comma-separated (e.g. gradcam,occlusion)."),
    attacks: list[str] = typer.Option([], "--attacks", help="Attacks to run per image, comma-separated (e.g. fgsm,pgd)."),
    layer: str = typer.Option(None, "--layer", help="Layer for the latent autoencoder; default: the model's default layer."),
    cell: int = typer.Option(None, "--cell", help="CE-map cell size in pixels; default about a 7 x 7 grid."),
    stride: int = typer.Option(None, "--stride", help="CE-map stride; default the cell size."),
    fill: str = typer.Option("zero", "--fill", help="Masking fill: zero, max, mean, blur or a number."),
    value: str = typer.Option("zero", "--value", help="Latent intervention value: zero, mean or a number."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out: skip committed shards, discard partial ones."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per batch."),
    shard_size: int = typer.Option(256, "--shard-size", help="Images per shard (the unit of resume and of distribution)."),
    limit: int = typer.Option(None, "--limit", help="Only the first N images of the split."),
    ae_dataset: str = typer.Option(None, "--ae-dataset", help="Dataset whose images train the autoencoder; default: --dataset."),
    ae_split: str = typer.Option("train", "--ae-split", help="Split that trains the autoencoder."),
    ae_images: int = typer.Option(4000, "--ae-images", help="At most this many training images (spread over the split)."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes reading images ahead."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (under torchrun: one GPU per local rank, nccl)."),
    seed: int = SEED,
    threads: int = THREADS,
    quiet: bool = QUIET,
) -> None:
    """Compute predictions, latent CE profiles, CE maps (and optional baselines and attacks) for every image, in resumable shards.

    Example: cemap run --dataset mnist5k --out out/run --limit 200
    Distributed: torchrun --nproc_per_node=4 -m cemap run --dataset synthcxr --out out/run
    """
    setup(seed, threads, quiet)
    from ..runner import RunConfig, run_dataset

    config = RunConfig(
        dataset=dataset, model=model, split=split, layer=layer,
        dataset_options=options(data_opt, "--data-opt"), model_options=options(model_opt, "--model-opt"),
        methods=names(methods), attacks=names(attacks), cell=cell, stride=stride, fill=scalar(fill), value=scalar(value),
        batch_size=batch_size, shard_size=shard_size, limit=limit, seed=seed,
        ae_dataset=ae_dataset, ae_split=ae_split, ae_images=ae_images,
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
