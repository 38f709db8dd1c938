"""One self-contained ``report.html`` from a run folder.

Images are inlined as base64 data URIs and the CSS is inline; the page carries a
Content-Security-Policy that forbids every network fetch and every script, so it opens the
same offline, from an e-mail attachment or from a shared drive. Every string that comes
from a run (file names, class names, image ids, JSON keys) goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from .run_folder import Figure, RunFolder, read_run_folder

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
MAX_LIST = 8  # longer lists of numbers are summarised, not printed

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px}
header{background:#1d2330;color:#fff;padding:22px 28px}header h1{margin:0;font-size:1.5rem}header p{margin:4px 0 0;color:#c8cdd8}
section{background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:14px 20px;margin:18px 0}
h2{font-size:1.15rem;margin:4px 0 10px}h3{font-size:1rem;margin:14px 0 6px}
p.how{color:#4a5263;font-size:.92rem;margin:4px 0 10px}
table{border-collapse:collapse;font-size:.86rem;margin:6px 0 12px;display:block;overflow-x:auto}
th,td{border:1px solid #e0e3e8;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f0f2f5}
td.num{text-align:right;font-variant-numeric:tabular-nums}td:first-child{white-space:nowrap}
.gallery{display:flex;flex-wrap:wrap;gap:4px 18px;align-items:flex-start}figure{margin:10px 0 16px}figure img{max-width:100%;height:auto;border:1px solid #e0e3e8}
figcaption{font-size:.82rem;color:#4a5263;font-family:ui-monospace,monospace}
.missing{color:#8a5a00;background:#fff7e0;border-left:4px solid #e0a800;padding:6px 10px}
.ok{color:#0b6b2b;font-weight:600}.warn{color:#a11;font-weight:600}
.problems{background:#fdecec;border-color:#e8b4b4}
details summary{cursor:pointer;color:#33598a;margin:8px 0}
ul.files{columns:2;font-family:ui-monospace,monospace;font-size:.8rem}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any) -> str:
    """A cell value as escaped text: 4 significant digits for floats, yes/no for booleans."""
    if value is None:
        return "&mdash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return esc(f"{value:.4g}")
    if isinstance(value, list):
        if len(value) > MAX_LIST:
            return esc(f"[{len(value)} values]")
        return esc(json.dumps(value, default=str))
    return esc(value)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> {"a.b": leaf}; lists stay leaves (fmt summarises long ones)."""
    if not isinstance(obj, dict):
        return {prefix or "value": obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, name) if isinstance(value, dict) else {name: value})
    return out


def table(rows: list[dict[str, Any]], first: str | None = None) -> str:
    if not rows:
        return missing("empty table")
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    if first in columns:
        columns.remove(first)
        columns.insert(0, first)
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td class=\"num\">{fmt(r.get(c))}</td>" if isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool) else f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_values(pairs: dict[str, Any]) -> str:
    return table([{"setting": k, "value": v} for k, v in pairs.items()])


def missing(what: str) -> str:
    return f"<p class=\"missing\">{esc(what)}</p>"


def how(text: str) -> str:
    return f"<p class=\"how\">{esc(text)}</p>"


def section(title: str, body: str, anchor: str) -> str:
    return f"<section id=\"{esc(anchor)}\"><h2>{esc(title)}</h2>{body}</section>"


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    return (
        f"<figure><img src=\"data:{fig.mime};base64,{data}\" alt=\"{esc(fig.name)}\" width=\"{fig.width}\" height=\"{fig.height}\">"
        f"<figcaption>{esc(fig.name)}</figcaption></figure>"
    )


def figures_html(figs: Iterable[Figure], none: str) -> str:
    figs = list(figs)
    return f"<div class=\"gallery\">{''.join(figure_html(f) for f in figs)}</div>" if figs else missing(none)


def result_tables(result: dict[str, Any], skip: Iterable[str] = ()) -> str:
    """A generic view of a result JSON: its scalar settings, then one table per list or mapping of rows."""
    skip = set(skip) | {"figures", "timings_s", "timings"}
    settings, parts = {}, []
    for key, value in result.items():
        if key in skip:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(f"<h3>{esc(key)}</h3>" + table([flatten(v) for v in value]))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            parts.append(f"<h3>{esc(key)}</h3>" + table([{"name": k, **flatten(v)} for k, v in value.items()], first="name"))
        elif isinstance(value, dict):
            settings.update(flatten(value, str(key)))
        else:
            settings[str(key)] = value
    return (key_values(settings) if settings else "") + "".join(parts)


def _first(run: RunFolder, key: str) -> Any:
    """``key`` from the first result that records it (a ``cemap run`` manifest keeps its settings under ``config``)."""
    manifest = run.get("manifest") or {}
    for result in (run.get("study"), run.get("metrics"), run.get("explain"), run.get("evaluation"), run.get("detection"), manifest, manifest.get("config")):
        if isinstance(result, dict) and key in result:
            return result[key]
    return None


def settings_section(run: RunFolder) -> str:
    keys = ("dataset", "model", "weights", "layer", "split_method", "methods", "seed", "quick", "n_images")
    found = {k: v for k in keys if (v := _first(run, k)) is not None}
    ce = _first(run, "ce_map")
    if isinstance(ce, dict):
        found.update(flatten(ce, "ce_map"))
    settings = _first(run, "settings")
    if isinstance(settings, dict):
        found.update(flatten(settings))
    body = key_values(found) if found else missing("Not recorded: no metrics.json, study.json or explain.json with settings in this folder.")
    quality = _first(run, "classifier")
    if isinstance(quality, dict):
        body += "<h3>Classifier quality (test split)</h3>" + key_values(flatten(quality))
    return section("Model, data and settings", body, "settings")


def fidelity_section(run: RunFolder) -> str:
    ae = _first(run, "autoencoder")
    fid = ae.get("fidelity") if isinstance(ae, dict) else None
    if not isinstance(fid, dict):
        return section("Autoencoder fidelity", missing("Not computed: no autoencoder was fitted in this run."), "fidelity")
    verdict = (
        "<p class=\"ok\">High fidelity: the classifier with the autoencoder in place decides like the original, so latent CEs describe the original model.</p>"
        if fid.get("ok")
        else "<p class=\"warn\">Low fidelity: the autoencoder changes the classifier's decisions; read the latent CE profiles with caution.</p>"
    )
    text = how("Agreement is the share of decisions (top-1 class, or each finding's yes/no) unchanged when the autoencoder is inserted at the layer; mean KL is the divergence of the predictive distributions. Latent CEs are meaningful when agreement >= 0.98 and mean KL <= 0.05.")
    return section("Autoencoder fidelity", text + verdict + key_values(flatten(ae)), "fidelity")


def maps_section(run: RunFolder) -> str:
    text = how("Each row is one image (green boxes: the true finding locations, where known). The CE map paints the drop in the predicted probability when each grid cell is masked: red = masking it lowers the prediction, so the model relies on it; blue = masking it raises the prediction. Baselines (CAMs, Occlusion, Integrated Gradients, random, centre) sit beside it on the same scale convention.")
    return section("CE maps beside the baselines", text + figures_html(run.figures_in("maps"), "Not computed: no overlay figures in this folder."), "maps")


def profiles_section(run: RunFolder) -> str:
    text = how("Bar j is the expected causal effect (ECE) of setting concept channel Z_j of the autoencoder to zero, averaged over images (error bars: one standard deviation). Clean images rely on a few channels; masking the true finding box or an adversarial perturbation moves the profile - the paper's experiments.")
    body = text + figures_html(run.figures_in("profiles"), "Not computed: no latent CE profile figure in this folder.")
    study = run.get("study")
    summary = study.get("latent_profiles") if study else None
    if isinstance(summary, dict) and summary:
        body += "<h3>Profile summary per condition</h3>" + table([{"condition": k, **flatten(v)} for k, v in summary.items()], first="condition")
    return section("Latent CE profiles: clean, masked box, adversarial", body, "profiles")


def main_table(result: dict[str, Any], key: str, first: str) -> str:
    """The headline table of a result (a list of row dicts under ``key``), or nothing when absent."""
    rows = result.get(key)
    if not (isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows)):
        return ""
    return table([flatten(r) for r in rows], first=first)


def details(result: dict[str, Any], skip: Iterable[str], label: str) -> str:
    body = result_tables(result, skip=skip)
    return f"<details><summary>{esc(label)}</summary>{body}</details>" if body else ""


def evaluation_section(run: RunFolder) -> str:
    result = run.get("evaluation")
    if result is None:
        return section("Evaluation: CE versus the baselines", missing("Not computed: no evaluation.json in this folder (run cemap evaluate or the full cemap demo)."), "evaluation")
    text = how("One row per explanation method. Pointing game and T(IoBB): higher = points at the true box more often; energy: share of positive map mass inside the box; deletion AUC: lower = more faithful, insertion AUC: higher = more faithful; robustness: rank correlation under noise or a small attack (higher = more stable); sanity: rank correlation with a weight-randomised model (lower = the map depends on what the model learned).")
    head = main_table(result, "rows", "method")
    return section("Evaluation: CE versus the baselines", text + head + details(result, ("rows",) if head else (), "All recorded evaluation values"), "evaluation")


def detection_section(run: RunFolder) -> str:
    result = run.get("detection")
    text = how("AUROC and TPR at 5% FPR for telling adversarial from clean held-out images, per attack and budget, for the CE detector and the baselines (maximum softmax probability, feature squeezing, LID). The histograms show the CE signature of clean versus adversarial images: the less they overlap, the easier the detection.")
    if result is None:
        body = text + missing("Not computed: no detection.json in this folder (run cemap detect or the full cemap demo).")
    else:
        head = main_table(result, "table", "row")
        protocol = result.get("protocol")
        body = text + head + (key_values(flatten(protocol)) if isinstance(protocol, dict) else "")
        body += details(result, ("table", "protocol") if head else (), "All recorded detection values")
    body += "<h3>CE signatures, clean versus adversarial</h3>" + figures_html(run.figures_in("signatures"), "Not computed: no signature histograms in this folder.")
    body += "<h3>ROC curves</h3>" + figures_html(run.figures_in("roc"), "Not computed: no ROC curves in this folder.")
    return section("Adversarial detection", body, "detection")


def explained_section(run: RunFolder) -> str:
    result = run.get("explain")
    if result is None:
        return ""
    return section("Explained images", result_tables(result, skip=("dataset", "model", "weights", "layer", "autoencoder", "ce_map", "settings")), "explained")


def dataset_run_section(run: RunFolder) -> str:
    manifest = run.get("manifest")
    if manifest is None:
        return ""
    text = how("A dataset-scale run (cemap run): per-image rows in shards/*.parquet and maps in shards/*.npz; unreadable images are listed in errors.jsonl.")
    return section("Dataset-scale run", text + result_tables(manifest, skip=("class_names", "columns", "autoencoder")), "dataset-run")


def timings_section(run: RunFolder) -> str:
    rows = [{"file": f, "stage": s, "seconds": v} for f, s, v in run.timings]
    return section("Timings", table(rows) if rows else missing("Not recorded: no timings in this folder."), "timings")


def other_section(run: RunFolder) -> str:
    figs = run.figures_in("other")
    return section("Other figures", figures_html(figs, ""), "other") if figs else ""


def recorded_section(run: RunFolder) -> str:
    """Every scalar value of metrics.json and study.json, so nothing measured is hidden from the reader."""
    parts = []
    for kind in ("metrics", "study"):
        result = run.get(kind)
        if result:
            values = {k: v for k, v in flatten(result).items() if not k.startswith(("figures", "timings")) and not (isinstance(v, list) and len(v) > MAX_LIST)}
            parts.append(f"<h3>{esc(kind)}.json</h3>" + key_values(values))
    return section("All recorded values", "".join(parts), "values") if parts else ""


def files_section(run: RunFolder) -> str:
    items = "".join(f"<li>{esc(name)}</li>" for name in run.files)
    return section("Files in this run folder", f"<ul class=\"files\">{items}</ul>" if items else missing("The folder is empty."), "files")


def problems_section(run: RunFolder) -> str:
    if not run.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in run.problems)
    return f"<section class=\"problems\"><h2>Problems reading this folder</h2><ul>{items}</ul></section>"


def render_html(run: RunFolder) -> str:
    """The whole page for ``run`` as one string."""
    title = f"cemap report: {run.path.resolve().name}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "".join(
        [
            problems_section(run), settings_section(run), fidelity_section(run), maps_section(run), profiles_section(run),
            evaluation_section(run), detection_section(run), explained_section(run), dataset_run_section(run), timings_section(run),
            other_section(run), recorded_section(run), files_section(run),
        ]
    )
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(str(run.path))} &middot; cemap {esc(__version__)} &middot; {esc(stamp)}</p></header>"
        f"<main>{body}</main></body></html>"
    )


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Render ``run_dir`` into ``out`` (default ``run_dir/report.html``) and return the path."""
    run = read_run_folder(run_dir)
    path = Path(out) if out is not None else run.path / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_html(run), encoding="utf-8")
    tmp.replace(path)
    return path
