"""The image explorer's data: what each explained image needs on screen, saved beside a study's results.

A study that explains images calls :func:`save_explorer_items` with one :class:`ExplorerItem` per image (``cemap run``
does the same for the first images of a finished run, see :mod:`cemap.runner.explorer`); the report reads every
``explorer*.npz`` of a run folder, merging items with the same ``id``. It lives below the report and the runner, which
both use it. The file format (``cemap-explorer/1``) is a plain ``.npz`` that loads
without pickle:

* ``meta``: UTF-8 JSON as uint8 - ``{"format", "class_names", "items": [{"id", "target",
  "labels", "boxes", "box_labels", "maps": [method names], "probs": bool, "profile": bool,
  "source"}]}``;
* ``image_<i>``: the image as uint8, H x W (gray) or H x W x 3 (colour);
* ``map_<i>_<j>``: float32 H x W, map ``j`` of item ``i`` (names in ``meta``);
* ``probs_<i>``, ``profile_<i>``: float32 vectors (predicted probabilities, latent CE profile).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

FORMAT = "cemap-explorer/1"
FILE_GLOB = "explorer*.npz"
MAX_ITEMS = 48  # images shown by the explorer of one report


@dataclass
class ExplorerItem:
    """One explained image.

    Args:
        id: what the reader knows the image by (the relative file name, or the dataset id).
        image: C x H x W, H x W x C or H x W in [0, 1] (tensor or array).
        maps: method name -> H x W map (higher = matters more), same pixels as ``image``.
        boxes: N x 4 true boxes (x0, y0, x1, y1) in pixels of ``image``, if known.
        box_labels: the class index of each box.
        probs: the predicted probability of each class (or finding).
        target: the class the maps explain.
        labels: the true class indices.
        profile: the latent CE profile (one ECE per concept channel Z_j).
        source: the study that explained it (``demo``, ``evaluation``, ``explain``, ``run``).
    """

    id: str
    image: Any = None
    maps: dict[str, Any] = field(default_factory=dict)
    boxes: Any = None
    box_labels: Sequence[int] | None = None
    probs: Any = None
    target: int | None = None
    labels: Sequence[int] | None = None
    profile: Any = None
    source: str = ""


def as_array(value: Any) -> np.ndarray | None:
    """``value`` (a tensor, array or nested list) as a float32 array; None stays None."""
    if value is None:
        return None
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def image_uint8(image: Any) -> np.ndarray:
    """[0, 1] image (or uint8 0..255) of any common layout -> uint8 H x W or H x W x 3 (its own colours)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    a = as_array(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):  # C x H x W, torch's layout
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] != 3:
        a = a.mean(-1)
    return (np.clip(np.nan_to_num(a), 0, 1) * 255 + 0.5).astype(np.uint8)


def _coerce(item: ExplorerItem | Mapping) -> ExplorerItem:
    return item if isinstance(item, ExplorerItem) else ExplorerItem(**dict(item))


def as_ints(values: Any) -> list[int] | None:
    """``values`` flattened to a list of ints; None stays None."""
    if values is None:
        return None
    a = as_array(values).reshape(-1)
    return [int(v) for v in a]


def save_explorer_items(
    out: str | Path,
    items: Iterable[ExplorerItem | Mapping],
    class_names: Sequence[str] | None = None,
    name: str = "explorer.npz",
) -> Path:
    """Write ``items`` (at most :data:`MAX_ITEMS`) to ``out/name`` for the report's image explorer.

    Example (in a study, after the maps are computed)::

        save_explorer_items(out, [ExplorerItem(id=i, image=x, maps={"CE map": m}, probs=p, profile=z)
                                  for i, x, m, p, z in zip(ids, images, maps, probs, profiles)], class_names)
    """
    if not (name.startswith("explorer") and name.endswith(".npz")):
        raise ValueError(f"explorer file names match {FILE_GLOB}, not {name!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    meta_items = []
    for i, raw in enumerate(list(items)[:MAX_ITEMS]):
        item = _coerce(raw)
        boxes = as_array(item.boxes)
        entry = {
            "id": str(item.id),
            "target": None if item.target is None else int(item.target),
            "labels": as_ints(item.labels),
            "boxes": boxes.reshape(-1, 4).tolist() if boxes is not None and boxes.size else [],
            "box_labels": as_ints(item.box_labels) or [],
            "maps": [str(m) for m in item.maps],
            "probs": item.probs is not None,
            "profile": item.profile is not None,
            "source": item.source,
        }
        if item.image is not None:
            arrays[f"image_{i}"] = image_uint8(item.image)
        for j, m in enumerate(item.maps.values()):
            arrays[f"map_{i}_{j}"] = as_array(m).reshape(as_array(m).shape[-2:])
        if item.probs is not None:
            arrays[f"probs_{i}"] = as_array(item.probs).reshape(-1)
        if item.profile is not None:
            arrays[f"profile_{i}"] = as_array(item.profile).reshape(-1)
        meta_items.append(entry)
    meta = {"format": FORMAT, "class_names": [str(c) for c in class_names or []], "items": meta_items}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    path = out / name
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".explorer", suffix=".npz")
    with os.fdopen(fd, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)
    return path


def load_explorer_items(path: str | Path) -> tuple[list[ExplorerItem], list[str]]:
    """The items and class names of one explorer file (no pickle is loaded)."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["meta"].tobytes().decode())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{Path(path).name}: format {meta.get('format')!r}, expected {FORMAT}")
        items = []
        for i, e in enumerate(meta["items"]):
            items.append(
                ExplorerItem(
                    id=e["id"],
                    image=npz[f"image_{i}"] if f"image_{i}" in npz.files else None,
                    maps={m: npz[f"map_{i}_{j}"] for j, m in enumerate(e["maps"])},
                    boxes=np.asarray(e.get("boxes") or np.zeros((0, 4)), dtype=np.float32),
                    box_labels=e.get("box_labels") or [],
                    probs=npz[f"probs_{i}"] if e.get("probs") else None,
                    target=e.get("target"),
                    labels=e.get("labels"),
                    profile=npz[f"profile_{i}"] if e.get("profile") else None,
                    source=e.get("source", ""),
                )
            )
    return items, list(meta.get("class_names") or [])


def merge_items(groups: Iterable[list[ExplorerItem]]) -> list[ExplorerItem]:
    """Items of several files as one list; items with the same id are joined (maps added, missing fields filled)."""
    merged: dict[str, ExplorerItem] = {}
    for items in groups:
        for item in items:
            have = merged.get(item.id)
            if have is None:
                merged[item.id] = ExplorerItem(**{**item.__dict__, "maps": dict(item.maps)})
                continue
            for name, m in item.maps.items():
                have.maps.setdefault(name, m)
            for attr in ("image", "boxes", "box_labels", "probs", "target", "labels", "profile"):
                mine = getattr(have, attr)
                if mine is None or (hasattr(mine, "__len__") and len(mine) == 0):
                    setattr(have, attr, getattr(item, attr))
            have.source = ", ".join(dict.fromkeys(s for s in (have.source, item.source) if s))
    return list(merged.values())[:MAX_ITEMS]


def _label_indices(labels: Any) -> list[list[int]] | None:
    """A batch's labels as class indices per image: N class indices (single-label) or N x K multi-hot."""
    if labels is None:
        return None
    a = as_array(labels)
    if a.ndim == 1:
        return [[int(v)] for v in a]
    return [[int(j) for j in np.flatnonzero(row > 0.5)] for row in a]


def save_explorer_batch(
    out: str | Path,
    images: Any,
    maps: Mapping[str, Any],
    ids: Sequence[str],
    *,
    boxes: Sequence[Any] | None = None,
    box_labels: Sequence[Any] | None = None,
    probs: Any = None,
    targets: Any = None,
    labels: Any = None,
    profiles: Any = None,
    class_names: Sequence[str] | None = None,
    source: str = "",
    name: str = "explorer.npz",
) -> Path:
    """:func:`save_explorer_items` for a batch, in one call: tensors with the batch first.

    Args:
        images: B x C x H x W in [0, 1].
        maps: method name -> B x H x W.
        ids: B names the reader knows the images by (relative file names, dataset ids).
        boxes: B tensors of N_i x 4 true boxes; box_labels: B tensors of N_i class indices.
        probs: B x K predicted probabilities; targets: B classes the maps explain.
        labels: B class indices, or B x K multi-hot; profiles: B x J latent CE profiles.

    Example (the demo, after its CE maps and latent profiles)::

        save_explorer_batch(out, batch.images, {"CE map": maps}, batch.ids, boxes=batch.boxes,
        box_labels=batch.box_labels,
                            probs=probs, labels=batch.labels, profiles=profiles, class_names=clf.class_names,
                            source="demo")
    """
    n = min(len(ids), MAX_ITEMS)
    label_lists = _label_indices(labels)
    target_list = as_ints(targets)
    items = [
        ExplorerItem(
            id=str(ids[i]),
            image=images[i],
            maps={m: v[i] for m, v in maps.items()},
            boxes=boxes[i] if boxes is not None else None,
            box_labels=as_ints(box_labels[i]) if box_labels is not None else None,
            probs=probs[i] if probs is not None else None,
            target=target_list[i] if target_list is not None else None,
            labels=label_lists[i] if label_lists is not None else None,
            profile=profiles[i] if profiles is not None else None,
            source=source,
        )
        for i in range(n)
    ]
    return save_explorer_items(out, items, class_names, name=name)


def relative_names(paths: Sequence[str | Path]) -> list[str]:
    """File names as the reader knows them: relative to the folder that holds them all (``scans/p1/view.png``), never
    cut short."""
    paths = [Path(p) for p in paths]
    if not paths:
        return []
    parents = [p.resolve().parent for p in paths]
    root = Path(os.path.commonpath(parents)) if len({p.anchor for p in parents}) == 1 else None
    return [p.resolve().relative_to(root).as_posix() if root else p.as_posix() for p in paths]
