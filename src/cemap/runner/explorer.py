"""The image explorer's items of a ``cemap run``: written once the run is finished, so the report needs no runner.

Rows give the maps, probabilities, latent profile and boxes; the images themselves are not in the
shards, so they are read again from the run's dataset (left out where it cannot be opened).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..studies.explorer import MAX_ITEMS, ExplorerItem, as_ints, save_explorer_items
from .results import load_run


def items_from_run(results, limit: int = MAX_ITEMS, with_images: bool = True) -> list[ExplorerItem]:
    """Explorer items for the first ``limit`` images of a finished run (``load_run(folder)``).

    Rows give the maps, probabilities, latent profile and boxes; the images themselves are not in
    the shards, so they are read again from the run's dataset (left out where it cannot be opened).
    """
    dataset = None
    if with_images:
        try:
            dataset = results.dataset()
        except Exception:  # the dataset may live on another machine; the maps still show
            dataset = None
    items = []
    for r in results.results(maps=list(results.map_names)):
        row = r.row
        image = None
        if dataset is not None:
            try:
                image = dataset[int(r.index)].image
            except Exception:
                image = None
        labels = row.get("labels")
        if labels is not None:
            labels = [j for j, v in enumerate(np.asarray(labels).reshape(-1)) if v > 0.5]
        elif row.get("label") is not None:
            labels = [int(row["label"])]
        boxes = row.get("boxes")
        boxes = (
            np.zeros((0, 4), np.float32)
            if boxes is None or len(boxes) == 0
            else np.stack([np.asarray(b, np.float32).reshape(4) for b in boxes])
        )
        box_labels = row.get("box_labels")
        items.append(
            ExplorerItem(
                id=str(row.get("id", r.index)),
                image=image,
                maps=dict(r.maps),
                boxes=boxes,
                box_labels=[] if box_labels is None else as_ints(box_labels),
                probs=row.get("probs"),
                target=row.get("target"),
                labels=labels,
                profile=row.get("latent_ce"),
                source="run",
            )
        )
        if len(items) >= limit:
            break
    return items


def write_run_explorer(folder: Path) -> Path:
    """``folder/explorer.npz`` with the first :data:`MAX_ITEMS` images of the finished run in ``folder``."""
    results = load_run(folder)
    return save_explorer_items(folder, items_from_run(results), results.class_names)
