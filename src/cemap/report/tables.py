"""The report's sections of numbers and files: evaluation, detection, explained images, a dataset run, timings, every
recorded value and the folder's files - each from the run folder's typed results."""

from __future__ import annotations

import base64

from .markup import esc, figures_html, flatten, how, key_values, missing, raw_details, section, table
from .run_folder import RunFolder, WrittenResult
from .sections import explained_names

EVAL_COLUMNS = [
    ("method", "method"),
    ("pointing_game", "pointing game"),
    ("pointing_game_tol", "pointing game (tolerant)"),
    ("energy_pointing", "energy in box"),
    ("iobb@0.5", "IoBB > 0.5"),
    ("deletion_auc", "deletion AUC (lower better)"),
    ("insertion_auc", "insertion AUC"),
    ("noise_spearman", "stability, noise"),
    ("randomisation_spearman", "randomisation rho (lower better)"),
    ("ms_per_map", "ms per map"),
]
DETECTION_WORDS = {
    "row": "attack",
    "success_rate": "attack success",
    "evasion_rate": "evades the detector",
    "ce_auroc": "CE AUROC",
    "ce_tpr5": "CE TPR at 5% FPR",
    "msp_auroc": "MSP AUROC",
    "feature_squeezing_auroc": "squeezing AUROC",
    "lid_auroc": "LID AUROC",
    "msp_tpr5": "MSP TPR",
    "feature_squeezing_tpr5": "squeezing TPR",
    "lid_tpr5": "LID TPR",
    "mahalanobis_auroc": "Mahalanobis AUROC",
    "mahalanobis_tpr5": "Mahalanobis TPR",
    "logit_stats_auroc": "logit-stats AUROC",
    "logit_stats_tpr5": "logit-stats TPR",
    "ce_minus_best": "CE minus the best other detector (any form)",
}


def evaluation_section(run: RunFolder) -> str:
    result = run.evaluation
    if result is None:
        written = run.results.get("evaluation")
        body = (
            raw_details(written.doc, "All recorded evaluation values")
            if isinstance(written, WrittenResult)
            else missing("Not computed: no evaluation.json in this folder (run cemap evaluate or the full cemap demo).")
        )
        return section("Evaluation: CE versus the baselines", body, "evaluation")
    text = how(
        "One row per explanation method. Pointing game and IoBB: higher = points at the true box more often; energy: "
        "share of positive map "
        "mass inside the box; deletion AUC: lower = more faithful, insertion AUC: higher = more faithful; stability: "
        "rank correlation under "
        "noise (higher = more stable); randomisation: rank correlation with a weight-randomised model (lower = the "
        "map depends on what the "
        "model learned). Intervals are 95% bootstrap intervals where the study computed them."
    )
    keys = [(k, w) for k, w in EVAL_COLUMNS if any(k in r for r in result.rows)]
    head = (
        table([{w: r.get(k) for k, w in keys} for r in result.rows], first="method", max_columns=len(keys))
        if result.rows
        else ""
    )
    return section(
        "Evaluation: CE versus the baselines",
        text + head + raw_details(run.raw["evaluation"], "All recorded evaluation values"),
        "evaluation",
    )


def _column_group(key: str) -> int:
    """The detection table's column order: the row's name, its counts, AUROCs, CE's comparison, TPRs."""
    if key == "row":
        return 0
    return 2 if key.endswith("_auroc") else 4 if "tpr" in key else 3 if key.startswith("ce_") else 1


def detection_section(run: RunFolder) -> str:
    result = run.detection
    body = how(
        "AUROC and TPR at 5% FPR for telling adversarial from clean held-out images, per attack and budget, for the "
        "CE detector and the "
        "baselines (maximum softmax probability, feature squeezing, LID). The histograms show the CE signature of "
        "clean versus adversarial "
        "images: the less they overlap, the easier the detection."
    )
    if result is None:
        body += missing("Not computed: no detection.json in this folder (run cemap detect or the full cemap demo).")
    else:
        rows = [
            {DETECTION_WORDS.get(k, k): v for k, v in sorted(flatten(r).items(), key=lambda kv: _column_group(kv[0]))}
            for r in result.table
        ]  # AUROCs first
        body += table(rows, first="attack") if rows else ""
        body += "<h3>Protocol</h3>" + key_values(flatten(result.protocol)) if result.protocol else ""
        body += raw_details(run.raw["detection"], "All recorded detection values")
    body += "<h3>CE signatures, clean versus adversarial</h3>" + figures_html(
        run.figures_in("signatures"), "Not computed: no signature histograms in this folder."
    )
    body += "<h3>ROC curves</h3>" + figures_html(run.figures_in("roc"), "Not computed: no ROC curves in this folder.")
    return section("Adversarial detection", body, "detection")


def explained_section(run: RunFolder) -> str:
    result = run.explain
    if result is None:
        return ""
    names = explained_names(run)
    rows = [
        {
            "file": names.get(r.get("overlay"), r.get("file")),
            "explained class": r.get("target"),
            "probability": r.get("probability"),
            "overlay": r.get("overlay"),
        }
        for r in result.images
    ]
    return section(
        "Explained images",
        (table(rows) if rows else "")
        + raw_details(run.raw["explain"], "All recorded explain values", skip=("images",)),
        "explained",
    )


def dataset_run_section(run: RunFolder) -> str:
    manifest = run.dataset_run
    if manifest is None:
        return ""
    text = how(
        "A dataset-scale run (cemap run): per-image rows in shards/*.parquet and maps in shards/*.npz; unreadable "
        "images are listed in errors.jsonl."
    )
    facts = {
        "n_images": manifest.n_images,
        "n_rows": manifest.n_rows,
        "n_errors": manifest.n_errors,
        "complete": manifest.complete,
    }
    body = text + key_values({k: v for k, v in facts.items() if v is not None})
    if run.unreadable:
        body += f"<h3>Images that could not be read ({len(run.unreadable)})</h3>" + table(run.unreadable[:200])
        body += missing(f"{len(run.unreadable) - 200} more in errors.jsonl") if len(run.unreadable) > 200 else ""
    return section(
        "Dataset-scale run",
        body + raw_details(run.raw["manifest"], "The whole manifest", skip=("class_names", "columns")),
        "dataset-run",
    )


def timings_section(run: RunFolder) -> str:
    rows = [{"file": f, "stage": s, "seconds": v} for f, s, v in run.timings]
    return section("Timings", table(rows) if rows else missing("Not recorded: no timings in this folder."), "timings")


def other_section(run: RunFolder) -> str:
    figs = [f for f in run.figures_in("other") if not any(w in f.name.lower() for w in ("concept", "control"))]
    return section("Other figures", figures_html(figs, ""), "other") if figs else ""


def recorded_section(run: RunFolder) -> str:
    """Every value of every result file, collapsed, so nothing measured is hidden from the reader."""
    parts = [p for p in (raw_details(doc, f"{kind}.json") for kind, doc in run.raw.items()) if p]
    return (
        section("All recorded values", how("Each result file in full; open one to read it.") + "".join(parts), "values")
        if parts
        else ""
    )


def files_section(run: RunFolder) -> str:
    links = "".join(
        f'<li><a download="{esc(name)}" '
        f'href="data:application/json;base64,{base64.b64encode(data).decode("ascii")}">{esc(name)}</a> '
        f'<span class="src">{esc(f"{len(data):,} bytes")}</span></li>'
        for name, data in sorted(run.downloads.items())
    )
    body = f'<h3>Download the results</h3><ul class="files">{links}</ul>' if links else ""
    items = "".join(f"<li>{esc(name)}</li>" for name in run.files)
    body += (
        f'<details><summary>All {len(run.files)} files in the folder</summary><ul class="files">{items}</ul></details>'
        if items
        else missing("The folder is empty.")
    )
    return section("Files in this run folder", body, "files")


def problems_section(run: RunFolder) -> str:
    if not run.problems:
        return ""
    items = "".join(f"<li>{esc(p)}</li>" for p in run.problems)
    return f'<section class="problems"><h2>Problems reading this folder</h2><ul>{items}</ul></section>'
