"""One self-contained ``report.html`` from a run folder: what the run found first, then how, then everything.

Images are inlined as data URIs, the CSS is inline and the one script (the image explorer) is
allowed by its SHA-256 hash in the page's Content-Security-Policy, which forbids every network
fetch and every other script; the page opens the same offline, from an e-mail attachment or from
a shared drive. Every string that comes from a run (file names, class names, image ids, JSON
keys) goes through ``html.escape`` here, or ``textContent`` in the script.

:func:`render_html` takes an already-read :class:`RunFolder` (``read_run_folder`` fills it from disk).
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path

from .. import __version__
from ..errors import CemapError
from .explorer_html import EXPLORER_CSS, script_hash
from .markup import esc
from .reliance import reliance_section
from .run_folder import RunFolder, read_run_folder
from .sections import (
    concepts_section,
    explorer_section,
    fidelity_section,
    headline_section,
    maps_section,
    profiles_section,
    settings_section,
)
from .tables import (
    dataset_run_section,
    detection_section,
    evaluation_section,
    explained_section,
    files_section,
    other_section,
    problems_section,
    recorded_section,
    timings_section,
)

CSP_BASE = "default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'"

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;
line-height:1.45}
main{max-width:1220px;margin:0 auto;padding:10px 24px 60px}
header{background:#1d2330;color:#fff;padding:8px 24px}header h1{margin:0;font-size:1.15rem;overflow-wrap:anywhere}
header p{margin:2px 0 0;color:#c8cdd8;font-size:.8rem;overflow-wrap:anywhere}
nav{font-size:.82rem;margin:6px 0 0}nav a{color:#9db5d6;margin-right:12px}
section{background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:10px 18px;margin:12px 0}
h2{font-size:1.1rem;margin:4px 0 8px}h3{font-size:.98rem;margin:12px 0 6px}
p.how{color:#4a5263;font-size:.9rem;margin:4px 0 8px}
table{border-collapse:collapse;font-size:.84rem;margin:6px 0 10px;width:auto;max-width:100%}
th,td{border:1px solid #e0e3e8;padding:3px 7px;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f0f2f5;font-weight:600;overflow-wrap:normal}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.gallery{display:flex;flex-wrap:wrap;gap:4px 18px;align-items:flex-start}figure{margin:10px 0 16px;max-width:100%}
figure img{max-width:100%;height:auto;border:1px solid #e0e3e8}
figcaption{font-size:.8rem;color:#4a5263;font-family:ui-monospace,monospace;overflow-wrap:anywhere}
.missing{color:#8a5a00;background:#fff7e0;border-left:4px solid #e0a800;padding:5px 10px}
.ok{color:#0b6b2b}.warn{color:#a11}
.problems{background:#fdecec;border-color:#e8b4b4}
details summary{cursor:pointer;color:#33598a;margin:6px 0}
ul.files{columns:2;font-family:ui-monospace,monospace;font-size:.8rem}ul.files li{overflow-wrap:anywhere}
#headline{border-left:5px solid #33598a}
#headline ul.claims{margin:4px 0 6px;padding-left:20px;font-size:.95rem}#headline ul.claims li{margin:2px 0}
#headline .fid{font-weight:600;margin:6px 0}
.src{color:#8a93a3;font-size:.75rem}
ul.words{margin:4px 0;padding-left:20px}
.flag{color:#a11;font-weight:600}
"""


NAV = [
    ("headline", "Findings"),
    ("settings", "Settings"),
    ("explorer", "Images"),
    ("fidelity", "Fidelity"),
    ("concepts", "Concepts"),
    ("maps", "Maps"),
    ("profiles", "Profiles"),
    ("evaluation", "Evaluation"),
    ("detection", "Detection"),
    ("reliance", "Reliance"),
    ("values", "All values"),
    ("files", "Files"),
]


def content_security_policy(script: str, style: str) -> str:
    """Only this page's own style sheet and script run, each allowed by its SHA-256 hash (none: no script at all)."""
    return (
        CSP_BASE
        + f"; style-src {script_hash(style)}"
        + (f"; script-src {script_hash(script)}" if script else "; script-src 'none'")
    )


def reliance_report_section(run: RunFolder) -> str:
    """The section "What this model relies on", from the run's audit.json (cemap demo and cemap audit write it)."""
    doc = run.raw.get("audit")
    return reliance_section(doc) if isinstance(doc, dict) else ""


def render_html(run: RunFolder) -> str:
    """The whole page for ``run`` as one string."""
    title = f"cemap report: {run.path.resolve().name}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    explorer, script = explorer_section(run)
    sections = [
        problems_section(run),
        headline_section(run),
        settings_section(run),
        explorer,
        fidelity_section(run),
        concepts_section(run),
        maps_section(run),
        profiles_section(run),
        evaluation_section(run),
        detection_section(run),
        reliance_report_section(run),
        explained_section(run),
        dataset_run_section(run),
        timings_section(run),
        other_section(run),
        recorded_section(run),
        files_section(run),
    ]
    body = "".join(sections)
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in NAV if f'id="{a}"' in body)
    style = CSS + (EXPLORER_CSS if script else "")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(script, style)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{style}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(str(run.path))} &middot; cemap {esc(__version__)} &middot; "
        f"{esc(stamp)}</p><nav>{nav}</nav></header>"
        f"<main>{body}</main>" + (f"<script>{script}</script>" if script else "") + "</body></html>"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render ``run_dir`` into ``out`` (default ``run_dir/report.html``) and return the path."""
    run = read_run_folder(run_dir)
    path = Path(out) if out is not None else run.path / "report.html"
    if path.is_dir():
        raise CemapError(f"--out {path} is a folder", f"name the HTML file, e.g. --out {path / 'report.html'}")
    tmp = path.with_name(path.name + ".tmp")
    try:  # the half-written temporary file never outlives a failure
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(render_html(run), encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise CemapError(f"cannot write the report to {path} ({exc.strerror or exc})", "choose another --out") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path
