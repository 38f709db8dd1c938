"""Reading a run folder: the JSON results and figures that cemap's studies leave behind.

A run folder may hold any subset of ``metrics.json`` (demo), ``study.json`` (the full study),
``evaluation.json``, ``detection.json``, ``explain.json``, ``manifest.json`` (``cemap run``)
and PNG/JPEG figures. Whatever is
missing is simply absent here, and whatever cannot be read is recorded as a problem, so that
the report can say "not computed" or "unreadable" instead of failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..errors import CemapError

RESULT_FILES = ("metrics", "study", "evaluation", "detection", "explain", "manifest")
IMAGE_SUFFIXES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp"}
MAX_FIGURES = 200
MAX_DEPTH = 3

# Report sections a figure can belong to, with the words in its file name or JSON key that place it there.
FIGURE_SECTIONS = {
    "maps": ("overlay", "ce_map", "cemap", "maps", "explanations", "baseline"),
    "profiles": ("profile",),
    "signatures": ("hist", "signature"),
    "roc": ("roc",),
}


@dataclass
class Figure:
    path: Path
    name: str  # path relative to the run folder, as shown to the reader
    section: str
    width: int
    height: int

    @property
    def mime(self) -> str:
        return IMAGE_SUFFIXES[self.path.suffix.lower()]


@dataclass
class RunFolder:
    path: Path
    results: dict[str, dict] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def get(self, kind: str) -> dict | None:
        """The parsed ``<kind>.json`` or None when the folder has no such (readable) file."""
        return self.results.get(kind)

    def figures_in(self, section: str) -> list[Figure]:
        return [f for f in self.figures if f.section == section]

    @property
    def timings(self) -> list[tuple[str, str, float]]:
        """(source file, stage, seconds) from every result that recorded timings."""
        rows = []
        for kind, result in self.results.items():
            for key in ("timings_s", "timings"):
                block = result.get(key)
                if isinstance(block, dict):
                    rows += [(f"{kind}.json", str(stage), float(s)) for stage, s in block.items() if isinstance(s, (int, float))]
            if isinstance(result.get("seconds"), (int, float)):
                rows.append((f"{kind}.json", "total", float(result["seconds"])))
        return rows


def figure_section(label: str) -> str:
    label = label.lower()
    for section, words in FIGURE_SECTIONS.items():
        if any(w in label for w in words):
            return section
    return "other"


def _read_json(path: Path, problems: list[str]) -> dict | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{path.name} could not be read ({exc.__class__.__name__}: {exc})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name} holds a JSON {type(value).__name__}, not an object")
        return None
    return value


def _figure_keys(results: dict[str, dict]) -> dict[str, str]:
    """File name -> the JSON key that names it (``"figures": {"roc_fgsm": "roc_fgsm.png"}``), to place it in a section."""
    keys: dict[str, str] = {}
    for result in results.values():
        block = result.get("figures")
        if isinstance(block, dict):
            for key, value in block.items():
                for name in value if isinstance(value, list) else [value]:
                    if isinstance(name, str):
                        keys[Path(name).name] = str(key)
    return keys


def _files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if len(rel.parts) <= MAX_DEPTH and path.is_file() and not any(p.startswith(".") for p in rel.parts):
            found.append(path)
    return found


def read_run_folder(path: str | Path) -> RunFolder:
    """Everything the report needs from a run folder; a missing folder is a CemapError."""
    root = Path(path)
    if not root.is_dir():
        raise CemapError(f"run folder not found: {root}", "pass the --out folder of cemap demo, evaluate, detect, explain or run")
    run = RunFolder(path=root)
    for kind in RESULT_FILES:
        file = root / f"{kind}.json"
        if file.is_file():
            value = _read_json(file, run.problems)
            if value is not None:
                run.results[kind] = value
    keys = _figure_keys(run.results)
    files = _files(root)
    run.files = [str(p.relative_to(root)) for p in files]
    for file in files:
        if file.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        name = str(file.relative_to(root))
        if len(run.figures) >= MAX_FIGURES:
            run.problems.append(f"{name} and further figures were not included (more than {MAX_FIGURES})")
            break
        try:
            with Image.open(file) as img:
                img.verify()
            with Image.open(file) as img:
                width, height = img.size
        except (OSError, UnidentifiedImageError, SyntaxError) as exc:
            run.problems.append(f"{name} is not a readable image ({exc.__class__.__name__})")
            continue
        run.figures.append(Figure(file, name, figure_section(f"{keys.get(file.name, '')} {file.stem}"), width, height))
    return run
