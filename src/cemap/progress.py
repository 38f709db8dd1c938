"""One switch for progress bars, so ``--quiet`` silences every long step."""

from __future__ import annotations

import os
import sys

_ENABLED: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """True or False forces bars on or off; None returns to the default (a terminal and no CEMAP_QUIET)."""
    global _ENABLED
    _ENABLED = enabled


def progress_enabled() -> bool:
    if _ENABLED is not None:
        return _ENABLED
    return os.environ.get("CEMAP_QUIET", "") == "" and sys.stderr.isatty()
