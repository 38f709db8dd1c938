"""The report's HTML building blocks: escaped text, numbers as a reader should see them, tables that fit the page,
figures inlined as data URIs, and every recorded value behind a click."""

from __future__ import annotations

import base64
import html
import json
from typing import Any, Iterable

from ..numbers import is_interval, show
from .run_folder import Figure

MAX_LIST = 8  # longer lists of numbers are summarised, not printed
MAX_COLUMNS = 9  # wider tables show their first columns; the whole table is one click away


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A cell value as escaped text: intervals as ``0.72 [0.66, 0.78]``, 3 significant digits, yes/no for booleans."""
    if value is None:
        return "&mdash;"
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            widths = {len(v) for v in value}
            shape = f"{len(value)} x {widths.pop()}" if len(widths) == 1 else f"{len(value)} lists of"
            return esc(f"[{shape} values: see the JSON file]")
        if len(value) > MAX_LIST or any(isinstance(v, (dict, list)) for v in value):
            return esc(f"[{len(value)} values: see the JSON file]")
        return esc(", ".join(show(v) for v in value))
    if isinstance(value, dict) and not is_interval(value):
        return esc(json.dumps(value, default=str))
    return esc(show(value))


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b": leaf}; lists and intervals stay leaves."""
    if not isinstance(obj, dict) or is_interval(obj):
        return {prefix or "value": obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) and not is_interval(value) else {name: value})
    return out


def _is_number(value: Any) -> bool:
    return is_interval(value) or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _plain_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{fmt(r.get(c))}</td>' if _is_number(r.get(c)) else f"<td>{fmt(r.get(c))}</td>"
            for c in columns
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def table(rows: list[dict[str, Any]], first: str | None = None, max_columns: int = MAX_COLUMNS) -> str:
    """Rows as a table that fits the page: at most ``max_columns`` columns, the rest behind a click."""
    if not rows:
        return missing("empty table")
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    if first in columns:
        columns.remove(first)
        columns.insert(0, first)
    if len(columns) <= max_columns:
        return _plain_table(rows, columns)
    shown = _plain_table(rows, columns[:max_columns])
    return shown + f"<details><summary>All {len(columns)} columns</summary>{_plain_table(rows, columns)}</details>"


def key_values(pairs: dict[str, Any]) -> str:
    return table([{"setting": k, "value": v} for k, v in pairs.items()])


def missing(what: str) -> str:
    return f'<p class="missing">{esc(what)}</p>'


def how(text: str) -> str:
    return f'<p class="how">{esc(text)}</p>'


def section(title: str, body: str, anchor: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def figure_html(fig: Figure, caption: str | None = None) -> str:
    """The figure inlined; its caption is what it shows (an explained file's real name) where known, else its file
    name."""
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    text = esc(fig.name) if caption is None else f'{esc(caption)} <span class="src">({esc(fig.name)})</span>'
    return (
        f'<figure><img src="data:{fig.mime};base64,{data}" alt="{esc(caption or fig.name)}" width="{fig.width}" '
        f'height="{fig.height}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def figures_html(figs: Iterable[Figure], none: str, captions: dict[str, str] | None = None) -> str:
    figs, captions = list(figs), captions or {}
    return (
        f'<div class="gallery">{"".join(figure_html(f, captions.get(f.name)) for f in figs)}</div>'
        if figs
        else missing(none)
    )


def raw_details(result: dict[str, Any], label: str, skip: Iterable[str] = ()) -> str:
    """Every value of a result, collapsed: scalars as one table, lists of rows as tables."""
    skip = set(skip) | {"figures", "headline"}
    settings, parts = {}, []
    for key, value in result.items():
        if key in skip:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(f"<h3>{esc(key)}</h3>" + table([flatten(v) for v in value], max_columns=10_000))
        elif (
            isinstance(value, dict)
            and value
            and all(isinstance(v, dict) and not is_interval(v) for v in value.values())
        ):
            parts.append(
                f"<h3>{esc(key)}</h3>"
                + table([{"name": k, **flatten(v)} for k, v in value.items()], first="name", max_columns=10_000)
            )
        elif isinstance(value, dict):
            settings.update(flatten(value, str(key)))
        else:
            settings[str(key)] = value
    body = (key_values(settings) if settings else "") + "".join(parts)
    return f"<details><summary>{esc(label)}</summary>{body}</details>" if body else ""
