"""The masking experiment: the finding's region (a lesion box, or a digit's strokes) masked, against the same area
masked elsewhere, each image's latent profile shift measured against its own clean profile."""

from __future__ import annotations

import torch

from ...causal import LatentCE
from ...evaluate.paired_tests import per_channel_tests
from ..context import StudyContext
from .matched import output_matched, residual_test
from .measures import Subjects, by_finding, compare, l2, measures, profiles, rep_list, repeat
from .regions import box_regions, stroke_regions


def masking_experiment(ctx: StudyContext, latent: LatentCE, subjects: Subjects, kind: str, placements: int) -> dict:
    """Condition (the finding's region masked) against control (the same area elsewhere, ``placements`` places
    averaged): per-measure paired comparisons, per-channel tests, the split by finding and the pixels each changes."""
    images, findings, clean, aligned = subjects.images, subjects.findings, subjects.clean, subjects.aligned
    if kind == "boxes":
        region, controls, fills, ctrl_fills, placed = box_regions(
            ctx, subjects.batch, subjects.indices, findings, placements
        )
        names = (
            "true lesion box masked (zero fill)",
            f"same box shape elsewhere in the lung field ({placements} placements, zero fill)",
        )
    else:
        region, controls, fills, ctrl_fills = stroke_regions(ctx, images, placements)
        names = (
            "strokes erased (fill 0)",
            f"background region of the same area, filled with the stroke intensities ({placements} placements)",
        )
    masked = torch.where(region[:, None], fills, images)
    ctrl_images = torch.where(controls[:, :, None], ctrl_fills, images[:, None]).flatten(0, 1)
    repeated = images.repeat_interleave(placements, 0)
    p_mask = profiles(latent, masked, findings)
    p_ctrl = profiles(latent, ctrl_images, findings.repeat_interleave(placements))
    m_cond = measures(p_mask, clean, aligned, l2(masked, images))
    per_place = measures(p_ctrl, repeat(clean, placements), rep_list(aligned, placements), l2(ctrl_images, repeated))
    m_ctrl = {k: v.reshape(len(images), placements).mean(1) for k, v in per_place.items()}
    ch_cond = (p_mask.ece - clean.ece).abs()
    ch_ctrl = (p_ctrl.ece.reshape(len(images), placements, -1) - clean.ece[:, None]).abs().mean(1)
    out = {
        "condition": names[0],
        "control": names[1],
        "n": len(images),
        "pixels_changed": {
            "condition_l2": float(l2(masked, images).mean()),
            "control_l2": float(l2(ctrl_images, repeated).mean()),
            "condition_area": float(region.float().mean()),
            "control_area": float(controls.float().mean()),
        },
        "comparisons": [compare(m_cond, m_ctrl, ctx.seed, control=names[1])],
        "per_channel": [per_channel_tests(ch_cond, ch_ctrl, subjects.labels, names[1], ctx.seed)],
        "by_finding": by_finding(m_cond, m_ctrl, findings, ctx.classifier.class_names, ctx.seed),
        "regression": [residual_test(m_cond, m_ctrl, ctx.seed, names[1])],
    }
    base = ctrl_images.reshape(len(images), placements, *images.shape[1:])[:, 0]  # the first control placement
    gen = ctx.generator("latent_controls/output-matched")
    subj = (findings, clean, aligned)
    out["output_matched"] = output_matched(
        latent, base, images, subj, m_cond, l2(masked, images), gen, ctx.seed, "the same area masked elsewhere"
    )
    if kind == "boxes":
        lung_share, squeezed = placed
        out["control_placement"] = {
            "mean_share_inside_lung": float(lung_share.mean()),
            "images_where_it_fits_entirely_inside_the_lung": int((lung_share >= 1).sum()),
            "images_where_every_place_touches_a_lesion": squeezed,
        }
    return out
