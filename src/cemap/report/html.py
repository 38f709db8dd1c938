"""One self-contained ``report.html`` from a run folder: what the run found first, then how, then everything.

Images are inlined as data URIs, the CSS is inline and the one script (the image explorer) is
allowed by its SHA-256 hash in the page's Content-Security-Policy, which forbids every network
fetch and every other script; the page opens the same offline, from an e-mail attachment or from
a shared drive. Every string that comes from a run (file names, class names, image ids, JSON
keys) goes through ``html.escape`` here, or ``textContent`` in the script.

:func:`render_html` takes an already-read :class:`RunFolder` (``read_run_folder`` fills it from
disk; a caller that has opened a ``cemap run`` itself can build one and call
:func:`cemap.report.run_folder.add_run_results`).
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
from pathlib import Path
from typing import Any, Iterable

from .. import __version__
from .explorer_html import EXPLORER_CSS, explorer_html, script_hash
from .headline import DETECTION_COLUMNS, Claim, concept_labels, concept_rows, fidelity_sentence, headlines, not_computed
from .numbers import is_interval, number, show
from .run_folder import Figure, RunFolder, read_run_folder

CSP_BASE = "default-src 'none'; img-src data:; base-uri 'none'; form-action 'none'"
MAX_LIST = 8  # longer lists of numbers are summarised, not printed
CLAIMS_PER_SOURCE = 2  # headline claims per study file on the first screen
HEADLINE_ROWS = 6  # rows of the one table on the first screen
MAX_COLUMNS = 9  # wider tables show their first columns; the whole table is one click away

CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9;line-height:1.45}
main{max-width:1220px;margin:0 auto;padding:10px 24px 60px}
header{background:#1d2330;color:#fff;padding:8px 24px}header h1{margin:0;font-size:1.15rem;overflow-wrap:anywhere}header p{margin:2px 0 0;color:#c8cdd8;font-size:.8rem;overflow-wrap:anywhere}
nav{font-size:.82rem;margin:6px 0 0}nav a{color:#9db5d6;margin-right:12px}
section{background:#fff;border:1px solid #e0e3e8;border-radius:8px;padding:10px 18px;margin:12px 0}
h2{font-size:1.1rem;margin:4px 0 8px}h3{font-size:.98rem;margin:12px 0 6px}
p.how{color:#4a5263;font-size:.9rem;margin:4px 0 8px}
table{border-collapse:collapse;font-size:.84rem;margin:6px 0 10px;width:auto;max-width:100%}
th,td{border:1px solid #e0e3e8;padding:3px 7px;text-align:left;vertical-align:top;overflow-wrap:anywhere}th{background:#f0f2f5;font-weight:600;overflow-wrap:normal}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.gallery{display:flex;flex-wrap:wrap;gap:4px 18px;align-items:flex-start}figure{margin:10px 0 16px;max-width:100%}figure img{max-width:100%;height:auto;border:1px solid #e0e3e8}
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
"""


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
        "<tr>" + "".join(f'<td class="num">{fmt(r.get(c))}</td>' if _is_number(r.get(c)) else f"<td>{fmt(r.get(c))}</td>" for c in columns) + "</tr>"
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
    """The figure inlined; its caption is what it shows (an explained file's real name) where known, else its file name."""
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    text = esc(fig.name) if caption is None else f"{esc(caption)} <span class=\"src\">({esc(fig.name)})</span>"
    return (
        f'<figure><img src="data:{fig.mime};base64,{data}" alt="{esc(caption or fig.name)}" width="{fig.width}" height="{fig.height}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


def figures_html(figs: Iterable[Figure], none: str, captions: dict[str, str] | None = None) -> str:
    figs, captions = list(figs), captions or {}
    return f'<div class="gallery">{"".join(figure_html(f, captions.get(f.name)) for f in figs)}</div>' if figs else missing(none)


def explained_names(run: RunFolder) -> dict[str, str]:
    """Overlay file of each image cemap explain explained -> the image's real (relative) file name."""
    rows = [r for r in ((run.get("explain") or {}).get("images") or []) if isinstance(r, dict)]
    items = [i for i in run.explorer if "explain" in i.source]
    names = {}
    for k, row in enumerate(rows):
        if isinstance(row.get("overlay"), str):
            names[row["overlay"]] = items[k].id if k < len(items) else str(row.get("file", row["overlay"]))
    return names


def raw_details(result: dict[str, Any], label: str, skip: Iterable[str] = ()) -> str:
    """Every value of a result, collapsed: scalars as one table, lists of rows as tables."""
    skip = set(skip) | {"figures", "headline"}
    settings, parts = {}, []
    for key, value in result.items():
        if key in skip:
            continue
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            parts.append(f"<h3>{esc(key)}</h3>" + table([flatten(v) for v in value], max_columns=10_000))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) and not is_interval(v) for v in value.values()):
            parts.append(f"<h3>{esc(key)}</h3>" + table([{"name": k, **flatten(v)} for k, v in value.items()], first="name", max_columns=10_000))
        elif isinstance(value, dict):
            settings.update(flatten(value, str(key)))
        else:
            settings[str(key)] = value
    body = (key_values(settings) if settings else "") + "".join(parts)
    return f"<details><summary>{esc(label)}</summary>{body}</details>" if body else ""


def _first(run: RunFolder, key: str) -> Any:
    """``key`` from the first result that records it (a ``cemap run`` manifest keeps its settings under ``config``)."""
    manifest = run.get("manifest") or {}
    for result in (run.get("study"), run.get("metrics"), run.get("explain"), run.get("evaluation"), run.get("detection"), manifest, manifest.get("config")):
        if isinstance(result, dict) and key in result:
            return result[key]
    return None


# ---------------------------------------------------------------- headline

def claim_html(claim: Claim) -> str:
    tag = " (derived by the report)" if claim.derived else ""
    return f'<li>{esc(claim.text)} <span class="src">{esc(claim.source)}{esc(tag)}</span></li>'


def headline_section(run: RunFolder) -> str:
    claims = headlines(run.results)
    sentence, cls = fidelity_sentence(run.results)
    body = f'<p class="fid {cls}">{esc(sentence)}</p>'
    shown_ids = set()
    for source in dict.fromkeys(c.source for c in claims):  # the first screen keeps a few claims per study; the rest are one click away
        group = [c for c in claims if c.source == source]
        verdicts, others = [c for c in group if c.rank == 0], [c for c in group if c.rank != 0]
        room = 1 if verdicts else CLAIMS_PER_SOURCE
        picked = others[:1]
        adaptive = next((c for c in others[1:] if "adaptive" in c.text.lower()), None)  # what the detector achieves against an attacker who knows it
        picked += [adaptive] if adaptive is not None and room > 1 else others[1:room]
        shown_ids |= {id(c) for c in verdicts + picked[:room]}
    shown = [c for c in claims if id(c) in shown_ids]
    more = [c for c in claims if id(c) not in shown_ids]
    body += f'<ul class="claims">{"".join(claim_html(c) for c in shown)}</ul>' if shown else ""
    if more:
        body += f'<details><summary>{len(more)} more findings</summary><ul class="claims">{"".join(claim_html(c) for c in more)}</ul></details>'
    gaps = not_computed(run.results)
    if gaps:
        body += missing("Not computed in this run: " + "; ".join(gaps) + ".")
    tables = [c for c in claims if c.table]
    if tables:
        rows = tables[0].table
        body += f"<h3>{esc(tables[0].source)}</h3>" + table(rows[:HEADLINE_ROWS], max_columns=7)
        if len(rows) > HEADLINE_ROWS:
            body += f"<details><summary>All {len(rows)} rows</summary>{table(rows)}</details>"
    if len(tables) > 1:
        body += "<details><summary>The other headline tables</summary>" + "".join(f"<h3>{esc(c.source)}</h3>" + table(c.table) for c in tables[1:]) + "</details>"
    return section("What this run found", body, "headline")


# ---------------------------------------------------------------- settings in words

def _ce_words(ce: dict) -> str:
    parts = []
    passes = ce.get("forward_passes_per_image")
    if isinstance(passes, int) and passes > 1:
        g = round((passes - 1) ** 0.5)
        if g * g == passes - 1:
            parts.append(f"{g} x {g} grid")
    if ce.get("cell") is not None:
        parts.append(f"{ce['cell']} px cells" + (f" moved {ce['stride']} px at a time" if ce.get("stride") not in (None, ce.get("cell")) else ""))
    if ce.get("fill") is not None:
        parts.append(f"{ce['fill']} fill")
    if passes is not None:
        parts.append(f"{passes} forward passes per image")
    return "CE map: " + ", ".join(parts) + "."


PLAN_WORDS = {
    "figure_images": "{} images in the map figures", "profile_images": "latent profiles over {} images", "pgd_steps": "PGD with {} steps",
    "eval_images": "evaluation on up to {} images", "eval_robust": "{} of them for robustness", "eval_steps": "{} steps for deletion / insertion",
}


def settings_words(run: RunFolder) -> list[str]:
    words = []
    dataset, model = _first(run, "dataset"), _first(run, "model")
    explain = run.get("explain")
    if explain is not None and not dataset:
        words.append(f"Model {model or 'not recorded'} on {number(explain.get('n_images'))} image files given to cemap explain.")
    elif dataset or model:
        words.append(f"Model {model or 'not recorded'} on dataset {dataset or 'not recorded'}"
                     + (f" (split: {_first(run, 'split')})" if _first(run, "split") else "") + ".")
    ae = _first(run, "autoencoder")
    layer, split = _first(run, "layer"), _first(run, "split_method")
    if isinstance(ae, dict):  # a cemap run keeps them with its autoencoder
        layer, split = layer or ae.get("layer"), split or ae.get("split_method")
    if layer:
        text = f"Latent interventions at layer {layer}"
        if split:
            text += f" (model split by {split})"
        if isinstance(ae, dict) and ae.get("code_channels"):
            text += f", through an autoencoder with {ae['code_channels']} concept channels Z0..Z{int(ae['code_channels']) - 1}"
        words.append(text + ".")
    ce = _first(run, "ce_map") or (run.get("manifest") or {}).get("cemap")
    if isinstance(ce, dict):
        words.append(_ce_words(ce))
    value = ((run.get("manifest") or {}).get("config") or {}).get("value")
    if value is not None:
        words.append(f"Latent intervention: do(Z_j = {value}).")
    attacks = (run.get("manifest") or {}).get("attacks")
    if isinstance(attacks, dict) and attacks:
        said = []
        for name, budget in attacks.items():
            b = budget if isinstance(budget, dict) else {}
            said.append(f"{name}" + (f" ({str(b.get('norm', '')).replace('linf', 'L-inf').replace('l2', 'L2')} eps {number(b['eps'])})" if "eps" in b else ""))
        words.append("Attacks per image: " + ", ".join(said) + ".")
    methods = _first(run, "methods")
    if isinstance(methods, list) and methods:
        words.append("Explanation methods: " + ", ".join(map(str, methods)) + ".")
    plan = (_first(run, "settings") or {}).get("plan") if isinstance(_first(run, "settings"), dict) else None
    if isinstance(plan, dict):
        said = [PLAN_WORDS[k].format(v) for k, v in plan.items() if k in PLAN_WORDS]
        mode = "Quick mode (a small subset of the full study): " if _first(run, "quick") else "Full study: "
        words.append(mode + ", ".join(said) + ".")
    evaluation = run.get("evaluation")
    if isinstance(evaluation, dict) and evaluation.get("n_pairs") is not None:
        text = f"Evaluation over {number(evaluation.get('n_images'))} images ({number(evaluation.get('n_pairs'))} image-finding pairs)"
        cfg = evaluation.get("config") if isinstance(evaluation.get("config"), dict) else {}
        extra = [f"{cfg['steps']} deletion / insertion steps" if cfg.get("steps") else "", f"{cfg['n_robust']} pairs for robustness" if cfg.get("n_robust") else ""]
        tuned = (evaluation.get("ce_tuning") or {}).get("chosen") if isinstance(evaluation.get("ce_tuning"), dict) else None
        if isinstance(tuned, dict):
            extra.append("CE settings chosen on the train split: " + ", ".join(f"{k} {v}" for k, v in tuned.items()))
        words.append(text + (": " + "; ".join(e for e in extra if e) if any(extra) else "") + ".")
    seed = _first(run, "seed")
    if seed is not None:
        words.append(f"Random seed {seed}.")
    return words


def settings_section(run: RunFolder) -> str:
    words = settings_words(run)
    body = f'<ul class="words">{"".join(f"<li>{esc(w)}</li>" for w in words)}</ul>' if words else missing(
        "Not recorded: no metrics.json, study.json or explain.json with settings in this folder.")
    quality = _first(run, "classifier")
    if isinstance(quality, dict):
        body += "<h3>Classifier quality (test split)</h3>" + key_values({k: v for k, v in flatten(quality).items() if not (isinstance(v, dict))})
    raw = {}
    for key in ("dataset", "model", "weights", "layer", "split_method", "methods", "seed", "quick", "n_images"):
        if (v := _first(run, key)) is not None:
            raw[key] = v
    for key in ("ce_map", "settings", "config"):
        if isinstance(v := _first(run, key), dict):
            raw.update(flatten(v, key))
    if raw:
        body += "<details><summary>The settings as recorded</summary>" + key_values(raw) + "</details>"
    return section("Model, data and settings", body, "settings")


# ---------------------------------------------------------------- sections

def fidelity_section(run: RunFolder) -> str:
    ae = _first(run, "autoencoder")
    fid = ae.get("fidelity") if isinstance(ae, dict) else None
    if not isinstance(fid, dict):
        return section("Autoencoder fidelity", missing("Not computed: no autoencoder was fitted in this run."), "fidelity")
    sentence, cls = fidelity_sentence(run.results)
    verdict = f'<p class="{cls}"><strong>{"High fidelity" if fid.get("ok") else "Low fidelity"}.</strong> {esc(sentence)}</p>'
    text = how("Agreement is the share of decisions (top-1 class, or each finding's yes/no) unchanged when the autoencoder is inserted at the layer; mean KL is the divergence of the predictive distributions. Latent CEs are meaningful when agreement >= 0.98 and mean KL <= 0.05.")
    return section("Autoencoder fidelity", text + verdict + raw_details(ae, "All autoencoder values"), "fidelity")


def explorer_section(run: RunFolder) -> tuple[str, str]:
    body, script = explorer_html(run.explorer, run.class_names, concept_labels(run.get("latent_concepts")))
    if not body:
        return section("Image explorer", missing("Not available: this folder holds no per-image data (explorer.npz, or the shards of a cemap run)."), "explorer"), ""
    text = how("Click an image (or focus it and press Enter): the panel shows it large in its own colours, every map side by side on one colour scale with the true boxes, the predicted probabilities and the image's latent CE profile. The buttons switch the large view between the image and each method's map.")
    return section(f"Image explorer ({len(run.explorer)} images)", text + body, "explorer"), script


def concepts_section(run: RunFolder) -> str:
    doc = run.get("latent_concepts")
    if doc is None:
        return ""
    rows = concept_rows(doc)
    text = how("What each concept channel Z_j responds to, measured on held-out images with ground truth: how well its pooled activation predicts each finding or class (AUROC, with its interval for the best one), the share of its activation energy inside that finding's boxes (against the share of the image the boxes cover), and the class causal effect of switching it off. A channel is labelled by its best-aligned concept in the profile charts and the explorer.")
    body = text
    box_area = doc.get("box_area") if isinstance(doc.get("box_area"), dict) else {}
    table_rows = []
    for r in rows:
        raw, best = r["row"], r["concept"]
        row = {"channel": f"Z{r['channel']}", "best-aligned concept": best, "AUROC": raw.get("best_auroc", r["score"])}
        energy = raw.get("energy_in_box")
        if isinstance(energy, dict) and energy.get(best) is not None:
            area = box_area.get(best)
            row["energy in its boxes"] = f"{show(energy[best])} (flat: {show(area)})" if area is not None else energy[best]
        effect = raw.get("class_effect")
        if isinstance(effect, dict) and best in effect:
            row["class CE when off"] = effect[best]
        tops = raw.get("top_images")
        if isinstance(tops, list) and tops:
            row["top images"] = ", ".join(str(t.get("id", t.get("index"))) for t in tops if isinstance(t, dict))
        table_rows.append(row)
    if table_rows:
        body += table(table_rows, first="channel")
    else:
        body += missing("latent_concepts.json holds no per-channel rows this report can read.")
    skip = ("rows", "channels", "labels") if rows else ()
    body += raw_details({k: v for k, v in doc.items() if k != "rows"} if rows else doc, "All recorded concept values", skip=skip)
    if rows:
        per_concept = [{"channel": f"Z{r['channel']}", **{f"AUROC {c}": v for c, v in r["row"]["auroc"].items()}} for r in rows if isinstance(r["row"].get("auroc"), dict)]
        if per_concept:
            body += f"<details><summary>AUROC of every channel for every concept</summary>{table(per_concept, first='channel', max_columns=10_000)}</details>"
    body += figures_html([f for f in run.figures if "concept" in f.name.lower()], "No concept figures in this folder.")
    return section("Latent channels explained", body, "concepts")


def maps_section(run: RunFolder) -> str:
    text = how("Each row is one image (green boxes: the true finding locations, where known). The CE map paints the drop in the predicted probability when each grid cell is masked: red = masking it lowers the prediction, so the model relies on it; blue = masking it raises the prediction. Baselines (CAMs, Occlusion, Integrated Gradients, random, centre) sit beside it on the same scale convention.")
    figures = run.figures_in("maps")
    if not figures and run.explorer:  # a cemap run keeps each image's maps, not overlay figures: the explorer shows them
        return section("CE maps beside the baselines", text + how("This folder's maps are per image: open them in the image explorer above."), "maps")
    return section("CE maps beside the baselines", text + figures_html(figures, "Not computed: no overlay figures in this folder.", explained_names(run)), "maps")


def profiles_section(run: RunFolder) -> str:
    text = how("Bar j is the expected causal effect (ECE) of setting concept channel Z_j of the autoencoder to zero, averaged over images (error bars: one standard deviation).")
    body = text + figures_html([f for f in run.figures_in("profiles") if "concept" not in f.name.lower()], "Not computed: no latent CE profile figure in this folder.")
    labels = concept_labels(run.get("latent_concepts"))
    if labels:
        body += "<h3>Channels by concept</h3>" + table([{"channel": f"Z{j}", "best-aligned concept": t} for j, t in labels.items()])
    study = run.get("study")
    summary = study.get("latent_profiles") if study else None
    if isinstance(summary, dict) and summary:
        body += "<h3>Profile summary per condition</h3>" + table([{"condition": k, **flatten(v)} for k, v in summary.items()], first="condition")
    controls = run.get("latent_controls")
    if isinstance(controls, dict):
        body += "<h3>Each condition beside its control</h3>" + how("From latent_controls.json: every shift with its paired bootstrap interval, and the difference between a condition and its control (on the same held-out images).")
        for entry in controls.get("headline") or []:
            if isinstance(entry, dict) and isinstance(entry.get("claim"), str):
                body += f"<p>{esc(entry['claim'])}</p>" + (table([flatten(r) for r in entry["table"] if isinstance(r, dict)]) if isinstance(entry.get("table"), list) and entry["table"] else "")
        for key, entry in (controls.get("claims") or {}).items():
            if isinstance(entry, dict) and isinstance(entry.get("forms"), dict) and entry["forms"]:
                forms = [{"form of the claim": f, "holds": v} for f, v in entry["forms"].items()]
                body += f"<h3>{esc(entry.get('claim', key))}</h3><p>{esc(entry.get('verdict', ''))}</p>" + table(forms)
        body += figures_html([f for f in run.figures if "control" in f.name.lower()], "No control figure in this folder.")
        body += raw_details(controls, "All recorded control values")
    return section("Latent CE profiles: clean, masked box, adversarial", body, "profiles")


EVAL_COLUMNS = [("method", "method"), ("pointing_game", "pointing game"), ("pointing_game_tol", "pointing game (tolerant)"), ("energy_pointing", "energy in box"),
                ("iobb@0.5", "IoBB > 0.5"), ("deletion_auc", "deletion AUC (lower better)"), ("insertion_auc", "insertion AUC"),
                ("noise_spearman", "stability, noise"), ("randomisation_spearman", "randomisation rho (lower better)"), ("ms_per_map", "ms per map")]


def evaluation_section(run: RunFolder) -> str:
    result = run.get("evaluation")
    if result is None:
        return section("Evaluation: CE versus the baselines", missing("Not computed: no evaluation.json in this folder (run cemap evaluate or the full cemap demo)."), "evaluation")
    text = how("One row per explanation method. Pointing game and IoBB: higher = points at the true box more often; energy: share of positive map mass inside the box; deletion AUC: lower = more faithful, insertion AUC: higher = more faithful; stability: rank correlation under noise (higher = more stable); randomisation: rank correlation with a weight-randomised model (lower = the map depends on what the model learned). Intervals are 95% bootstrap intervals where the study computed them.")
    rows = [r for r in result.get("rows") or [] if isinstance(r, dict)]
    head = ""
    if rows:
        keys = [(k, w) for k, w in EVAL_COLUMNS if any(k in r for r in rows)]
        head = table([{w: r.get(k) for k, w in keys} for r in rows], first="method", max_columns=len(keys))
    return section("Evaluation: CE versus the baselines", text + head + raw_details(result, "All recorded evaluation values"), "evaluation")


def detection_section(run: RunFolder) -> str:
    result = run.get("detection")
    text = how("AUROC and TPR at 5% FPR for telling adversarial from clean held-out images, per attack and budget, for the CE detector and the baselines (maximum softmax probability, feature squeezing, LID). The histograms show the CE signature of clean versus adversarial images: the less they overlap, the easier the detection.")
    if result is None:
        body = text + missing("Not computed: no detection.json in this folder (run cemap detect or the full cemap demo).")
    else:
        words = dict(DETECTION_COLUMNS) | {"ce_tpr5": "CE TPR at 5% FPR", "msp_tpr5": "MSP TPR", "feature_squeezing_tpr5": "squeezing TPR", "lid_tpr5": "LID TPR",
                                         "mahalanobis_auroc": "Mahalanobis AUROC", "mahalanobis_tpr5": "Mahalanobis TPR", "logit_stats_auroc": "logit-stats AUROC",
                                         "logit_stats_tpr5": "logit-stats TPR", "ce_minus_best": "CE minus the best baseline"}
        group = lambda k: 2 if k.endswith("_auroc") else 4 if "tpr" in k else 3 if k.startswith("ce_") else 1 if k != "row" else 0  # noqa: E731
        rows = [{words.get(k, k): v for k, v in sorted(flatten(r).items(), key=lambda kv: group(kv[0]))}  # AUROCs before TPRs
                for r in result.get("table") or [] if isinstance(r, dict)]
        body = text + (table(rows, first="attack") if rows else "")
        protocol = result.get("protocol")
        if isinstance(protocol, dict):
            body += "<h3>Protocol</h3>" + key_values(flatten(protocol))
        body += raw_details(result, "All recorded detection values")
    body += "<h3>CE signatures, clean versus adversarial</h3>" + figures_html(run.figures_in("signatures"), "Not computed: no signature histograms in this folder.")
    body += "<h3>ROC curves</h3>" + figures_html(run.figures_in("roc"), "Not computed: no ROC curves in this folder.")
    return section("Adversarial detection", body, "detection")


def explained_section(run: RunFolder) -> str:
    result = run.get("explain")
    if result is None:
        return ""
    rows = [r for r in result.get("images") or [] if isinstance(r, dict)]
    names = explained_names(run)
    body = table([{"file": names.get(r.get("overlay"), r.get("file")), "explained class": r.get("target"), "probability": r.get("probability"), "overlay": r.get("overlay")} for r in rows]) if rows else ""
    return section("Explained images", body + raw_details(result, "All recorded explain values", skip=("images",)), "explained")


def dataset_run_section(run: RunFolder) -> str:
    manifest = run.get("manifest")
    if manifest is None:
        return ""
    text = how("A dataset-scale run (cemap run): per-image rows in shards/*.parquet and maps in shards/*.npz; unreadable images are listed in errors.jsonl.")
    facts = {k: manifest.get(k) for k in ("n_images", "n_rows", "n_errors", "complete") if k in manifest}
    body = text + (key_values(facts) if facts else "")
    unreadable = getattr(run, "unreadable", None) or []
    if unreadable:
        body += f"<h3>Images that could not be read ({len(unreadable)})</h3>" + table(unreadable[:200])
        body += missing(f"{len(unreadable) - 200} more in errors.jsonl") if len(unreadable) > 200 else ""
    return section("Dataset-scale run", body + raw_details(manifest, "The whole manifest", skip=("class_names", "columns")), "dataset-run")


def timings_section(run: RunFolder) -> str:
    rows = [{"file": f, "stage": s, "seconds": v} for f, s, v in run.timings]
    return section("Timings", table(rows) if rows else missing("Not recorded: no timings in this folder."), "timings")


def other_section(run: RunFolder) -> str:
    figs = [f for f in run.figures_in("other") if not any(w in f.name.lower() for w in ("concept", "control"))]
    return section("Other figures", figures_html(figs, ""), "other") if figs else ""


def recorded_section(run: RunFolder) -> str:
    """Every value of every result file, collapsed, so nothing measured is hidden from the reader."""
    parts = [raw_details(result, f"{kind}.json") for kind, result in run.results.items()]
    parts = [p for p in parts if p]
    return section("All recorded values", how("Each result file in full; open one to read it.") + "".join(parts), "values") if parts else ""


def files_section(run: RunFolder) -> str:
    links = "".join(
        f'<li><a download="{esc(name)}" href="data:application/json;base64,{base64.b64encode(data).decode("ascii")}">{esc(name)}</a> '
        f'<span class="src">{esc(f"{len(data):,} bytes")}</span></li>'
        for name, data in sorted(run.downloads.items())
    )
    body = (f"<h3>Download the results</h3><ul class=\"files\">{links}</ul>" if links else "")
    items = "".join(f"<li>{esc(name)}</li>" for name in run.files)
    body += f"<details><summary>All {len(run.files)} files in the folder</summary><ul class=\"files\">{items}</ul></details>" if items else missing("The folder is empty.")
    return section("Files in this run folder", body, "files")


def problems_section(run: RunFolder) -> str:
    if not run.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in run.problems)
    return f'<section class="problems"><h2>Problems reading this folder</h2><ul>{items}</ul></section>'


NAV = [("headline", "Findings"), ("settings", "Settings"), ("explorer", "Images"), ("fidelity", "Fidelity"), ("concepts", "Concepts"),
       ("maps", "Maps"), ("profiles", "Profiles"), ("evaluation", "Evaluation"), ("detection", "Detection"), ("values", "All values"), ("files", "Files")]


def content_security_policy(script: str, style: str) -> str:
    """Only this page's own style sheet and script run, each allowed by its SHA-256 hash (none: no script at all)."""
    return CSP_BASE + f"; style-src {script_hash(style)}" + (f"; script-src {script_hash(script)}" if script else "; script-src 'none'")


def render_html(run: RunFolder) -> str:
    """The whole page for ``run`` as one string."""
    title = f"cemap report: {run.path.resolve().name}"
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    explorer, script = explorer_section(run)
    sections = [
        problems_section(run), headline_section(run), settings_section(run), explorer, fidelity_section(run), concepts_section(run),
        maps_section(run), profiles_section(run), evaluation_section(run), detection_section(run), explained_section(run),
        dataset_run_section(run), timings_section(run), other_section(run), recorded_section(run), files_section(run),
    ]
    body = "".join(sections)
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in NAV if f'id="{a}"' in body)
    style = CSS + (EXPLORER_CSS if script else "")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{content_security_policy(script, style)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{style}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(str(run.path))} &middot; cemap {esc(__version__)} &middot; {esc(stamp)}</p><nav>{nav}</nav></header>"
        f"<main>{body}</main>" + (f"<script>{script}</script>" if script else "") + "</body></html>"
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
