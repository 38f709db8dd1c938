"""The one way cemap writes JSON: every file parses with a strict parser.

``json.dumps`` writes a NaN as a bare ``NaN`` (and infinities as ``Infinity``), which is not JSON:
strict parsers (JavaScript's ``JSON.parse``, ``json.load(..., parse_constant=...)`` that refuses them)
fail on the whole file. A result that could not be computed (an interval with too few samples) is
therefore written as ``null``. Numpy scalars and arrays, tuples and paths become their plain JSON
forms; any other object is a ``TypeError`` (a result is never written as its ``repr``).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path, PurePath
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` with NaN / infinities as None and numpy values, tuples and paths as plain JSON values."""
    if isinstance(value, dict):
        return {_key(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(jsonable(key)).strip('"')


def dumps(value: Any, indent: int | None = 2, compact: bool = False, sort_keys: bool = False) -> str:
    """Strict JSON text of ``value`` (``compact``: no spaces after separators, for large files)."""
    separators = (",", ":") if compact else None
    return json.dumps(jsonable(value), indent=indent, separators=separators, sort_keys=sort_keys, allow_nan=False)


def write_json(
    path: str | Path, value: Any, indent: int | None = 2, compact: bool = False, sort_keys: bool = False
) -> Path:
    """Write ``value`` to ``path`` through a temporary sibling and a rename, so a crash never leaves half a file.

    A failed write (a full disk, say) removes the temporary file and raises one CemapError naming ``path``.
    """
    from .cache import write_failed

    path = Path(path)
    text = dumps(value, indent=indent, compact=compact, sort_keys=sort_keys)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise write_failed(path, exc) from exc
    return path
