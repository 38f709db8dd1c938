"""Where each file of a run folder lives, how shards are planned, and how files are written atomically.

Shard ``i`` always holds the dataset positions ``[i * shard_size, (i + 1) * shard_size)``:
boundaries depend on image positions only, never on timing, rank or a previous interruption,
which is what makes a resumed or distributed run identical to an uninterrupted one. A shard is
*committed* once its Parquet table exists; the table is renamed into place last.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

TMP_MARK = ".tmp-"


@dataclass(frozen=True)
class ShardPlan:
    """Shard ``index`` covers dataset positions ``start`` (inclusive) to ``stop`` (exclusive)."""

    index: int
    start: int
    stop: int


def plan_shards(n_images: int, shard_size: int) -> list[ShardPlan]:
    return [ShardPlan(i, start, min(start + shard_size, n_images)) for i, start in enumerate(range(0, n_images, shard_size))]


def shards_for_rank(plans: list[ShardPlan], rank: int, world_size: int) -> list[ShardPlan]:
    """Round-robin: rank r owns shards r, r + W, r + 2W, ... (balanced, and independent of run history)."""
    return plans[rank::world_size]


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def errors(self) -> Path:
        return self.root / "errors.jsonl"

    @property
    def autoencoder(self) -> Path:
        return self.root / "autoencoder.pt"

    @property
    def shard_dir(self) -> Path:
        return self.root / "shards"

    def table(self, shard: int) -> Path:
        return self.shard_dir / f"shard-{shard:06d}.parquet"

    def maps(self, shard: int) -> Path:
        return self.shard_dir / f"shard-{shard:06d}.npz"

    def shard_errors(self, shard: int) -> Path:
        return self.shard_dir / f"shard-{shard:06d}.errors.jsonl"

    def is_committed(self, shard: int) -> bool:
        return self.table(shard).exists()

    def discard_partial(self) -> list[Path]:
        """Delete temporary files left by a killed writer; returns what was removed."""
        removed = [p for p in self.shard_dir.glob(f"*{TMP_MARK}*")] + [p for p in self.root.glob(f"*{TMP_MARK}*")]
        for p in removed:
            p.unlink(missing_ok=True)
        return removed


@contextmanager
def atomic_open(path: Path, mode: str = "wb") -> Iterator[IO]:
    """Write to a temporary sibling, fsync, then rename over ``path``: readers never see half a file."""
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: dict) -> None:
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=2, sort_keys=True)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
