"""nih: a ChestX-ray14 folder as distributed (images/, Data_Entry_2017*.csv, BBox_List_2017.csv).

Labels are the 14 findings (CheXNet's order unless ``findings`` says otherwise); boxes are
scaled from each image's native pixels to ``size``. Unlike torchxrayvision's NIH_Dataset
defaults (PA views only, one image per patient, which keep about 125 of the 880 boxed
images), every view and every image is kept, and an image carries all of its boxes. Split
'boxed' is exactly the images that have boxes. Images are read with cemap's own reader so
they come out in [0, 1] (torchxrayvision's loader rescales to [-1024, 1024]); where the
folder lacks a metadata CSV, the copy torchxrayvision ships is used.
"""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CemapError
from .base import ImageDataset, Sample
from .images import check_shape, is_image_file, load_image, resize
from .registry import register_dataset
from .synthcxr_anatomy import xrv_data_dir

CHEXNET_FINDINGS = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]
BOX_NAME_FIXES = {"Infiltrate": "Infiltration"}  # BBox_List_2017 and Data_Entry_2017 spell it differently
SPLITS = ("all", "boxed", "train", "test")
SPLIT_LISTS = {"train": "train_val_list.txt", "test": "test_list.txt"}


def _open_csv(path: Path):
    return gzip.open(path, "rt", newline="") if path.suffix == ".gz" else open(path, newline="")


def _find_csv(root: Path, pattern: str, shipped: str) -> Path:
    found = sorted(root.glob(pattern))
    return found[-1] if found else xrv_data_dir() / shipped


def image_paths(root: Path) -> dict[str, Path]:
    """File name -> path for images under images/, images_*/images/ or images_*/ (the distributed layouts)."""
    folders = [
        root / "images",
        *sorted(root.glob("images_*/images")),
        *sorted(p for p in root.glob("images_*") if p.is_dir()),
    ]
    paths: dict[str, Path] = {}
    for folder in folders:
        if folder.is_dir():
            with os.scandir(folder) as it:
                paths.update({e.name: Path(e.path) for e in it if e.is_file() and is_image_file(e.name)})
    return paths


def read_entries(path: Path) -> dict[str, tuple[set[str], str]]:
    """Image name -> (findings, view position) from Data_Entry_2017*.csv."""
    with _open_csv(path) as f:
        reader = csv.DictReader(f)
        return {
            r["Image Index"]: (set(r["Finding Labels"].split("|")) - {"No Finding"}, r["View Position"]) for r in reader
        }


def read_boxes(path: Path) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """Image name -> [(finding, x, y, w, h) in native pixels] from BBox_List_2017.csv."""
    boxes: dict[str, list[tuple[str, float, float, float, float]]] = {}
    with _open_csv(path) as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            if len(row) >= 6 and row[0]:
                name = BOX_NAME_FIXES.get(row[1], row[1])
                boxes.setdefault(row[0], []).append((name, *map(float, row[2:6])))
    return boxes


@register_dataset("nih")
class NIHChestXray14(ImageDataset):
    name = "nih"
    multilabel = True

    def __init__(
        self,
        split: str = "test",
        root: str | Path | None = None,
        size: int = 224,
        channels: int = 3,
        findings: Sequence[str] | None = None,
        views: Sequence[str] = ("PA", "AP"),
    ) -> None:
        check_shape(size, channels)
        root = Path(root or os.environ.get("CEMAP_NIH_ROOT", "")).expanduser()
        if not str(root) or not root.is_dir():
            raise CemapError(
                f"ChestX-ray14 folder not found: {root or '(none given)'}",
                "pass root=... (or set CEMAP_NIH_ROOT) to the folder holding images/ and the CSVs",
            )
        if split not in SPLITS:
            raise CemapError(f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
        self.class_names = list(findings or CHEXNET_FINDINGS)
        unknown = set(self.class_names) - set(CHEXNET_FINDINGS)
        if unknown:
            raise CemapError(
                f"unknown findings {sorted(unknown)}", f"ChestX-ray14 findings: {', '.join(CHEXNET_FINDINGS)}"
            )
        self.root, self.size, self.channels = root, size, channels
        paths = image_paths(root)
        if not paths:
            raise CemapError(f"no images under {root}", "expected images/*.png (or images_001/images/*.png ...)")
        entries = read_entries(_find_csv(root, "Data_Entry_2017*.csv", "Data_Entry_2017_v2020.csv.gz"))
        self.all_boxes = read_boxes(_find_csv(root, "BBox_List_2017.csv", "BBox_List_2017.csv.gz"))
        names = sorted(n for n in paths if n in entries and entries[n][1] in views)
        if split == "boxed":
            names = [n for n in names if n in self.all_boxes]
        elif split in SPLIT_LISTS:
            listed = root / SPLIT_LISTS[split]
            if not listed.is_file():
                raise CemapError(
                    f"{listed} not found",
                    "the official split lists come with ChestX-ray14; or use split='all' or 'boxed'",
                )
            keep = set(listed.read_text().split())
            names = [n for n in names if n in keep]
        self.names = names
        self.paths = [paths[n] for n in names]
        index = {c: i for i, c in enumerate(self.class_names)}
        self.labels = torch.zeros(len(names), len(self.class_names))
        for i, n in enumerate(names):
            for finding in entries[n][0] & index.keys():
                self.labels[i, index[finding]] = 1.0

    def __len__(self) -> int:
        return len(self.names)

    def item_id(self, index: int) -> str:
        """The image's file name, as in Data_Entry_2017.csv (what errors.jsonl calls an unreadable image)."""
        return self.names[index]

    def __getitem__(self, index: int) -> Sample:
        native = load_image(self.paths[index], self.channels)
        h, w = native.shape[-2:]
        rows = [b for b in self.all_boxes.get(self.names[index], []) if b[0] in self.class_names]
        scale = torch.tensor([self.size / w, self.size / h, self.size / w, self.size / h])
        boxes = (
            torch.tensor([[x, y, x + bw, y + bh] for _, x, y, bw, bh in rows], dtype=torch.float32).reshape(-1, 4)
            * scale
        )
        box_labels = torch.tensor([self.class_names.index(b[0]) for b in rows], dtype=torch.long)
        return Sample(
            image=resize(native, self.size),
            labels=self.labels[index],
            id=self.names[index],
            boxes=boxes,
            box_labels=box_labels,
        )
