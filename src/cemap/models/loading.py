"""Safe checkpoint loading: weights only, never arbitrary pickled code."""

from __future__ import annotations

import pickle
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
    try:
        with torch.serialization.safe_globals(list(allowed)):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CemapError(
            f"refusing to load {path}: it is not a weights-only checkpoint",
            "it contains pickled code objects; re-save it with torch.save(model.state_dict(), path) from a trusted source",
        ) from exc
    except Exception as exc:  # corrupt or not a torch file at all
        raise CemapError(f"cannot read checkpoint {path}: {exc.__class__.__name__}", "is it a PyTorch .pt/.pth file?") from exc
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CemapError(f"{path} holds a {type(obj).__name__}, not a state dict", "save model.state_dict() instead of the model")
    return obj
