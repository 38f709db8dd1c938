"""Study stages kept between runs, so that rerunning ``cemap demo`` unchanged restores instead of recomputing.

An entry is keyed by everything that decides a stage's output: its name and settings, the
model's weights, the torch version, and the cemap source code itself - any edit to the package
recomputes. It holds the stage's return value (JSON) and the files the stage wrote into the run
folder; a hit copies those files back and returns the value, with the time the computation took.
Entries are written to a temporary folder and renamed, so an interrupted run leaves none half-made.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..cache import cache_path
from ..jsonio import dumps

MANIFEST = "stage.json"


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """A hash of every Python file of the installed cemap package (path and bytes)."""
    root = Path(__file__).resolve().parent.parent  # the cemap package
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in folder.rglob("*")
        if p.is_file()
    }


def stage_entry(name: str, key: dict[str, Any]) -> Path:
    """The cache folder of stage ``name`` under settings ``key`` (it may not exist yet)."""
    return cache_path(
        "study", name, {**key, "stage": name, "code": source_fingerprint(), "torch": torch.__version__}, suffix=""
    )


def run_cached(
    name: str, key: dict[str, Any], out: Path, compute: Callable[[], Any], reuse: bool = True
) -> tuple[Any, dict]:
    """``compute()`` (which writes into ``out`` and returns JSON-able data) or its stored result.

    Returns (value, provenance): provenance says ``computed_s`` and, on a hit, ``restored_from``.
    ``reuse=False`` recomputes and overwrites the entry.
    """
    entry = stage_entry(name, key)
    manifest = entry / MANIFEST
    stored = _verified(entry) if reuse and manifest.exists() else None  # a damaged entry is moved aside, never restored
    if stored is not None:
        for rel in stored["files"]:
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(entry / "files" / rel, out / rel)
        return stored["value"], {"computed_s": stored["seconds"], "restored_from": str(entry)}
    before = _snapshot(out)
    t0 = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - t0
    written = sorted(rel for rel, stamp in _snapshot(out).items() if before.get(rel) != stamp)
    _store(entry, value, written, out, seconds)
    return value, {"computed_s": seconds}


def _store(entry: Path, value: Any, written: list[str], out: Path, seconds: float) -> None:
    tmp = entry.with_name(f"{entry.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for rel in written:
        (tmp / "files" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(out / rel, tmp / "files" / rel)
    tmp.mkdir(parents=True, exist_ok=True)
    digests = {rel: _sha256(tmp / "files" / rel) for rel in written}
    (tmp / MANIFEST).write_text(
        dumps({"value": value, "files": written, "sha256": digests, "seconds": seconds}, indent=None)
    )
    shutil.rmtree(entry, ignore_errors=True)
    try:
        os.replace(tmp, entry)
    except OSError:  # another run stored the same stage in the meantime: keep theirs
        shutil.rmtree(tmp, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verified(entry: Path) -> dict | None:
    """The entry's stage.json when it and every stored file are intact (each file's SHA-256 as stored), else None:
    the damaged entry is then moved aside with a warning naming it, and the stage is computed again."""
    from ..cache import move_aside

    try:
        stored = json.loads((entry / MANIFEST).read_text())
        digests = stored.get("sha256")
        for rel in stored["files"]:
            if digests is not None and _sha256(entry / "files" / rel) != digests.get(rel):
                raise ValueError(f"{rel} does not match its checksum")
        stored["value"], stored["seconds"]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        move_aside(entry, f"is damaged ({exc})")
        return None
    return stored
