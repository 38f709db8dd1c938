"""Reading a run folder: the typed results and figures that cemap's studies leave behind.

A run folder may hold any subset of the studies' results - ``metrics.json`` (overview), ``study.json``
(the demo), ``evaluation.json``, ``detection.json``, ``latent_controls.json``, ``latent_concepts.json``,
``explain.json`` - each read back into its study's result type (:mod:`cemap.studies.results`), and
``manifest.json`` (``cemap run``), ``explorer*.npz`` (the image explorer's items,
:mod:`cemap.studies.explorer`) and PNG/JPEG figures. Whatever is missing is simply absent here, and
whatever cannot be read is recorded as a problem, so that the report can say "not computed" or
"unreadable" instead of failing. A result file of another schema (the explanation benchmark's
evaluation.json) is kept as written: its own headline and every value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import CemapError
from ..studies.explorer import FILE_GLOB, ExplorerItem, load_explorer_items, merge_items
from ..studies.results import (
    Claim,
    ConceptsResult,
    DemoResult,
    DetectionResult,
    EvaluationResult,
    ExplainResult,
    LatentControlsResult,
    OverviewResult,
    StudyResult,
)

RESULT_FILES = (
    "metrics",
    "study",
    "evaluation",
    "detection",
    "latent_controls",
    "latent_concepts",
    "explain",
    "manifest",
    "audit",
)


@dataclass
class DatasetRun(StudyResult):
    """manifest.json of a finished ``cemap run`` (what the report shows of it; every value is in ``RunFolder.raw``)."""

    FILE = "manifest.json"

    n_images: int
    n_rows: int
    n_errors: int = 0
    map_names: list = field(default_factory=list)
    config: dict = field(default_factory=dict)
    attacks: dict = field(default_factory=dict)
    cemap: dict | None = None  # the CE map's settings
    autoencoder: dict | None = None  # layer, split_method, code_channels, fidelity
    complete: bool | None = None

    def headline(self) -> list[Claim]:
        """How much of the split the run covered."""
        from ..numbers import number

        text = (
            f"Per-image results for {number(self.n_rows)} of {number(self.n_images)} images "
            f"({number(self.n_errors)} unreadable)"
        )
        maps = ", ".join(map(str, self.map_names))
        return [
            Claim(
                text
                + (f": maps ({maps})" if maps else ":")
                + ", predicted probabilities and latent CE profiles, in the shards."
            )
        ]


@dataclass
class WrittenResult:
    """A result file of a schema this report does not type (the explanation benchmark's evaluation.json): shown as
    written."""

    file: str
    doc: dict

    def headline(self) -> list[Claim]:
        return [
            Claim.from_json(c)
            for c in self.doc.get("headline") or []
            if isinstance(c, dict) and isinstance(c.get("claim"), str)
        ]


RESULT_TYPES: dict[str, type[StudyResult]] = {
    "metrics": OverviewResult,
    "study": DemoResult,
    "evaluation": EvaluationResult,
    "detection": DetectionResult,
    "latent_controls": LatentControlsResult,
    "latent_concepts": ConceptsResult,
    "explain": ExplainResult,
    "manifest": DatasetRun,
}
MAX_DOWNLOAD_BYTES = 4_000_000  # JSON files larger than this are listed, not embedded
MAX_DOWNLOADS_TOTAL = 8_000_000  # and beyond this many bytes only the study results are
IMAGE_SUFFIXES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
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
    """What the report shows of a folder: each study's typed result (None where absent), figures, files, problems."""

    path: Path
    raw: dict[str, dict] = field(
        default_factory=dict
    )  # every result file as written (the report's "all recorded values")
    results: dict[str, Any] = field(default_factory=dict)  # kind -> its typed result (or a WrittenResult)
    figures: list[Figure] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    explorer: list[ExplorerItem] = field(default_factory=list)  # the images the explorer shows
    class_names: list[str] = field(default_factory=list)
    downloads: dict[str, bytes] = field(
        default_factory=dict
    )  # relative name -> bytes of each JSON file offered for download
    unreadable: list[dict] = field(
        default_factory=list
    )  # a cemap run's errors.jsonl: {"index", "id", "reason"} per image it could not read

    def typed(self, kind: str, cls: type) -> Any:
        """The result of ``<kind>.json`` when it is a ``cls`` (None when absent, unreadable or of another schema)."""
        result = self.results.get(kind)
        return result if isinstance(result, cls) else None

    @property
    def overview(self) -> OverviewResult | None:
        return self.typed("metrics", OverviewResult)

    @property
    def demo(self) -> DemoResult | None:
        return self.typed("study", DemoResult)

    @property
    def evaluation(self) -> EvaluationResult | None:
        return self.typed("evaluation", EvaluationResult)

    @property
    def detection(self) -> DetectionResult | None:
        return self.typed("detection", DetectionResult)

    @property
    def latent_controls(self) -> LatentControlsResult | None:
        return self.typed("latent_controls", LatentControlsResult)

    @property
    def concepts(self) -> ConceptsResult | None:
        return self.typed("latent_concepts", ConceptsResult)

    @property
    def explain(self) -> ExplainResult | None:
        return self.typed("explain", ExplainResult)

    @property
    def dataset_run(self) -> DatasetRun | None:
        return self.typed("manifest", DatasetRun)

    def figures_in(self, section: str) -> list[Figure]:
        return [f for f in self.figures if f.section == section]

    @property
    def timings(self) -> list[tuple[str, str, float]]:
        """(source file, stage, seconds) from every result that recorded timings."""
        rows = []
        for kind, result in self.raw.items():
            for key in ("timings_s", "timings"):
                block = result.get(key)
                if isinstance(block, dict):
                    rows += [
                        (f"{kind}.json", str(stage), float(s))
                        for stage, s in block.items()
                        if isinstance(s, (int, float))
                    ]
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


def read_result(kind: str, doc: dict, problems: list[str]) -> Any:
    """``doc`` as its study's typed result; a document of another schema that carries its own headline (the explanation
    benchmark's evaluation.json) as a :class:`WrittenResult`; anything else is a problem, and None."""
    try:
        return RESULT_TYPES[kind].from_json(doc)
    except (ValueError, TypeError, KeyError) as exc:
        if isinstance(doc.get("headline"), list):
            return WrittenResult(f"{kind}.json", doc)
        problems.append(f"{kind}.json is not a result this report can read ({exc})")
        return None


def _figure_keys(results: dict[str, dict]) -> dict[str, str]:
    """File name -> the JSON key that names it (``"figures": {"roc_fgsm": "roc_fgsm.png"}``), to place it in a
    section."""
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
        raise CemapError(
            f"run folder not found: {root}", "pass the --out folder of cemap demo, evaluate, detect, explain or run"
        )
    run = RunFolder(path=root)
    for kind in RESULT_FILES:
        file = root / f"{kind}.json"
        if file.is_file():
            value = _read_json(file, run.problems)
            if value is not None:
                run.raw[kind] = value
                typed = read_result(kind, value, run.problems)
                if typed is not None:
                    run.results[kind] = typed
    check_is_run_folder(root, run)
    run.unreadable = read_unreadable(root, run.problems) if "manifest" in run.raw else []
    keys = _figure_keys(run.raw)
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
    read_downloads(run, [f for f in files if f.suffix.lower() == ".json" and f.parent == root])
    read_explorer(run)
    return run


def read_downloads(run: RunFolder, files: list[Path]) -> None:
    """The JSON files the report offers for download: the study results first, then others while the budget lasts."""
    studies = {f"{k}.json" for k in RESULT_FILES}
    total, skipped = 0, []
    for file in sorted(files, key=lambda f: (f.name not in studies, f.name)):
        size = file.stat().st_size
        if size > MAX_DOWNLOAD_BYTES:
            run.problems.append(
                f"{file.name} is too large to embed for download ({size:,} bytes); it stays in the folder"
            )
        elif total + size > MAX_DOWNLOADS_TOTAL and file.name not in studies:
            skipped.append(file.name)
        else:
            run.downloads[file.name] = file.read_bytes()
            total += size
    if skipped:
        run.problems.append(
            f"{len(skipped)} more JSON files (e.g. {skipped[0]}) are not embedded for download, to keep the report "
            "small; they stay in the folder"
        )


def check_is_run_folder(root: Path, run: RunFolder) -> None:
    """Refuse a folder that no cemap command wrote (nothing is written into it), and an unfinished ``cemap run``."""
    config = root / "config.json"
    if (
        "manifest" not in run.raw
        and config.is_file()
        and ((root / "shards").is_dir() or "cemap-run" in config.read_text(errors="replace")[:4096])
    ):
        committed = len(list((root / "shards").glob("shard-*.parquet")))
        raise CemapError(
            f"the run in {root} is unfinished ({committed} shard{'s' if committed != 1 else ''} committed, no "
            "manifest.json)",
            f"finish it with the same cemap run options plus --out {root} --resume, then run cemap report again",
        )
    if not run.raw and not run.problems and not any(root.glob(FILE_GLOB)):
        raise CemapError(
            f"{root} is not a cemap run folder (it has none of {', '.join(f'{k}.json' for k in RESULT_FILES)})",
            "pass the --out folder of cemap demo, evaluate, detect, explain or run",
        )


def read_unreadable(root: Path, problems: list[str]) -> list[dict]:
    """The images a ``cemap run`` could not read (its errors.jsonl), for the report's list of unreadable files."""
    path = root / "errors.jsonl"
    if not path.is_file():
        return []
    rows = []
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if isinstance(row, dict):
                    rows.append(
                        {"index": row.get("index"), "id": str(row.get("id", "")), "reason": str(row.get("reason", ""))}
                    )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"errors.jsonl could not be read ({exc.__class__.__name__}: {exc})")
    return rows


def read_explorer(run: RunFolder) -> None:
    """Fill ``run.explorer``: the folder's explorer*.npz files (a finished ``cemap run`` writes one too), else explain's
    per-image JSONs."""
    groups = []
    for file in sorted(run.path.glob(FILE_GLOB)):
        try:
            items, names = load_explorer_items(file)
        except (OSError, ValueError, KeyError) as exc:
            run.problems.append(f"{file.name} could not be read ({exc.__class__.__name__}: {exc})")
            continue
        groups.append(items)
        run.class_names = run.class_names or names
    if groups:
        run.explorer = merge_items(groups)
        return
    if run.explain is not None:
        run.explorer, run.class_names = explain_items(run.path, run.explain, run.problems)


def explain_items(root: Path, explain: ExplainResult, problems: list[str]) -> tuple[list[ExplorerItem], list[str]]:
    """Items of an explain folder written before explorer.npz existed: probabilities and profile from each image's JSON,
    the image re-read from its file where it still exists; the maps themselves were not saved (the overlay PNGs show
    them)."""
    items, names = [], []
    for row in explain.images:
        if not isinstance(row, dict) or not isinstance(row.get("json"), str):
            continue
        detail = (
            _read_json(root / Path(row["json"]).name, problems) if (root / Path(row["json"]).name).is_file() else None
        )
        if detail is None:
            continue
        probs = detail.get("probabilities") or {}
        names = names or list(probs)
        image = None
        try:
            with Image.open(detail.get("file", "")) as img:
                image = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        except (OSError, UnidentifiedImageError, ValueError):
            image = None
        target = names.index(detail["target"]) if detail.get("target") in names else None
        items.append(
            ExplorerItem(
                id=str(detail.get("file", row.get("file"))),
                image=image,
                maps={},
                probs=list(probs.values()) or None,
                target=target,
                profile=detail.get("latent_profile"),
                source="explain",
            )
        )
    return items, names
