"""Where trained models, autoencoders and tuned settings are kept between runs.

The cache root is ``$CEMAP_CACHE`` if set, else ``~/.cache/cemap``. Entries are keyed by a
hash of the configuration that produced them, so a changed configuration retrains.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch


def cache_root() -> Path:
    root = Path(os.environ.get("CEMAP_CACHE", Path.home() / ".cache" / "cemap")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_path(kind: str, name: str, config: dict[str, Any], suffix: str = ".pt") -> Path:
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{config_key(config)}{suffix}"


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write with torch.save to a temporary file, then rename, so a crash never leaves half a file."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_json_atomic(obj: Any, path: Path) -> None:
    """JSON counterpart of :func:`save_atomic` (small results such as tuned settings)."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def load_weights(path: Path) -> dict[str, Any]:
    """Load a checkpoint without executing code (weights_only=True)."""
    return torch.load(path, map_location="cpu", weights_only=True)
