"""One shard on disk: a Parquet table of per-image rows, a compressed ``.npz`` of maps in the same
row order, and the shard's errors as JSON lines. The table is renamed into place last, so its
existence marks the whole shard as committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.base import Batch
from .layout import RunLayout, atomic_open

INDEX = "index"


def identity_fields(multilabel: bool) -> list[pa.Field]:
    """Columns that say which image a row is and what its ground truth is."""
    label = pa.field("labels", pa.list_(pa.float32())) if multilabel else pa.field("label", pa.int64())
    return [
        pa.field(INDEX, pa.int64()),
        pa.field("id", pa.string()),
        label,
        pa.field("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        pa.field("box_labels", pa.list_(pa.int64())),
    ]


def identity_columns(batch: Batch, indices: list[int], multilabel: bool) -> dict[str, list]:
    labels = [row.float().numpy() for row in batch.labels] if multilabel else batch.labels.long().tolist()
    return {
        INDEX: list(indices),
        "id": list(batch.ids),
        "labels" if multilabel else "label": labels,
        "boxes": [b.float().reshape(-1, 4).tolist() for b in batch.boxes],
        "box_labels": [bl.long().reshape(-1).tolist() for bl in batch.box_labels],
    }


@dataclass
class ShardBuffer:
    """Collects one shard's rows, maps and errors in memory (one shard at a time keeps memory flat)."""

    schema: pa.Schema
    map_names: list[str]
    map_shape: tuple[int, int]
    columns: dict[str, list] = field(default_factory=dict)
    maps: dict[str, list[np.ndarray]] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.columns = {name: [] for name in self.schema.names}
        self.maps = {name: [] for name in self.map_names}

    def add(self, columns: dict[str, list], maps: dict[str, np.ndarray]) -> None:
        for name in self.schema.names:
            self.columns[name].extend(columns[name])
        for name in self.map_names:
            self.maps[name].append(np.asarray(maps[name], dtype=np.float32))

    def add_error(self, index: int, item_id: str, reason: str) -> None:
        self.errors.append({INDEX: index, "id": item_id, "reason": reason})

    @property
    def n_rows(self) -> int:
        return len(self.columns[INDEX])

    def table(self) -> pa.Table:
        return pa.Table.from_pydict(self.columns, schema=self.schema)

    def stacked_maps(self) -> dict[str, np.ndarray]:
        out = {
            name: np.concatenate(parts) if parts else np.zeros((0, *self.map_shape), np.float32)
            for name, parts in self.maps.items()
        }
        out[INDEX] = np.asarray(self.columns[INDEX], dtype=np.int64)
        return out

    def commit(self, layout: RunLayout, shard: int) -> None:
        """Write maps and errors, then the table; each file appears whole or not at all."""
        with atomic_open(layout.maps(shard)) as fh:
            np.savez_compressed(fh, **self.stacked_maps())
        with atomic_open(layout.shard_errors(shard), "w") as fh:
            fh.writelines(json.dumps(e, sort_keys=True) + "\n" for e in self.errors)
        table = self.table()
        with atomic_open(layout.table(shard)) as fh:
            pq.write_table(table, fh)


def read_table(layout: RunLayout, shard: int, columns: list[str] | None = None) -> pa.Table:
    return pq.read_table(layout.table(shard), columns=columns)


def read_maps(layout: RunLayout, shard: int, names: list[str]) -> dict[str, np.ndarray]:
    with np.load(layout.maps(shard)) as npz:
        return {name: npz[name] for name in [INDEX, *names]}


def read_errors(layout: RunLayout, shard: int) -> list[dict]:
    path = layout.shard_errors(shard)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
