"""Reading a finished run folder without recomputing anything: rows, maps, errors, summary.

Everything streams shard by shard, so reading a run of any size needs the memory of one shard
(except ``column``, which gathers one column of every row - small for per-image values).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa

from ..data import get_dataset
from ..data.base import ImageDataset
from ..errors import CemapError
from ..models import Classifier, ModelInputs, load_model
from .layout import RunLayout, read_json
from .pipeline import CE_MAP
from .shards import INDEX, read_maps, read_table


@dataclass
class ImageResult:
    """One image of a run: its row (column name -> value) and its maps (name -> H x W float32)."""

    row: dict[str, Any]
    maps: dict[str, np.ndarray]

    @property
    def index(self) -> int:
        return self.row[INDEX]

    @property
    def id(self) -> str:
        return self.row["id"]


class RunResults:
    """A finished run: ``rows()``, ``results(maps=...)``, ``column(name)``, ``errors()``, ``summary()``."""

    def __init__(self, folder: Path | str) -> None:
        self.layout = RunLayout(Path(folder))
        if not self.layout.manifest.exists():
            hint = (
                "continue it with: cemap run ... --resume"
                if self.layout.config.exists()
                else "run cemap run --out FOLDER first"
            )
            raise CemapError(f"{self.layout.root} holds no finished run (no manifest.json)", hint)
        self.manifest: dict = read_json(self.layout.manifest)

    @property
    def folder(self) -> Path:
        return self.layout.root

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def class_names(self) -> list[str]:
        return self.manifest["class_names"]

    @property
    def multilabel(self) -> bool:
        return self.manifest["multilabel"]

    @property
    def map_names(self) -> list[str]:
        return self.manifest["map_names"]

    @property
    def columns(self) -> list[str]:
        return self.manifest["columns"]

    def __len__(self) -> int:
        return self.manifest["n_rows"]

    def _shards(self) -> list[int]:
        return [s["index"] for s in self.manifest["shards"]]

    def rows(self, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Per-image rows in dataset order; vector columns come back as float32 arrays."""
        cols = self._check_columns(columns)
        for shard in self._shards():
            table = read_table(self.layout, shard, cols)
            data = _python_values(table)
            for i in range(table.num_rows):
                yield {name: values[i] for name, values in data.items()}

    def results(self, maps: Sequence[str] = (CE_MAP,), columns: Sequence[str] | None = None) -> Iterator[ImageResult]:
        """Rows together with the named maps, one shard in memory at a time."""
        names = self._check_maps(maps)
        cols = self._check_columns(columns)
        for shard in self._shards():
            table = read_table(self.layout, shard, cols)
            stored = read_maps(self.layout, shard, names)
            data = _python_values(table)
            if len(stored[INDEX]) != table.num_rows:
                raise CemapError(
                    f"shard {shard} of {self.folder}: maps and rows disagree",
                    "the folder was edited by hand; rerun the run",
                )
            for i in range(table.num_rows):
                row = {name: values[i] for name, values in data.items()}
                row.setdefault(INDEX, int(stored[INDEX][i]))
                yield ImageResult(row, {m: stored[m][i] for m in names})

    def maps(self, name: str = CE_MAP) -> Iterator[tuple[int, np.ndarray]]:
        """(dataset index, H x W map) for every row, in order."""
        for r in self.results(maps=(name,), columns=[INDEX]):
            yield r.index, r.maps[name]

    def column(self, name: str) -> np.ndarray:
        """One column over all rows: N for scalars, N x K for vectors (probs, latent_ce, ...)."""
        values = [row[name] for row in self.rows([name])]
        if not (values and isinstance(values[0], np.ndarray)):
            return np.asarray(values)
        if len({v.shape for v in values}) > 1:
            raise CemapError(
                f"column {name!r} has a different length per image", "iterate rows() for ragged columns such as boxes"
            )
        return np.stack(values)

    def errors(self) -> list[dict]:
        """Images that could not be processed: index, id and reason."""
        text = self.layout.errors.read_text() if self.layout.errors.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {
            "folder": str(self.folder),
            "dataset": m["config"]["dataset"],
            "split": m["config"]["split"],
            "model": m["config"]["model"],
            "n_images": m["n_images"],
            "n_rows": m["n_rows"],
            "n_errors": m["n_errors"],
            "n_shards": len(m["shards"]),
            "maps": m["map_names"],
            "autoencoder_fidelity": m["autoencoder"]["fidelity"],
            "last_session": m["last_session"],
        }

    def dataset(self) -> ImageDataset:
        """The dataset the run read (rows' ``index`` are positions in it), e.g. for faithfulness metrics."""
        c = self.config
        return get_dataset(c["dataset"], split=c["split"], **c["dataset_options"])

    def classifier(self) -> Classifier:
        """The model the run used, rebuilt from its name and options (weights file, ...)."""
        c = self.config
        return load_model(c["model"], c["model_options"], ModelInputs.from_dict(c.get("model_inputs"))).classifier

    def _check_maps(self, maps: Sequence[str]) -> list[str]:
        unknown = [m for m in maps if m not in self.map_names]
        if unknown:
            raise CemapError(f"run in {self.folder} has no map {unknown[0]!r}", f"maps: {', '.join(self.map_names)}")
        return list(maps)

    def _check_columns(self, columns: Sequence[str] | None) -> list[str] | None:
        if columns is None:
            return None
        unknown = [c for c in columns if c not in self.columns]
        if unknown:
            raise CemapError(
                f"run in {self.folder} has no column {unknown[0]!r}", f"columns: {', '.join(self.columns)}"
            )
        return list(columns)


def _python_values(table: pa.Table) -> dict[str, list]:
    """Column name -> per-row values: scalars as Python values, list columns as numpy arrays."""
    out = {}
    for name, col in zip(table.column_names, table.columns):
        values = col.to_pylist()
        if pa.types.is_list(col.type) or pa.types.is_fixed_size_list(col.type):
            inner = col.type.value_type
            if pa.types.is_fixed_size_list(inner):  # boxes: N x 4
                values = [np.asarray(v, dtype=np.float32).reshape(-1, inner.list_size) for v in values]
            else:
                values = [np.asarray(v, dtype=inner.to_pandas_dtype()) for v in values]
        out[name] = values
    return out


def load_run(folder: Path | str) -> RunResults:
    """Open a finished run folder written by ``cemap run``."""
    return RunResults(folder)


def run_summary(folder: Path | str) -> dict[str, Any]:
    """Counts, maps, autoencoder fidelity and last-session throughput of a finished run."""
    return load_run(folder).summary()
