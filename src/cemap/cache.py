"""Where trained models, autoencoders and tuned settings are kept between runs.

The cache root is ``$CEMAP_CACHE`` if set, else ``~/.cache/cemap``. Entries are keyed by a
hash of the configuration that produced them, so a changed configuration retrains.

Every entry verifies itself before it is used: a torch checkpoint is a zip archive whose
members carry CRC-32 checksums, and :func:`load_cached` checks them all (``torch.load`` does
not). A damaged entry (zero bytes, half a file, flipped bytes) is never used: it is moved
aside to ``<name>.damaged``, a warning names it, and the caller rebuilds it.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CemapError, warn

log = logging.getLogger(__name__)

DAMAGED_SUFFIX = ".damaged"


def cache_root() -> Path:
    root = Path(os.environ.get("CEMAP_CACHE", Path.home() / ".cache" / "cemap")).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CemapError(
            f"cannot create the cache folder {root} ({exc.strerror or exc})", "set CEMAP_CACHE to a writable folder"
        ) from exc
    return root


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cache_path(kind: str, name: str, config: dict[str, Any], suffix: str = ".pt") -> Path:
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}-{config_key(config)}{suffix}"


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc`` (or an exception it was raised from) is 'no space left on device' or over quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "file write failed" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(path: Path, exc: BaseException) -> CemapError:
    path = Path(path)
    in_run = any((p / "config.json").is_file() for p in (path.parent, path.parent.parent))  # inside a cemap run folder
    again = (
        "continue with the same command plus --resume: every committed shard is kept"
        if in_run
        else "rerun: nothing already written was lost"
    )
    return CemapError(
        f"no space left on the device while writing {path}",
        f"free some space (or choose another --out / CEMAP_CACHE), then {again}",
    )


def torch_writer_error(exc: BaseException) -> bool:
    """torch.save's zip writer reports a failed write (a full disk among others) as a RuntimeError without errno."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "inline_container" in text or "unexpected pos" in text or "PytorchStreamWriter" in text
    )


def nearly_full(folder: Path) -> bool:
    """Less than 4 MiB free where ``folder`` lives (a torch writer's failure there is a full disk)."""
    try:
        return shutil.disk_usage(folder).free < 4 << 20
    except OSError:
        return False


def write_failed(path: Path, exc: BaseException) -> CemapError:
    """The one-line error for a failed write of ``path``."""
    path = Path(path)
    if is_disk_full(exc) or (torch_writer_error(exc) and nearly_full(path.parent)):
        return disk_full_error(path, exc)
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else f"{type(exc).__name__}: {exc}"
    return CemapError(f"could not write {path} ({reason})", "check that the folder is writable and has free space")


def save_atomic(obj: dict[str, Any], path: Path) -> None:
    """Write with torch.save to a temporary file, then rename, so a crash never leaves half a file.

    A full disk (or any other write failure) removes the temporary file and raises one CemapError
    naming ``path``; an older complete entry at ``path`` is left untouched.
    """
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from exc


def save_json_atomic(obj: Any, path: Path) -> None:
    """JSON counterpart of :func:`save_atomic` (small results such as tuned settings)."""
    tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(obj, indent=1))
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from exc


def damage(path: Path) -> str | None:
    """Why the checkpoint at ``path`` cannot be trusted, or None when every zip member's CRC checks out."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile:
        return "is not a complete checkpoint (truncated or overwritten)"
    except (OSError, EOFError, ValueError, RuntimeError) as exc:  # zlib/struct errors inside a damaged archive
        return f"is damaged ({type(exc).__name__})"
    if bad is not None:
        return f"is damaged (checksum mismatch in {bad})"
    return None


def move_aside(path: Path, reason: str) -> Path:
    """Rename a damaged entry (file or folder) to ``<path>.damaged`` (replacing an older one) and warn on stderr."""
    aside = path.with_name(path.name + DAMAGED_SUFFIX)
    try:
        if aside.is_dir():
            shutil.rmtree(aside)
        os.replace(path, aside)
    except OSError:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        aside = path
    message = f"cache entry {path} {reason}; moved aside to {aside.name} and rebuilding it"
    log.debug(message)
    warn(message)
    return aside


def load_weights(path: Path) -> dict[str, Any]:
    """Load a checkpoint without executing code (weights_only=True), after checking its CRCs.

    A damaged file is a CemapError that names it and says to delete it; nothing is moved.
    """
    path = Path(path)
    problem = damage(path)
    if problem is not None:
        raise CemapError(f"{path} {problem}", f"delete it (rm '{path}') and rerun to rebuild it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an archive with valid CRCs but not a torch checkpoint
        raise CemapError(
            f"{path} is not a readable checkpoint ({type(exc).__name__})",
            f"delete it (rm '{path}') and rerun to rebuild it",
        ) from exc


def load_cached(path: Path) -> dict[str, Any] | None:
    """A cache entry's contents, or None on a miss - including a damaged entry, which is moved aside (never used)."""
    path = Path(path)
    if not path.exists():
        return None
    problem = damage(path)
    if problem is None:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            problem = f"is not a readable checkpoint ({type(exc).__name__})"
        else:
            if isinstance(obj, dict):
                return obj
            problem = f"holds a {type(obj).__name__}, not a cache entry"
    move_aside(path, problem)
    return None


def load_npz_cached(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The arrays of a cached ``.npz`` (pickles refused), or None on a miss - including a damaged file (zero bytes,
    truncated, a CRC mismatch, an array missing), which is moved aside with a warning naming it, never used."""
    import numpy as np

    path = Path(path)
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
        if bad is not None:
            raise ValueError(f"checksum mismatch in {bad}")
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
        missing = sorted(set(required) - set(arrays))
        if missing:
            raise ValueError(f"missing arrays {missing}")
        return arrays
    except (OSError, EOFError, ValueError, KeyError, RuntimeError, zipfile.BadZipFile) as exc:
        move_aside(path, f"is damaged ({type(exc).__name__}{': ' + str(exc) if str(exc) else ''})")
        return None


def load_json_cached(path: Path, required: tuple[str, ...] = ()) -> Any | None:
    """A cached JSON object, or None on a miss - including a damaged file (empty, cut short, not an object, a key
    missing), which is moved aside with a warning naming it, never used."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
        if not isinstance(value, dict) or any(k not in value for k in required):
            raise ValueError("not the object that was stored")
        return value
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        move_aside(path, f"is damaged ({type(exc).__name__}: {exc})")
        return None
