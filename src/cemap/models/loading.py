"""Safe checkpoint loading: weights only, never arbitrary pickled code."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Sequence

import torch

from ..errors import CemapError


def load_state_dict_file(path: str | Path, allowed: Sequence[type] = ()) -> dict[str, torch.Tensor]:
    """Load a state dict (or a {'state_dict': ...} checkpoint) with ``weights_only=True``.

    ``allowed`` names the only extra classes the unpickler may build (e.g. torchxrayvision's
    network classes, whose release files pickle whole modules); a module found is reduced to its state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CemapError(f"weights file not found: {path}", "check the path passed to --weights")
    kind = _not_a_checkpoint(path)
    if kind is not None:
        raise CemapError(
            f"{path} is not a PyTorch checkpoint ({kind})",
            "pass the .pt/.pth file saved with torch.save(model.state_dict(), path)",
        )
    try:
        with torch.serialization.safe_globals(list(allowed)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CemapError(
            f"refusing to load {path}: it is not a weights-only checkpoint",
            "it contains pickled code objects; re-save it with torch.save(model.state_dict(), path) from a trusted "
            "source",
        ) from exc
    except Exception as exc:  # corrupt or not a torch file at all
        from ..cache import damage

        with open(path, "rb") as fh:
            zipped = fh.read(2) == b"PK"
        problem = damage(path) if zipped or zipfile.is_zipfile(path) else None
        what = f"it {problem}" if problem else exc.__class__.__name__
        raise CemapError(f"cannot read checkpoint {path} ({what})", "is it a complete PyTorch .pt/.pth file?") from exc
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CemapError(
            f"{path} holds a {type(obj).__name__}, not a state dict", "save model.state_dict() instead of the model"
        )
    return obj


_MAGIC = {
    b"\xff\xd8\xff": "it is a JPEG image",
    b"\x89PNG": "it is a PNG image",
    b"GIF8": "it is a GIF image",
    b"BM": "it is a BMP image",
    b"II*\x00": "it is a TIFF image",
    b"MM\x00*": "it is a TIFF image",
    b"%PDF": "it is a PDF document",
    b"\x93NUMPY": "it is a NumPy .npy array",
    b"\x1f\x8b": "it is gzip-compressed; decompress it first",
    b"\x89HDF": "it is an HDF5 (Keras) file",
}


def _not_a_checkpoint(path: Path) -> str | None:
    """What ``path`` is when it is plainly not a torch checkpoint (an image, an empty file, ...), else None."""
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        return "the file is empty"
    if head.startswith(b"PK") or head[:1] == b"\x80":  # torch's zip format, or a legacy pickle
        return None
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return what
    if head[:4] in (b"\x00\x00\x00\x0c", b"\x00\x00\x00\x18") or head.lstrip()[:1] in (b"{", b"<"):
        return "it looks like a text or image file"
    return None


def load_into(
    net: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path, arch: str | None = None
) -> None:
    """``net.load_state_dict(state)``, with a one-line CemapError when the weights belong to another architecture."""
    what = f"the {arch} architecture" if arch else "this architecture"
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes differ: another architecture, width or number of classes
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("size mismatch")]
        first = lines[0].rstrip(".") if lines else str(exc).splitlines()[0]
        more = f"; {len(lines) - 1} more mismatches" if len(lines) > 1 else ""
        raise CemapError(
            f"weights in {source} do not fit {what} ({first}{more})",
            "check the model name, or the number of classes of the checkpoint",
        ) from exc
    if result.missing_keys or result.unexpected_keys:
        n_miss, n_extra = len(result.missing_keys), len(result.unexpected_keys)
        raise CemapError(
            f"weights in {source} do not fit {what} "
            f"({n_miss} missing keys, e.g. {result.missing_keys[:2]}; {n_extra} unexpected keys, e.g. "
            f"{result.unexpected_keys[:2]})",
            "check the model name: these weights were saved from another architecture",
        )
