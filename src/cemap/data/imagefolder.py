"""imagefolder: any class-per-folder tree (root/<class>/<image>), like torchvision's ImageFolder.

If ``root`` has a subfolder named after the split (root/train, root/test), that subfolder is
the tree for the split; otherwise ``root`` itself serves every split. Classes are the sorted
subfolder names, or ``class_names`` when given (to match a model's output order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..errors import CemapError
from .base import ImageDataset, Sample
from .images import check_shape, is_image_file, read_image
from .registry import register_dataset


@register_dataset("imagefolder")
class ImageFolder(ImageDataset):
    name = "imagefolder"
    multilabel = False

    def __init__(
        self,
        split: str = "test",
        root: str | Path | None = None,
        size: int | None = 224,
        channels: int = 3,
        class_names: Sequence[str] | None = None,
    ) -> None:
        check_shape(size, channels)
        if root is None or not Path(root).expanduser().is_dir():
            raise CemapError(
                f"image folder not found: {root}", "pass root=... pointing at a folder with one subfolder per class"
            )
        base = Path(root).expanduser()
        tree = base / split if (base / split).is_dir() else base
        found = sorted(p.name for p in tree.iterdir() if p.is_dir())
        if isinstance(class_names, str):  # "a,b,c" from a command line, never a list of single characters
            class_names = [c.strip() for c in class_names.split(",") if c.strip()]
        self.class_names = list(class_names) if class_names is not None else found
        missing = [c for c in self.class_names if not (tree / c).is_dir()]
        if not self.class_names or missing:
            raise CemapError(
                f"class folders missing under {tree}: {missing or 'none found'}", "expected root/<class>/<image files>"
            )
        self.files = [
            (p, c)
            for c, name in enumerate(self.class_names)
            for p in sorted((tree / name).rglob("*"))
            if p.is_file() and is_image_file(p)
        ]
        if not self.files:
            raise CemapError(f"no image files under {tree}", "supported: png, jpg, jpeg, bmp, tif, tiff, dcm")
        self.root, self.size, self.channels = tree, size, channels

    def __len__(self) -> int:
        return len(self.files)

    def item_id(self, index: int) -> str:
        """The file's path relative to the class tree (what errors.jsonl and the results call the image)."""
        return str(self.files[index][0].relative_to(self.root))

    def __getitem__(self, index: int) -> Sample:
        path, label = self.files[index]
        return Sample(
            image=read_image(path, self.channels, self.size),
            labels=torch.tensor(label),
            id=str(path.relative_to(self.root)),
        )
