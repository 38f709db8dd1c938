"""The real material behind synthcxr: torchxrayvision's 517 lung-field masks and ChestX-ray14's radiologist boxes.

Both files ship inside the torchxrayvision package, so nothing is downloaded. Masks are
decoded once at ``MASK_RES`` pixels and cached under the cemap cache root.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import os
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..cache import cache_root, load_npz_cached, write_failed
from ..errors import CemapError

MASK_RES = 256
NIH_BOX_SCALE = 1024.0  # ChestX-ray14 boxes are given in the 1024 x 1024 pixels of the distributed PNGs
MIN_LUNG_FRACTION = 0.05  # each of the two lungs must cover at least this much of the image


def xrv_data_dir() -> Path:
    """torchxrayvision's data folder, found without importing it (its import is slow and silences warnings)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or spec.origin is None:  # pragma: no cover - a declared dependency
        raise CemapError(
            "torchxrayvision is not installed", "pip install torchxrayvision; synthcxr uses the data it ships"
        )
    return Path(spec.origin).parent / "data"


def _decode_masks(zip_path: Path) -> tuple[np.ndarray, list[str]]:
    masks, names = [], []
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(n for n in zf.namelist() if not n.endswith("/")):
            from PIL import Image

            img = Image.open(io.BytesIO(zf.read(name))).convert("L")
            img.draft("L", (2 * MASK_RES, 2 * MASK_RES))
            masks.append(np.asarray(img.resize((MASK_RES, MASK_RES), Image.BILINEAR)) > 127)
            names.append(Path(name).name)
    return np.stack(masks), names


def _two_lungs(mask: np.ndarray) -> bool:
    """True when the mask holds two lungs of reasonable size (82 of the 517 files are empty)."""
    from scipy import ndimage  # imported on use: scipy.ndimage costs seconds at `import cemap`

    labels, n = ndimage.label(mask)
    if n < 2:
        return False
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    return bool(sizes[1] >= MIN_LUNG_FRACTION * mask.size)


@lru_cache(maxsize=1)
def lung_masks() -> tuple[np.ndarray, tuple[str, ...]]:
    """(M x 256 x 256 bool masks, their file names), usable masks only, in a fixed order."""
    path = cache_root() / "synthcxr" / f"lung_masks_{MASK_RES}.npz"
    cached = load_npz_cached(path, ("bits", "names"))  # a damaged file is moved aside and decoded again
    if cached is not None:
        return np.unpackbits(cached["bits"], axis=-1)[..., :MASK_RES].astype(bool), tuple(cached["names"].tolist())
    masks, names = _decode_masks(xrv_data_dir() / "semantic_masks_v7labs_lungs.zip")
    keep = [i for i, m in enumerate(masks) if _two_lungs(m)]
    masks, names = masks[keep], [names[i] for i in keep]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npz")
    try:
        np.savez_compressed(tmp, bits=np.packbits(masks, axis=-1), names=np.array(names))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from exc
    return masks, tuple(names)


@lru_cache(maxsize=1)
def nih_boxes() -> dict[str, np.ndarray]:
    """Finding -> N x 4 (x, y, w, h) radiologist boxes in ChestX-ray14's 1024-pixel coordinates."""
    rows: dict[str, list[list[float]]] = {}
    with gzip.open(xrv_data_dir() / "BBox_List_2017.csv.gz", "rt") as f:
        reader = csv.reader(f)
        next(reader)
        for row in reader:
            rows.setdefault(row[1], []).append([float(v) for v in row[2:6]])
    return {k: np.array(v, dtype=np.float64) for k, v in rows.items()}
