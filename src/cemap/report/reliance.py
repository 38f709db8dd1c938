"""The report section "What this model relies on", from a reliance audit (``cemap audit``).

``reliance_section(result)`` takes an :class:`cemap.studies.audit.AuditResult` or its JSON (``audit.json``) and
returns one self-contained HTML ``<section>``: the verdict and the audit's claims in words, a chart of what carries
the model's decisions beyond the findings (each with its interval, the rule's threshold drawn in), the sensitivity
table (transforms, exchanges and regions on all audited images, with the AUROC drop), the region map, the latent
channels and the known candidates. ``write_reliance_page(result, path)`` wraps it in a page of its own.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from ..numbers import format_interval, number

CSS = """body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1100px;color:#1d2430}
table{border-collapse:collapse;margin:8px 0;font-size:.85rem}
td,th{border:1px solid #d5dae3;padding:3px 7px;text-align:left}
th{background:#f2f4f8}td.num{text-align:right;font-variant-numeric:tabular-nums}.flag{color:#a11;font-weight:600}
.ok{color:#176a2b;font-weight:600}.how{color:#5b6472;font-size:.85rem}figure{margin:8px 0}"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _doc(result) -> dict:
    return result.to_json() if hasattr(result, "to_json") else dict(result)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}">'


def reliance_chart(doc: dict, top: int = 12) -> str:
    """Horizontal bars: the largest carried differences with their intervals, the rule's threshold as a line."""
    from .figures import subplots

    rows = doc.get("reliance", [])[:top][::-1]
    if not rows:
        return ""
    fig, ax = subplots(figsize=(7.5, 0.32 * len(rows) + 1.0))
    est = np.array([r["carried"]["estimate"] for r in rows])
    err = np.array(
        [
            [r["carried"]["estimate"] - r["carried"]["low"], r["carried"]["high"] - r["carried"]["estimate"]]
            for r in rows
        ]
    ).T
    ax.barh(
        range(len(rows)),
        est,
        xerr=err,
        color=["#c0392b" if r["carried"]["low"] > doc["threshold"] else "#7f8c9d" for r in rows],
    )
    ax.set_yticks(range(len(rows)), [f"{r['name']} -> {r['finding']}" for r in rows], fontsize=8)
    ax.axvline(doc["threshold"], color="#1d2430", linestyle="--", linewidth=1)
    ax.set_xlabel(
        "probability carried between images with the same labels (95% interval); dashed: the rule's threshold"
    )
    fig.tight_layout()
    return _png(fig)


def region_map(doc: dict) -> str:
    """The grid of mean absolute probability changes when each cell is replaced (outside the findings)."""
    from .figures import subplots

    cells = (doc.get("regions") or {}).get("cell_map")
    if not cells:
        return ""
    fig, ax = subplots(figsize=(3.4, 3.0))
    im = ax.imshow(np.array(cells), cmap="magma")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, label="mean |change| in probability")
    fig.tight_layout()
    return _png(fig)


def _table(rows: list[list[str]], head: list[str], numeric: set[int]) -> str:
    th = "".join(f"<th>{_esc(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _effect_rows(effects: list[dict]) -> list[list[str]]:
    out = []
    for e in effects:
        drop = "&mdash;" if e.get("auroc_drop") is None else _esc(format_interval(e["auroc_drop"]))
        scope = "" if e["scope"] in ("whole image", "latent") else f" ({e['scope']})"
        out.append(
            [
                _esc(e["name"] + scope),
                _esc(e["finding"]),
                _esc(format_interval(e["effect"])),
                _esc(format_interval(e["decision_change"])),
                drop,
            ]
        )
    return out


def _transfer_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [
            _esc(t["name"]),
            _esc(t["finding"]),
            _esc(format_interval(t["carried"])),
            _esc(number(t["slope"])),
            _esc(number(t["rms_difference"])),
            _esc(t["n_pairs"]),
        ]
        for t in rows
    ]


def _latent(doc: dict) -> str:
    lat = doc.get("latent")
    if not lat:
        return '<p class="how">Latent channels: not computed in this audit.</p>'
    rows = [
        [
            _esc(c["name"]),
            _esc(c["finding"]),
            _esc(format_interval(c["effect"])),
            _esc(c["detail"].get("best_aligned") or "&mdash;"),
            _esc(number(c["detail"].get("best_alignment", float("nan")))),
            "yes" if c["detail"].get("unaligned") else "no",
        ]
        for c in sorted(lat["channels"], key=lambda c: -c["effect"]["estimate"])
    ]
    fid = lat.get("fidelity", {})
    words = (
        f"Autoencoder at {lat.get('layer')}: agreement {number(fid.get('agreement', float('nan')))}, mean KL "
        f"{number(fid.get('mean_kl', float('nan')))}"
        + (
            "."
            if fid.get("ok")
            else " - below the fidelity bar: these effects describe the model with the autoencoder inserted, not "
            "the original."
        )
    )
    return (
        f'<h3>Latent channels</h3><p class="how">{_esc(words)} do(Z_j = 0) per channel; alignment: AUROC of the '
        "pooled channel against "
        "each finding's labels; 'unaligned': it moves a finding while aligning with none (AUROC &lt; 0.75).</p>"
        + _table(
            rows,
            ["channel", "moves most", "mean |change|", "best-aligned finding", "alignment AUROC", "unaligned"],
            {2, 4},
        )
    )


def reliance_section(result) -> str:
    """The HTML ``<section id="reliance">`` "What this model relies on" for an audit result or its JSON."""
    doc = _doc(result)
    verdict = '<span class="flag">flagged</span>' if doc.get("flagged") else '<span class="ok">not flagged</span>'
    claims = "".join(f"<li>{_esc(c['claim'])}</li>" for c in doc.get("headline", []))
    parts = [
        f"<p>Model {_esc(doc.get('model'))} on {_esc(doc.get('dataset'))}, {doc.get('n_images')} held-out images: "
        f"{verdict} by the rule fixed in advance "
        f"(threshold {number(doc.get('threshold'))} on the largest carried difference's lower "
        f"bound).</p><ul>{claims}</ul>",
        "<h3>What carries the decisions beyond the findings</h3>"
        '<p class="how">A property of another image with the same labels (no annotated finding) is swapped in - a '
        "region, the fine or mid "
        "texture, brightness and contrast - and the finding's probability moves toward the donor's by this much "
        "(carried difference, "
        "95% interval over images). A model that learnt the findings carries little here.</p>",
        reliance_chart(doc),
        _table(
            _transfer_rows(doc.get("reliance", [])[:15]),
            ["swapped property", "finding", "carried", "slope", "rms difference", "pairs"],
            {2, 3, 4, 5},
        ),
    ]
    if doc.get("sensitivity"):
        parts += [
            "<h3>What the model is sensitive to</h3>"
            '<p class="how">Each intervention on all audited images (outside the annotated findings where so '
            "marked): mean absolute change in "
            "the most affected finding's probability, share of its decisions changed, drop in its AUROC. "
            "Fixed-strength transforms measure "
            "robustness to a new acquisition, not reliance.</p>",
            _table(
                _effect_rows(doc["sensitivity"][:20]),
                ["intervention", "finding", "mean |change|", "decisions changed", "AUROC drop"],
                {2, 3, 4},
            ),
            region_map(doc),
        ]
    parts.append(_latent(doc))
    if doc.get("known"):
        parts += [
            "<h3>Known candidates</h3>",
            _table(
                _effect_rows(doc["known"]),
                ["candidate", "finding", "mean |change|", "decisions changed", "AUROC drop"],
                {2, 3, 4},
            ),
        ]
    return f'<section id="reliance"><h2>What this model relies on</h2>{"".join(parts)}</section>'


def write_reliance_page(result, path: str | Path) -> Path:
    """A page of its own holding :func:`reliance_section` (no script; images inline; style allowed by its hash)."""
    style_hash = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'sha256-{style_hash}'"
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
        f'content="{csp}">'
        f"<title>cemap audit</title><style>{CSS}</style></head><body>{reliance_section(result)}</body></html>"
    )
    path = Path(path)
    path.write_text(page, encoding="utf-8")
    return path
