"""Numbers as a reader should see them: rounded to what they can carry, intervals as ``0.72 [0.66, 0.78]``.

The one place intervals become text: the report (decimals from the interval's width) and the studies'
claims and tables (a fixed format such as ``.3f``) both call :func:`format_interval`.

An interval is any mapping with ``estimate``, ``low`` and ``high`` (as :class:`cemap.evaluate.bootstrap.Interval` writes
it: plus ``n`` and ``level``, and ``verdict`` for a difference). Its decimals follow its width: enough to show the width
with two significant digits, never more. A lone number gets three significant digits (fewer only where the value is
exactly that short, e.g. 0.01 or 1).
"""

from __future__ import annotations

import math
from typing import Any

MAX_DECIMALS = 4


def is_interval(value: Any) -> bool:
    return isinstance(value, dict) and all(
        isinstance(value.get(k), (int, float)) and not isinstance(value.get(k), bool)
        for k in ("estimate", "low", "high")
    )


def decimals_for_width(width: float) -> int:
    """Decimals that show an interval of this width with two significant digits (0.12 -> 2, 0.012 -> 3, 1.2 -> 1)."""
    if not math.isfinite(width) or width <= 0:
        return 3
    return int(min(MAX_DECIMALS, max(0, 1 - math.floor(math.log10(width)))))


def number(value: float, digits: int = 3) -> str:
    """``digits`` significant digits, no exponent for ordinary sizes, integers as integers."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if value is None or not math.isfinite(value):
        return "n/a" if value is None else str(value)
    if value == 0:
        return "0"
    if 1e-4 <= abs(value) < 1e6:
        magnitude = math.floor(math.log10(abs(value)))
        decimals = max(0, digits - 1 - magnitude)
        text = f"{value:.{min(decimals, 6)}f}"
        short = text.rstrip("0").rstrip(".") if "." in text else text
        return short if float(short) == value else text  # 0.01 stays 0.01; a measured 0.8500001 shows as 0.850
    return f"{value:.{digits - 1}e}"


def format_interval(value: dict | None, spec: str | None = None, missing: str = "-") -> str:
    """``estimate [low, high]`` of an interval mapping.

    Args:
        value: a mapping with ``estimate``, ``low`` and ``high``; None, or a NaN / None estimate (too few
            samples), gives ``missing``.
        spec: a format spec applied to all three numbers (``".3f"``, ``".3g"``, ``"+.3f"``); None: as many
            decimals as the interval's width supports (:func:`decimals_for_width`), the estimate of a
            difference (a mapping with a ``verdict``) signed and followed by its verdict - the report's form.
    """
    if not value or value.get("estimate") is None or value["estimate"] != value["estimate"]:
        return missing
    est, low, high = float(value["estimate"]), float(value["low"]), float(value["high"])
    if spec is not None:
        return f"{est:{spec}} [{low:{spec}}, {high:{spec}}]"
    d = decimals_for_width(high - low)
    sign = "+" if "verdict" in value else ""
    text = f"{est:{sign}.{d}f} [{low:.{d}f}, {high:.{d}f}]"
    if value.get("verdict"):
        text += f" ({value['verdict']})"
    return text


def show(value: Any) -> str:
    """Any result value as plain text (not yet HTML-escaped)."""
    if is_interval(value):
        return format_interval(value)
    if value is None:
        return "n/a"
    if isinstance(value, (bool, int, float)):
        return number(value)
    return str(value)


def estimate(value: Any) -> float | None:
    """The point value of a number or an interval, None for anything else."""
    if is_interval(value):
        return float(value["estimate"])
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
