"""Compare every figure two `cemap demo` folders wrote: the same JSON files, number for number.

Used to show that a refactor leaves the results as they were (issue 28): run the demo on the commit before and the
commit after, each from its own tree with an empty cache, then

    python docs/results/compare_demo_folders.py BEFORE_DIR AFTER_DIR

Numbers are compared at the digits printed (`--digits`, default 6 significant); a NaN written as bare `NaN` before
and as `null` after counts as equal. Timings (`seconds`, `timings_s`, `*_s`, `wall*`, `ms_per_*`, `images_per_s`)
and paths differ from run to run and are skipped. Prints one line per file and the differing values.
"""

import json
import math
import sys
from pathlib import Path

SKIP_KEYS = ("seconds", "timings", "wall", "ms_per", "images_per_s", "_s", "time", "path", "out", "created", "cache")


def _skipped(key: str) -> bool:
    return any(key == k or key.startswith(k) or key.endswith(k) for k in SKIP_KEYS)


def _load(path: Path):
    return json.loads(path.read_text(), parse_constant=lambda c: float("nan"))


def leaves(doc, prefix: str = ""):
    """(dotted key, value) for every number, string and bool in ``doc``, timings and paths left out."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if not _skipped(str(k)):
                yield from leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, doc


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def same(a, b, digits: int) -> bool:
    if _missing(a) and _missing(b):
        return True
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return f"{a:.{digits}g}" == f"{b:.{digits}g}"
    return a == b


def compare(before: Path, after: Path, digits: int = 6) -> int:
    """Print the comparison; returns the number of differing values (files only on one side count as one each)."""
    names = sorted(
        {p.relative_to(before) for p in before.rglob("*.json")} | {p.relative_to(after) for p in after.rglob("*.json")}
    )
    differing = 0
    for name in names:
        if not (before / name).exists() or not (after / name).exists():
            print(f"{name}: only {'after' if not (before / name).exists() else 'before'}")
            differing += 1
            continue
        a, b = dict(leaves(_load(before / name))), dict(leaves(_load(after / name)))
        numbers = [k for k in a if isinstance(a[k], (int, float)) and not isinstance(a[k], bool)]
        diff = [k for k in sorted(set(a) | set(b)) if not same(a.get(k), b.get(k), digits)]
        print(f"{name}: {len(a)} values ({len(numbers)} numbers) before, {len(b)} after; {len(diff)} differ")
        for k in diff[:20]:
            print(f"    {k}: {a.get(k)!r} -> {b.get(k)!r}")
        differing += len(diff)
    return differing


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--digits=")]
    digits = next((int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--digits=")), 6)
    n = compare(Path(args[0]), Path(args[1]), digits)
    print(f"{n} differing value(s) in all")
