"""What a study returns: a typed result with its numbers, its headline claims and its JSON file.

Every study is ``run_<study>(ctx, config) -> <Study>Result``. A result is a dataclass built once from the
study's own state; ``to_json()`` is exactly the file the study writes, ``from_json()`` reads that file back
(the report reads run folders this way, so study and report share one contract), and ``headline()``
gives the claims the report shows first.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ..jsonio import write_json

R = TypeVar("R", bound="StudyResult")


@dataclass
class Claim:
    """One finding in words, with the table of numbers behind it."""

    text: str
    table: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"claim": self.text, "table": self.table}

    @classmethod
    def from_json(cls, entry: dict) -> "Claim":
        return cls(str(entry["claim"]), list(entry.get("table") or []))


def json_field(default: Any = MISSING, *, key: str | None = None, omit_none: bool = False, claims: bool = False, **kw: Any) -> Any:
    """A field written as a key of the result's JSON file.

    Args:
        key: the JSON key (default: the field's name).
        omit_none: leave the key out while the value is None.
        claims: the value is a list of :class:`Claim` (written as ``{"claim", "table"}`` objects).
    """
    if default is not MISSING:
        kw["default"] = default
    return field(metadata={"json": True, "key": key, "omit_none": omit_none, "claims": claims}, **kw)


def state(**kw: Any) -> Any:
    """A field kept in memory only (arrays, images for figures, fitted objects): never written."""
    return field(repr=False, compare=False, metadata={"json": False}, **kw)


class StudyResult:
    """Base of the typed results (each a dataclass): the JSON file is every field not marked :func:`state`, in order."""

    FILE: ClassVar[str] = ""  # the file in the run folder (``evaluation.json``, ...)

    @classmethod
    def _json_fields(cls) -> list:
        return [f for f in fields(cls) if f.metadata.get("json", True)]

    def to_json(self) -> dict:
        out = {}
        for f in self._json_fields():
            value = getattr(self, f.name)
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.metadata.get("key") or f.name] = [c.to_json() for c in value] if f.metadata.get("claims") else value
        return out

    @classmethod
    def from_json(cls: type[R], doc: Any) -> R:
        """The result as a study wrote it; a document without this result's keys is a ValueError naming them."""
        if not isinstance(doc, dict):
            raise ValueError(f"{cls.FILE} holds a JSON {type(doc).__name__}, not an object")
        values, absent = {}, []
        for f in cls._json_fields():
            key = f.metadata.get("key") or f.name
            if key in doc:
                value = doc[key]
                values[f.name] = [Claim.from_json(c) for c in value if isinstance(c, dict) and "claim" in c] if f.metadata.get("claims") else value
            elif f.default is MISSING and f.default_factory is MISSING:
                absent.append(key)
        if absent:
            raise ValueError(f"{cls.FILE} lacks {', '.join(absent)}: not a result of this version of cemap")
        return cls(**values)

    def headline(self) -> list[Claim]:
        """The study's claims, most important first."""
        return []

    def write(self, folder: Path, indent: int | None = 2, compact: bool = False) -> Path:
        """``folder/FILE`` holding :meth:`to_json` (strict JSON: NaN as null)."""
        return write_json(Path(folder) / self.FILE, self.to_json(), indent=indent, compact=compact)
