"""Figures of the latent controls study: conditions beside their controls, and what each latent channel shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..studies.figures import ConceptOverlays, ControlPanels


def control_panels(spec: ControlPanels, path: Path) -> Path:
    """Condition beside control (profile L1 shift with intervals), condition minus control, and per-channel tests."""
    masking, adversarial, dataset, alpha = spec.masking, spec.adversarial, spec.dataset, spec.alpha
    fig = Figure(figsize=(13, 7.5))
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 1.6])
    ax = fig.add_subplot(grid[0, 0])
    bars = (
        [
            (
                "mask: " + ("lesion" if "lesion" in masking["condition"] else "strokes"),
                masking["comparisons"][0]["measures"]["ece_l1"]["condition"],
                "C3",
            ),
            ("mask: elsewhere", masking["comparisons"][0]["measures"]["ece_l1"]["control"], "C7"),
        ]
        if masking["comparisons"]
        else []
    )
    if adversarial["comparisons"]:
        bars.append(("PGD", adversarial["comparisons"][0]["measures"]["ece_l1"]["condition"], "C0"))
    for c in adversarial["comparisons"]:
        short = (
            "sign noise (Linf)"
            if "L-inf" in c["control"]
            else "Gaussian (L2)"
            if "noise" in c["control"]
            else "blur (L2)"
        )
        bars.append((short, c["measures"]["ece_l1"]["control"], "C7"))
    for i, (name, iv, colour) in enumerate(bars):
        ax.bar(
            i,
            iv["estimate"],
            color=colour,
            yerr=[[iv["estimate"] - iv["low"]], [iv["high"] - iv["estimate"]]],
            capsize=3,
        )
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b[0] for b in bars], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("latent ECE profile L1 shift")
    ax.set_title(f"{dataset}: condition (colour) beside control (grey), 95% CI", fontsize=9)
    ax2 = fig.add_subplot(grid[1, 0])
    rows = [("mask", c) for c in masking["comparisons"]] + [
        (
            "PGD vs "
            + ("sign noise" if "L-inf" in c["control"] else "Gauss L2" if "noise" in c["control"] else "blur L2"),
            c,
        )
        for c in adversarial["comparisons"]
    ]
    for i, (name, comp) in enumerate(rows):
        for j, m in enumerate(("ece_l1", "finding_l1")):
            d = comp["measures"][m]["difference"]
            ax2.errorbar(
                i + (j - 0.5) * 0.25,
                d["estimate"],
                yerr=[[d["estimate"] - d["low"]], [d["high"] - d["estimate"]]],
                fmt="o",
                color=("C3", "C2")[j],
                capsize=3,
                label=("ECE profile", "finding's CE profile")[j] if i == 0 else None,
            )
    ax2.axhline(0, color="k", lw=0.6)
    ax2.set_xticks(range(len(rows)))
    ax2.set_xticklabels([r[0] for r in rows], rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("condition - control (L1 shift)")
    if rows:
        ax2.legend(fontsize=7)
    panels = [("masking", p) for p in masking["per_channel"]] + [
        ("PGD vs " + p["control"], p) for p in adversarial["per_channel"] if "matched L2" in p["control"]
    ]
    for r, (title, pc) in enumerate(panels[:2]):
        ax3 = fig.add_subplot(grid[r, 1])
        k = len(pc["channels"])
        xs = np.arange(k)
        ax3.bar(
            xs - 0.2, [c["condition"] for c in pc["channels"]], 0.4, color="C3" if r == 0 else "C0", label="condition"
        )
        ax3.bar(xs + 0.2, [c["control"] for c in pc["channels"]], 0.4, color="C7", label="control: " + pc["control"])
        for j, c in enumerate(pc["channels"]):
            if c["moves_more"] or c["moves_less"]:
                ax3.annotate(
                    "*" if c["moves_more"] else "v",
                    (j, max(c["condition"], c["control"])),
                    ha="center",
                    va="bottom",
                    fontsize=11,
                )
        ax3.set_xticks(xs)
        ax3.set_xticklabels([spec.channel_labels[j] for j in range(k)], rotation=60, ha="right", fontsize=6)
        ax3.set_ylabel("mean |shift| of Z_j")
        ax3.set_title(f"{title}: per channel (* more, v less than control, Holm {alpha})", fontsize=9)
        ax3.margins(y=0.12)
        ax3.legend(fontsize=7, loc="upper right")
    fig.subplots_adjust(left=0.06, right=0.99, top=0.95, bottom=0.17, hspace=0.75, wspace=0.18)
    fig.savefig(path, dpi=80)
    return path


def concept_overlays(spec: ConceptOverlays, path: Path) -> Path:
    """Each channel's most activating held-out image with the channel's activation map over it, titled by its
    concept."""
    images, dataset = spec.images, spec.dataset
    k, cols = len(spec.labels), 8
    rows = -(-k // cols)
    fig = Figure(figsize=(2.0 * cols, 2.25 * rows))
    FigureCanvasAgg(fig)
    for j in range(k):
        ax = fig.add_subplot(rows, cols, j + 1)
        img = images[spec.top_image[j]].float()
        ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        m = spec.maps[j].numpy()
        ax.imshow(m, cmap="inferno", alpha=0.45, vmin=0, vmax=max(float(m.max()), 1e-6))
        ax.set_title(spec.labels[j], fontsize=6.5)
        ax.set_axis_off()
    fig.suptitle(f"{dataset}: each latent channel's most activating held-out image, activation overlaid", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.01, wspace=0.05, hspace=0.25)
    fig.savefig(path, dpi=80)
    return path
