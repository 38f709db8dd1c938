"""The report's sections, each from the run folder's typed results: what the run found first, then how, then
everything."""

from __future__ import annotations

from typing import Any

from ..numbers import number, show
from .explorer_html import explorer_html
from ..causal.fidelity import MAX_MEAN_KL, MIN_AGREEMENT
from .headline import ShownClaim, concept_labels, fidelity_of, fidelity_sentence, headlines, not_computed
from .markup import esc, figures_html, flatten, how, key_values, missing, raw_details, section, table
from .run_folder import RunFolder

CLAIMS_PER_SOURCE = 2  # headline claims per study file on the first screen
HEADLINE_ROWS = 6  # rows of the one table on the first screen


# ---------------------------------------------------------------- headline


def claim_html(claim: ShownClaim) -> str:
    return f'<li>{esc(claim.text)} <span class="src">{esc(claim.source)}</span></li>'


def _first_screen(claims: list[ShownClaim]) -> set[int]:
    """Which claims the first screen shows: each study's verdicts, its first claim and (room permitting) its adaptive
    one."""
    shown_ids = set()
    for source in dict.fromkeys(c.source for c in claims):
        group = [c for c in claims if c.source == source]
        verdicts, others = [c for c in group if c.rank == 0], [c for c in group if c.rank != 0]
        room = 1 if verdicts else CLAIMS_PER_SOURCE
        picked = others[:1]
        adaptive = next(
            (c for c in others[1:] if "adaptive" in c.text.lower()), None
        )  # what the detector achieves against an attacker who knows it
        picked += [adaptive] if adaptive is not None and room > 1 else others[1:room]
        shown_ids |= {id(c) for c in verdicts + picked[:room]}
    return shown_ids


def headline_section(run: RunFolder) -> str:
    claims = headlines(run)
    sentence, cls = fidelity_sentence(run)
    body = f'<p class="fid {cls}">{esc(sentence)}</p>'
    shown_ids = _first_screen(claims)
    shown = [c for c in claims if id(c) in shown_ids]
    more = [c for c in claims if id(c) not in shown_ids]
    body += f'<ul class="claims">{"".join(claim_html(c) for c in shown)}</ul>' if shown else ""
    if more:
        body += (
            f"<details><summary>{len(more)} more findings</summary><ul "
            f'class="claims">{"".join(claim_html(c) for c in more)}</ul></details>'
        )
    gaps = not_computed(run)
    if gaps:
        body += missing("Not computed in this run: " + "; ".join(gaps) + ".")
    tables = [c for c in claims if c.table]
    if tables:
        rows = tables[0].table
        body += f"<h3>{esc(tables[0].source)}</h3>" + table(rows[:HEADLINE_ROWS], max_columns=7)
        if len(rows) > HEADLINE_ROWS:
            body += f"<details><summary>All {len(rows)} rows</summary>{table(rows)}</details>"
    if len(tables) > 1:
        body += (
            "<details><summary>The other headline tables</summary>"
            + "".join(f"<h3>{esc(c.source)}</h3>" + table(c.table) for c in tables[1:])
            + "</details>"
        )
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
        parts.append(
            f"{ce['cell']} px cells"
            + (f" moved {ce['stride']} px at a time" if ce.get("stride") not in (None, ce.get("cell")) else "")
        )
    if ce.get("fill") is not None:
        parts.append(f"{ce['fill']} fill")
    if passes is not None:
        parts.append(f"{passes} forward passes per image")
    return "CE map: " + ", ".join(parts) + "."


PLAN_WORDS = {
    "figure_images": "{} images in the map figures",
    "profile_images": "latent profiles over {} images",
    "pgd_steps": "PGD with {} steps",
    "eval_images": "evaluation on up to {} images",
    "eval_robust": "{} of them for robustness",
    "eval_steps": "{} steps for deletion / insertion",
}


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def run_settings(run: RunFolder) -> dict[str, Any]:
    """The settings the run's results record, each from the first result that has it."""
    o, d, e, ev, det, m = run.overview, run.demo, run.explain, run.evaluation, run.detection, run.dataset_run
    config = m.config if m is not None else {}
    autoencoder = _first(o and o.autoencoder, e and e.autoencoder, m and m.autoencoder) or {}
    return {
        "dataset": _first(
            d and d.dataset, o and o.dataset, ev and ev.dataset, det and det.dataset, config.get("dataset")
        ),
        "model": _first(
            d and d.model, o and o.model, e and e.model, ev and ev.model, det and det.model, config.get("model")
        ),
        "split": config.get("split"),
        "layer": _first(d and d.layer, o and o.layer, e and e.layer, det and det.layer, autoencoder.get("layer")),
        "split_method": _first(o and o.split_method, autoencoder.get("split_method")),
        "code_channels": autoencoder.get("code_channels"),
        "ce_map": _first(o and o.ce_map, m and m.cemap),
        "value": config.get("value"),
        "methods": _first(e and e.methods, config.get("methods")),
        "plan": (d.settings or {}).get("plan") if d is not None else None,
        "quick": d.quick if d is not None else None,
        "seed": _first(d and d.seed, config.get("seed")),
    }


def settings_words(run: RunFolder) -> list[str]:
    s = run_settings(run)
    words = []
    if run.explain is not None and not s["dataset"]:
        words.append(
            f"Model {s['model'] or 'not recorded'} on {number(run.explain.n_images)} image files given to cemap "
            "explain."
        )
    elif s["dataset"] or s["model"]:
        words.append(
            f"Model {s['model'] or 'not recorded'} on dataset {s['dataset'] or 'not recorded'}"
            + (f" (split: {s['split']})" if s["split"] else "")
            + "."
        )
    if s["layer"]:
        text = f"Latent interventions at layer {s['layer']}" + (
            f" (model split by {s['split_method']})" if s["split_method"] else ""
        )
        if s["code_channels"]:
            text += (
                f", through an autoencoder with {s['code_channels']} concept channels "
                f"Z0..Z{int(s['code_channels']) - 1}"
            )
        words.append(text + ".")
    if isinstance(s["ce_map"], dict):
        words.append(_ce_words(s["ce_map"]))
    if s["value"] is not None:
        words.append(f"Latent intervention: do(Z_j = {s['value']}).")
    attacks = run.dataset_run.attacks if run.dataset_run is not None else {}
    if attacks:
        said = [
            f"{name}"
            + (
                f" ({str(b.get('norm', '')).replace('linf', 'L-inf').replace('l2', 'L2')} eps {number(b['eps'])})"
                if "eps" in b
                else ""
            )
            for name, b in attacks.items()
        ]
        words.append("Attacks per image: " + ", ".join(said) + ".")
    if s["methods"]:
        words.append("Explanation methods: " + ", ".join(map(str, s["methods"])) + ".")
    if isinstance(s["plan"], dict):
        said = [PLAN_WORDS[k].format(v) for k, v in s["plan"].items() if k in PLAN_WORDS]
        words.append(
            ("Quick mode (a small subset of the full study): " if s["quick"] else "Full study: ")
            + ", ".join(said)
            + "."
        )
    if run.evaluation is not None:
        words.append(_evaluation_words(run))
    if s["seed"] is not None:
        words.append(f"Random seed {s['seed']}.")
    return words


def _evaluation_words(run: RunFolder) -> str:
    ev = run.evaluation
    text = f"Evaluation over {number(ev.n_images)} images ({number(ev.n_pairs)} image-finding pairs)"
    extra = [
        f"{ev.config['steps']} deletion / insertion steps" if ev.config.get("steps") else "",
        f"{ev.config['n_robust']} pairs for robustness" if ev.config.get("n_robust") else "",
    ]
    if ev.ce_tuning:
        extra.append(
            "CE settings chosen on the train split: " + ", ".join(f"{k} {v}" for k, v in ev.ce_tuning["chosen"].items())
        )
    return text + (": " + "; ".join(e for e in extra if e) if any(extra) else "") + "."


def settings_section(run: RunFolder) -> str:
    words = settings_words(run)
    body = (
        f'<ul class="words">{"".join(f"<li>{esc(w)}</li>" for w in words)}</ul>'
        if words
        else missing("Not recorded: no metrics.json, study.json or explain.json with settings in this folder.")
    )
    if run.overview is not None:
        body += "<h3>Classifier quality (test split)</h3>" + key_values(
            {k: v for k, v in flatten(run.overview.classifier).items() if not isinstance(v, dict)}
        )
    s = run_settings(run)
    raw = {
        k: s[k] for k in ("dataset", "model", "layer", "split_method", "methods", "seed", "quick") if s[k] is not None
    }
    for key in ("ce_map", "plan"):
        if isinstance(s[key], dict):
            raw.update(flatten(s[key], key))
    if run.evaluation is not None:
        raw.update(flatten(run.evaluation.config, "config"))
    if raw:
        body += "<details><summary>The settings as recorded</summary>" + key_values(raw) + "</details>"
    return section("Model, data and settings", body, "settings")


# ---------------------------------------------------------------- sections


def fidelity_section(run: RunFolder) -> str:
    fid = fidelity_of(run)
    if fid is None:
        return section(
            "Autoencoder fidelity", missing("Not computed: no autoencoder was fitted in this run."), "fidelity"
        )
    sentence, cls = fidelity_sentence(run)
    verdict = (
        f'<p class="{cls}"><strong>{"High fidelity" if fid.get("ok") else "Low fidelity"}.</strong> {esc(sentence)}</p>'
    )
    text = how(
        "Agreement is the share of decisions (top-1 class, or each finding's yes/no) unchanged when the autoencoder "
        "is inserted at the layer; "
        "mean KL is the divergence of the predictive distributions. Latent CEs are meaningful when agreement >= "
        f"{MIN_AGREEMENT}, mean KL <= {MAX_MEAN_KL} and the autoencoder carries each image's information (its "
        "reconstruction follows the activation, its code and the latent CE profiles differ between images)."
    )
    autoencoder = _first(
        run.overview and run.overview.autoencoder,
        run.explain and run.explain.autoencoder,
        run.dataset_run and run.dataset_run.autoencoder,
    )
    return section(
        "Autoencoder fidelity", text + verdict + raw_details(autoencoder, "All autoencoder values"), "fidelity"
    )


def explorer_section(run: RunFolder) -> tuple[str, str]:
    body, script = explorer_html(run.explorer, run.class_names, concept_labels(run))
    if not body:
        return section(
            "Image explorer",
            missing("Not available: this folder holds no per-image data (explorer.npz, or the shards of a cemap run)."),
            "explorer",
        ), ""
    text = how(
        "Click an image (or focus it and press Enter): the panel shows it large in its own colours, every map side by "
        "side on one colour "
        "scale with the true boxes, the predicted probabilities and the image's latent CE profile. The buttons switch "
        "the large view "
        "between the image and each method's map."
    )
    return section(f"Image explorer ({len(run.explorer)} images)", text + body, "explorer"), script


def concepts_section(run: RunFolder) -> str:
    concepts = run.concepts
    if concepts is None:
        return ""
    body = how(
        "What each concept channel Z_j responds to, measured on held-out images with ground truth: how well its "
        "pooled activation predicts "
        "each finding or class (AUROC, with its interval for the best one), the share of its activation energy inside "
        "that finding's boxes "
        "(against the share of the image the boxes cover), and the class causal effect of switching it off. A channel "
        "is labelled by its "
        "best-aligned concept in the profile charts and the explorer."
    )
    rows = []
    for r in concepts.rows:
        best = r["best_concept"]
        row = {"channel": r["name"], "best-aligned concept": best, "AUROC": r["best_auroc"]}
        if r["energy_in_box"].get(best) is not None:
            area = concepts.box_area.get(best)
            row["energy in its boxes"] = (
                f"{show(r['energy_in_box'][best])} (flat: {show(area)})"
                if area is not None
                else r["energy_in_box"][best]
            )
        if best in r["class_effect"]:
            row["class CE when off"] = r["class_effect"][best]
        row["top images"] = ", ".join(str(t["id"]) for t in r["top_images"])
        rows.append(row)
    body += table(rows, first="channel") if rows else missing("latent_concepts.json holds no per-channel rows.")
    body += raw_details(
        {k: v for k, v in run.raw["latent_concepts"].items() if k != "rows"},
        "All recorded concept values",
        skip=("labels",),
    )
    per_concept = [{"channel": r["name"], **{f"AUROC {c}": v for c, v in r["auroc"].items()}} for r in concepts.rows]
    if per_concept:
        body += (
            "<details><summary>AUROC of every channel for every "
            f"concept</summary>{table(per_concept, first='channel', max_columns=10_000)}</details>"
        )
    body += figures_html([f for f in run.figures if "concept" in f.name.lower()], "No concept figures in this folder.")
    return section("Latent channels explained", body, "concepts")


def explained_names(run: RunFolder) -> dict[str, str]:
    """Overlay file of each image cemap explain explained -> the image's real (relative) file name."""
    rows = run.explain.images if run.explain is not None else []
    items = [i for i in run.explorer if "explain" in i.source]
    return {
        row["overlay"]: items[k].id if k < len(items) else str(row.get("file", row["overlay"]))
        for k, row in enumerate(rows)
        if row.get("overlay")
    }


def maps_section(run: RunFolder) -> str:
    text = how(
        "Each row is one image (green boxes: the true finding locations, where known). The CE map paints the drop in "
        "the predicted probability "
        "when each grid cell is masked: red = masking it lowers the prediction, so the model relies on it; blue = "
        "masking it raises the "
        "prediction. Baselines (CAMs, Occlusion, Integrated Gradients, random, centre) sit beside it on the same "
        "scale convention."
    )
    figures = run.figures_in("maps")
    if (
        not figures and run.explorer
    ):  # a cemap run keeps each image's maps, not overlay figures: the explorer shows them
        return section(
            "CE maps beside the baselines",
            text + how("This folder's maps are per image: open them in the image explorer above."),
            "maps",
        )
    return section(
        "CE maps beside the baselines",
        text + figures_html(figures, "Not computed: no overlay figures in this folder.", explained_names(run)),
        "maps",
    )


def profiles_section(run: RunFolder) -> str:
    text = how(
        "Bar j is the expected causal effect (ECE) of setting concept channel Z_j of the autoencoder to zero, "
        "averaged over images "
        "(error bars: one standard deviation)."
    )
    figures = [f for f in run.figures_in("profiles") if "concept" not in f.name.lower()]
    if not figures and any(item.profile is not None for item in run.explorer):
        # a cemap run keeps each image's profile, not a figure: computed, and shown in the explorer
        body = text + how("This folder's latent CE profiles are per image: open them in the image explorer above.")
    else:
        body = text + figures_html(figures, "Not computed: no latent CE profile figure in this folder.")
    labels = concept_labels(run)
    if labels:
        body += "<h3>Channels by concept</h3>" + table(
            [{"channel": f"Z{j}", "best-aligned concept": t} for j, t in labels.items()]
        )
    controls = run.latent_controls
    if controls is not None:
        body += "<h3>Each condition beside its control</h3>" + how(
            "From latent_controls.json: every shift with its paired bootstrap interval, and the difference between a "
            "condition and its control "
            "(on the same held-out images)."
        )
        for claim in controls.headline():
            body += f"<p>{esc(claim.text)}</p>" + (table([flatten(r) for r in claim.table]) if claim.table else "")
        for key, entry in controls.claims.items():
            if entry.get("forms"):
                forms = [{"form of the claim": f, "holds": v} for f, v in entry["forms"].items()]
                body += f"<h3>{esc(entry.get('claim', key))}</h3><p>{esc(entry.get('verdict', ''))}</p>" + table(forms)
        body += figures_html(
            [f for f in run.figures if "control" in f.name.lower()], "No control figure in this folder."
        )
        body += raw_details(run.raw["latent_controls"], "All recorded control values")
    return section("Latent CE profiles: clean, masked box, adversarial", body, "profiles")
