"""One switch for progress, so ``--quiet`` silences every long step, and long steps that report as bars on a terminal
and as plain lines in a log."""

from __future__ import annotations

import os
import sys
import time

_ENABLED: bool | None = None


def set_progress(enabled: bool | None) -> None:
    """True or False forces bars on or off; None returns to the default (a terminal and no CEMAP_QUIET)."""
    global _ENABLED
    _ENABLED = enabled


def progress_enabled() -> bool:
    if _ENABLED is not None:
        return _ENABLED
    return os.environ.get("CEMAP_QUIET", "") == "" and sys.stderr.isatty()


def quiet() -> bool:
    """No progress output at all: ``--quiet`` (set_progress(False)) or CEMAP_QUIET."""
    return _ENABLED is False or (_ENABLED is None and os.environ.get("CEMAP_QUIET", "") != "")


FIRST_LINE_S = 2.0  # the first estimate, once a few steps have set the pace
EVERY_S = 30.0  # then one line per this many seconds: a log file shows a long step advancing, without flooding


class PlainProgress:
    """Progress as plain lines on stderr, for logs and pipes where a bar would be one unreadable line: the step and its
    size first, then every so often how far it is and about how long is left, and the time it took at the end."""

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.done, self.postfix = 0, ""
        self.start = time.monotonic()
        self.next_at = self.start + FIRST_LINE_S
        self._line(f"{total} {unit}s")

    def _line(self, text: str) -> None:
        print(f"{self.desc}: {text}", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now >= self.next_at and self.done < self.total:
            self.next_at = now + EVERY_S
            elapsed = now - self.start
            left = elapsed / self.done * (self.total - self.done)
            self._line(
                f"{self.done}/{self.total} {self.unit}s, {duration(elapsed)} so far, about {duration(left)} left"
                + (f" ({self.postfix})" if self.postfix else "")
            )

    def set_postfix(self, **values) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in values.items())

    def close(self) -> None:
        if self.total:
            self._line(f"{self.done}/{self.total} {self.unit}s in {duration(time.monotonic() - self.start)}")
        self.total = 0  # a second close says nothing


def duration(seconds: float) -> str:
    """``45 s``, ``3 min 20 s``, ``1 h 05 min``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def progress_bar(total: int, desc: str, unit: str = "it", leave: bool = True, enabled: bool = True):
    """A tqdm bar on a terminal, plain lines (:class:`PlainProgress`) where stderr is not one, nothing when quiet or
    not ``enabled`` (another rank's bar, say)."""
    from tqdm.auto import tqdm

    if enabled and progress_enabled():
        return tqdm(total=total, desc=desc, unit=unit, leave=leave)
    if enabled and not quiet():
        return PlainProgress(total, desc, unit)
    return tqdm(total=total, disable=True)
