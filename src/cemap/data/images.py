"""Reading image files (PNG, JPEG, TIFF, BMP, DICOM) into float tensors in [0, 1].

``read_image(path, channels, size)`` is the one call most code needs; ``load_image`` keeps the
native size (for scaling boxes) and ``resize`` does the rest. A corrupt or unreadable file is a
CemapError naming the file, never a bare PIL/pydicom traceback.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CemapError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
DICOM_SUFFIXES = (".dcm", ".dicom")


def is_image_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _pil_array(path: Path) -> np.ndarray:
    """H x W or H x W x 3 float32 in [0, 1]; 16-bit grayscale keeps its full range."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float32)
            return arr / (65535.0 if img.mode != "I" or arr.max() > 255 else 255.0)
        if img.mode == "F":
            arr = np.asarray(img, dtype=np.float32)
            return (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-8)
        if img.mode == "LA":
            img = img.convert("L")
        elif img.mode not in ("L", "RGB"):  # RGBA, palette, CMYK, ... (some ChestX-ray14 PNGs are RGBA)
            img = img.convert("RGB")
        return np.asarray(img, dtype=np.float32) / 255.0


def _dicom_array(path: Path) -> np.ndarray:
    """H x W in [0, 1]: modality rescale applied, MONOCHROME1 inverted (so bone is bright), min-max scaled."""
    import pydicom

    ds = pydicom.dcmread(path)
    arr = ds.pixel_array.astype(np.float32)
    if arr.ndim == 3 and arr.shape[-1] != 3:  # multi-frame: take the first frame
        arr = arr[0]
    arr = arr * float(getattr(ds, "RescaleSlope", 1) or 1) + float(getattr(ds, "RescaleIntercept", 0) or 0)
    arr = (arr - arr.min()) / max(float(arr.max() - arr.min()), 1e-8)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        arr = 1.0 - arr
    return arr


def check_shape(size, channels: int) -> None:
    """Refuse an image size or channel count no image can have when the dataset is built, so a run names it before any
    work instead of failing on every image (``size=-1`` would reach the resize of each one)."""
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size >= 1):
        raise CemapError(f"image size {size!r} must be a positive number of pixels", "e.g. --data-opt size=224")
    if channels not in (1, 3):
        raise CemapError(f"cannot make {channels}-channel images", "use channels=1 (grayscale) or channels=3 (RGB)")


def load_image(path: str | Path, channels: int = 1) -> torch.Tensor:
    """C x H x W float tensor in [0, 1] at the file's native size; ``channels`` is 1 (gray) or 3 (RGB)."""
    path = Path(path)
    check_shape(None, channels)
    if not path.is_file():
        raise CemapError(f"image file not found: {path}", "check the dataset folder")
    try:
        arr = _dicom_array(path) if path.suffix.lower() in DICOM_SUFFIXES else _pil_array(path)
    except Exception as exc:  # PIL.UnidentifiedImageError, OSError on truncation, pydicom errors, ...
        raise CemapError(
            f"cannot read image {path}: {exc.__class__.__name__}: {exc}",
            "the file is corrupt or not an image; remove or replace it",
        ) from exc
    img = torch.from_numpy(np.ascontiguousarray(arr))
    img = img.permute(2, 0, 1) if img.dim() == 3 else img.unsqueeze(0)
    if img.shape[0] != channels:
        img = img.mean(0, keepdim=True) if channels == 1 else img.expand(3, -1, -1)
    return img.contiguous().clamp(0, 1)


def resize(image: torch.Tensor, size: int | tuple[int, int] | None) -> torch.Tensor:
    """Bilinear (antialiased) resize of a C x H x W image to ``size`` (square side or (H, W)); None keeps it."""
    if size is None:
        return image
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(image.shape[-2:]) == hw:
        return image
    return F.interpolate(image[None], size=hw, mode="bilinear", antialias=True, align_corners=False)[0].clamp(0, 1)


def read_image(path: str | Path, channels: int = 1, size: int | tuple[int, int] | None = None) -> torch.Tensor:
    """C x H x W float tensor in [0, 1], resized to ``size`` when given."""
    return resize(load_image(path, channels), size)
