"""The dataset-scale loop: plan shards, skip committed ones, compute batch by batch, commit shard by shard.

Only one shard's results are ever held in memory. Every batch is fixed by image positions and
seeded from (seed, first position), so neither an interruption nor the number of ranks can
change a single number. Rank 0 prepares the folder and the autoencoder; after the last
barrier it checks every shard is committed and writes the merged errors file and manifest.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..causal.autoencoder import model_fingerprint
from ..data import get_dataset
from ..data.base import ImageDataset, Sample, collate
from ..errors import CemapError, unknown_name
from ..models import Classifier, ModelInputs, load_model
from ..models.preprocessing import describe
from ..progress import progress_bar
from .autoencoder import ensure_autoencoder, load_autoencoder
from .config import RunConfig
from .distributed import Ranks, process_group
from .explorer import write_run_explorer
from .layout import RunLayout, RunLock, ShardPlan, atomic_open, plan_shards, read_json, shards_for_rank, write_json
from .pipeline import RunPipeline
from .shards import ShardBuffer, identity_columns, identity_fields, read_errors

FORMAT = "cemap-run/2"  # 2: the CE map is stored as "ce" (was "cemap")
# Tests only: a process given this variable kills itself (SIGKILL) right after committing that many shards - a
# deterministic stand-in for a kill part-way through a run, whatever the machine's speed.
STOP_AFTER_SHARDS = "CEMAP_STOP_AFTER_SHARDS"


def batch_seed(seed: int, first_index: int) -> int:
    """A seed for the batch that starts at ``first_index``: the same in every run, on every rank."""
    return int(np.random.SeedSequence([seed, first_index]).generate_state(1)[0])


def item_id(dataset: ImageDataset, index: int) -> str:
    """The id of an item that could not be read: datasets may offer ``item_id(index)``, else its position."""
    lookup = getattr(dataset, "item_id", None)
    return str(lookup(index)) if callable(lookup) else f"#{index}"


class SafeItems(torch.utils.data.Dataset):
    """Wraps a dataset so a corrupt item becomes a recorded failure instead of a crash.

    The per-item failure contract: a dataset's ``__getitem__`` raises CemapError (or OSError)
    for an item it cannot read. Yields (index, Sample or None, reason or None).
    """

    def __init__(self, dataset: ImageDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Sample | None, str | None]:
        try:
            return index, self.dataset[index], None
        except (CemapError, OSError) as exc:
            return index, None, f"{type(exc).__name__}: {exc}"


def _batches(plan: ShardPlan, size: int) -> list[list[int]]:
    return [list(range(s, min(s + size, plan.stop))) for s in range(plan.start, plan.stop, size)]


def _prepare_folder(layout: RunLayout, identity: dict, resume: bool, lock: RunLock | None = None) -> None:
    """Lock, then create or check the run folder; on resume discard half-written files.

    The lock comes first, so the check for an existing run and the write of config.json cannot
    interleave with another process's, and discarding temporary files never touches a live run's.
    A folder whose run committed no shard (it failed or was stopped early) holds nothing worth
    keeping: it is started again with the new settings, so a corrected rerun never needs the user
    to delete it.
    """
    if lock is not None:
        lock.acquire()  # normally held already (run_dataset takes it first)
    layout.shard_dir.mkdir(parents=True, exist_ok=True)
    if layout.config.exists():
        stored = _stored_identity(layout)
        committed = layout.committed_shards()
        if not committed:
            if stored != identity:  # fitted for other settings: never used for these
                layout.autoencoder.unlink(missing_ok=True)
            for stale in (layout.manifest, layout.errors, *layout.shard_dir.glob("*.errors.jsonl")):
                stale.unlink(missing_ok=True)
            layout.discard_partial()
            write_json(layout.config, identity)
            return
        start_over = f"or delete the folder to start again (rm -r '{layout.root}'), or choose another --out"
        if not resume:
            raise CemapError(
                f"{layout.root} already holds a run ({len(committed)} shards committed)",
                f"pass --resume to continue it with the same settings, {start_over}",
            )
        if stored != identity:
            old, new = (stored or {}).get("config", {}), identity["config"]
            changed = sorted(k for k in {**old, **new} if old.get(k) != new.get(k))
            what = ", ".join(changed) or "the model weights"
            raise CemapError(
                f"--resume with different settings than the run in {layout.root} ({what})",
                f"resume with the original options, {start_over}",
            )
        layout.discard_partial()
        layout.manifest.unlink(missing_ok=True)
    else:
        write_json(layout.config, identity)


def _stored_identity(layout: RunLayout) -> dict | None:
    """The run's config.json, or None when it cannot be read (a run that never got past writing it)."""
    try:
        stored = read_json(layout.config)
    except (OSError, ValueError):
        return None
    return stored if isinstance(stored, dict) else None


class Runner:
    """One rank's share of a run."""

    def __init__(self, config: RunConfig, layout: RunLayout, ranks: Ranks, device: torch.device, workers: int) -> None:
        self.config, self.layout, self.ranks, self.device, self.workers = config, layout, ranks, device, workers
        self.dataset = get_dataset(config.dataset, split=config.split, **config.dataset_options)
        n = len(self.dataset)
        self.n_images = n if config.limit is None else min(config.limit, n)
        self.plans = plan_shards(self.n_images, config.shard_size)
        self.classifier: Classifier = ranks.main_first(lambda: run_model(config)).to(device)
        self.multilabel = self.classifier.multilabel
        self.shard_seconds: list[
            tuple[int, float]
        ] = []  # (images, seconds) per shard: the steady rate without start-up
        if config.compiled and device.type != "cuda":
            raise CemapError(
                "--compile runs on a GPU only (torch.compile pays there, not on the CPU)",
                "pass --device cuda, or leave out --compile",
            )
        match_class_names(self.classifier, self.dataset, config)
        check_size(self.classifier, self.dataset)
        check_settings(self.classifier, config)

    def setup(self, resume: bool, lock: RunLock | None = None) -> None:
        fingerprints = self.ranks.gather(model_fingerprint(self.classifier))
        if len(set(fingerprints)) > 1:
            raise CemapError(
                f"ranks built different weights for model {self.config.model_name}",
                "share one CEMAP_CACHE between nodes, or pass the same weights file to every rank",
            )
        identity = {"format": FORMAT, "config": self.config.as_dict(), "model_fingerprint": fingerprints[0]}
        self.ranks.share_from_main(lambda: _prepare_folder(self.layout, identity, resume, lock))
        self.autoencoder_info = self.ranks.share_from_main(
            lambda: ensure_autoencoder(self.layout, self.classifier, self.config, self.dataset, self.n_images)
        )
        fitted = load_autoencoder(self.layout, self.classifier)
        c = self.config
        self.pipeline = RunPipeline(
            self.classifier,
            fitted,
            cell=c.cell,
            stride=c.stride,
            fill=c.fill,
            value=c.value,
            methods=c.methods,
            attacks=c.attacks,
            precision=c.precision,
            compiled=c.compiled,
        )
        self.schema = pa.schema(identity_fields(self.multilabel) + self.pipeline.fields())

    def pending(self) -> list[ShardPlan]:
        mine = shards_for_rank(self.plans, self.ranks.rank, self.ranks.world_size)
        return [p for p in mine if not self.layout.is_committed(p.index)]

    def _loaded(self, plans: list[ShardPlan]) -> Iterator[tuple[ShardPlan, list]]:
        """(shard, items of one batch) in order; a DataLoader reads ahead when ``workers`` > 0."""
        batches = [(plan, idx) for plan in plans for idx in _batches(plan, self.config.batch_size)]
        loader = torch.utils.data.DataLoader(
            SafeItems(self.dataset),
            batch_sampler=[idx for _, idx in batches],
            collate_fn=list,
            num_workers=self.workers,
        )
        for (plan, _), items in zip(batches, loader):
            yield plan, items

    def _process(self, buffer: ShardBuffer, items: list) -> None:
        good: list[tuple[int, Sample]] = []
        for index, sample, reason in items:
            if sample is not None:
                try:
                    self.classifier.check_images(sample.image)
                except CemapError as exc:
                    reason = f"CemapError: {exc}"
            if reason is not None:
                buffer.add_error(index, item_id(self.dataset, index), reason)
            else:
                good.append((index, sample))
        if not good:
            return
        indices = [i for i, _ in good]
        batch = collate([s for _, s in good])
        columns, maps = self.pipeline(batch.images.float().to(self.device), batch_seed(self.config.seed, items[0][0]))
        buffer.add({**identity_columns(batch, indices, self.multilabel), **columns}, maps)

    def run(self) -> tuple[int, float]:
        """Compute and commit this rank's pending shards; returns (images processed, seconds)."""
        plans = self.pending()
        start = time.perf_counter()
        total = sum(p.stop - p.start for p in plans)
        bar = progress_bar(total, f"cemap run [rank {self.ranks.rank}]", unit="image", enabled=self.ranks.is_main)
        map_shape = tuple(self.classifier.input_shape[1:])
        stop_after = int(os.environ.get(STOP_AFTER_SHARDS, 0))
        for committed, (plan, group) in enumerate(itertools.groupby(self._loaded(plans), key=lambda t: t[0]), start=1):
            shard_start = time.perf_counter()
            buffer = ShardBuffer(self.schema, self.pipeline.map_names, map_shape)
            for _, items in group:
                self._process(buffer, items)
                bar.update(len(items))
            buffer.commit(self.layout, plan.index)
            self.shard_seconds.append((plan.stop - plan.start, time.perf_counter() - shard_start))
            if committed == stop_after:
                os.kill(os.getpid(), signal.SIGKILL)
        bar.close()
        return total, time.perf_counter() - start

    def _read_shard(self, shard: int) -> tuple[list[dict], int]:
        """A committed shard's errors and row count; a damaged shard file is one line saying how to recompute it."""
        try:
            return read_errors(self.layout, shard), pq.read_metadata(self.layout.table(shard)).num_rows
        except (OSError, ValueError, pa.ArrowException) as exc:
            stem = self.layout.table(shard).with_suffix("")
            raise CemapError(
                f"shard {shard} of {self.layout.root} is damaged ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else ''})",
                f"delete {stem}.* and continue with --resume: that shard is computed again",
            ) from exc

    def finish(self, work: list[tuple[int, float]]) -> dict:
        """Rank 0 after the barrier: verify every shard, merge errors, write the manifest; returns the summary."""
        missing = [p.index for p in self.plans if not self.layout.is_committed(p.index)]
        if missing:
            raise CemapError(
                f"{len(missing)} shards are missing (first: {missing[0]})",
                "a rank stopped early; continue with --resume",
            )
        shards, n_rows, n_errors = [], 0, 0
        with atomic_open(self.layout.errors, "w") as merged:
            for p in self.plans:
                errors, rows = self._read_shard(p.index)
                merged.writelines(json.dumps(e, sort_keys=True) + "\n" for e in errors)
                shards.append({"index": p.index, "start": p.start, "stop": p.stop, "rows": rows, "errors": len(errors)})
                n_rows, n_errors = n_rows + rows, n_errors + len(errors)
        processed = sum(n for n, _ in work)
        seconds = max(s for _, s in work)
        clf = self.classifier
        cemap = self.pipeline.cemap
        manifest = {
            "format": FORMAT,
            "complete": True,
            "config": self.config.as_dict(),
            "model_fingerprint": model_fingerprint(clf),
            "class_names": clf.class_names,
            "multilabel": self.multilabel,
            "input_shape": list(clf.input_shape),
            "preprocessing": describe(clf),
            "map_names": self.pipeline.map_names,
            "map_shape": list(clf.input_shape[1:]),
            "columns": self.schema.names,
            "attacks": self.pipeline.attack_budgets(),
            "cemap": {
                "cell": cemap.cell,
                "stride": cemap.stride,
                "fill": cemap.fill,
                "forward_passes_per_image": cemap.forward_passes_per_image,
            },
            "autoencoder": self.autoencoder_info,
            "n_images": self.n_images,
            "n_rows": n_rows,
            "n_errors": n_errors,
            "shards": shards,
            "last_session": {
                "world_size": self.ranks.world_size,
                "images_processed": processed,
                "seconds": seconds,
                "images_per_s": processed / seconds if seconds > 0 else None,
                "steady_images_per_s": steady_rate(self.shard_seconds),
            },
        }
        write_json(self.layout.manifest, manifest)
        write_run_explorer(self.layout.root)  # the report's image explorer: the first images, their maps and profiles
        return {
            "out": str(self.layout.root),
            "n_images": self.n_images,
            "n_rows": n_rows,
            "n_errors": n_errors,
            "n_shards": len(shards),
            "fidelity": (self.autoencoder_info or {}).get("fidelity"),
            **manifest["last_session"],
        }


def steady_rate(shard_seconds: list[tuple[int, float]]) -> float | None:
    """Images per second of this rank's shards after its first (which pays for workers starting, plans being
    measured, kernels compiled): what a long run sustains. None with fewer than two shards."""
    rest = shard_seconds[1:]
    seconds = sum(t for _, t in rest)
    return sum(n for n, _ in rest) / seconds if rest and seconds > 0 else None


def run_dataset(
    config: RunConfig, out: Path | str, *, resume: bool = False, workers: int = 0, device: str = "cpu"
) -> dict:
    """Run ``config`` into folder ``out`` (joining torchrun's process group when launched by it); returns the summary.

    Every rank returns the same summary: counts over the whole run, and the throughput of this session.
    """
    config.check()
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CemapError("--device cuda but no CUDA device is visible", "use --device cpu")
    layout = RunLayout(Path(out))
    lock = RunLock(layout)  # taken by rank 0 alone, held until the manifest is written
    with process_group(dev) as ranks:
        try:
            # First of all, so a second process is refused before it builds (or trains) a model.
            ranks.share_from_main(lock.acquire)
            runner = Runner(config, layout, ranks, dev, workers)
            runner.setup(resume, lock)
            work = ranks.gather(runner.run())
            ranks.barrier()
            return ranks.share_from_main(lambda: runner.finish(work))
        finally:
            lock.release()


def run_model(config: RunConfig) -> Classifier:
    """The run's model with its inputs as the run's options and the weights' sidecar say (``load_model``)."""
    return load_model(config.model_name, config.model_options, ModelInputs.from_dict(config.model_inputs)).classifier


def check_size(classifier: Classifier, dataset: ImageDataset) -> None:
    """Refuse data of another size than the model's input, by name (otherwise every image fails to batch)."""
    size = getattr(dataset, "size", None)
    if isinstance(size, int) and (size, size) != tuple(classifier.input_shape[1:]):
        raise CemapError(
            f"model expects {classifier.input_shape[1]} px, data are {size} px",
            "give the size once (--size N or --model-opt size=N): the data follow the model",
        )


def check_settings(classifier: Classifier, config: RunConfig) -> None:
    """Every name and value the run will use, checked before the folder is touched or anything is trained."""
    from ..causal import CEMap
    from ..causal.latent import VALUES

    if config.layer is not None:
        classifier.resolve_layer(config.layer)
    if config.methods:
        from ..explain import list_explainers

        valid = list_explainers()
        for name in config.methods:
            if name not in valid:
                raise unknown_name("method", name, valid)
    if config.attacks:
        from ..attacks import list_attacks

        valid = list_attacks()
        for name in config.attacks:
            if name.lower() not in valid:
                raise unknown_name("attack", name, valid)
    if not isinstance(config.value, (int, float)) and config.value not in VALUES:
        raise CemapError(
            f"unknown --value {config.value!r}", "use 'zero', 'mean' (the channel's dataset mean) or a number"
        )
    CEMap(classifier, cell=config.cell, stride=config.stride, fill=config.fill)  # checks cell, stride and fill


def match_class_names(classifier: Classifier, dataset: ImageDataset, config: RunConfig) -> None:
    """Name the model's outputs after the dataset's classes (an image folder's subfolders) when the model only has
    placeholders (``class_0``, ...), and refuse a model whose outputs cannot be the dataset's classes."""
    data_names = list(getattr(dataset, "class_names", None) or [])
    model_names = list(classifier.class_names)
    if not data_names or data_names == model_names:
        return
    placeholders = all(n == f"class_{i}" for i, n in enumerate(model_names))
    if len(data_names) == len(model_names):
        if placeholders:
            classifier.class_names = data_names
        return
    if set(data_names) <= set(model_names):  # e.g. 14 ChestX-ray14 findings among a model's 18
        return
    shown = ", ".join(data_names[:8]) + (", ..." if len(data_names) > 8 else "")
    raise CemapError(
        f"model {config.model_name} has {len(model_names)} outputs but dataset {config.dataset} has {len(data_names)} "
        f"classes ({shown})",
        "use weights trained on these classes (e.g. --model-opt weights=FILE), or a dataset whose classes the model "
        "predicts",
    )
