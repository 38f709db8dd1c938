"""Faithfulness by perturbation: does removing what a map calls important change the model's output?

* Deletion and insertion (Petsiuk et al. 2018, RISE): pixels move from the image to a fill (or
  back) in the map's order; the target's score is recorded after each of ``steps`` steps and the
  area under the curve is reported (deletion: lower = more faithful; insertion: higher).
  :func:`deletion_auc` / :func:`insertion_auc` order pixels in scan order on ties (the v1 study);
  :func:`deletion_insertion` breaks ties at random (v2 and v3).
* ROAD (Rong et al. 2022): remove and debias - the top (MoRF) or bottom (LeRF) fractions of the
  map's pixels are *imputed*, so the removal itself carries no shape the model could read.
  :func:`road` takes the imputer: ``'noisy-linear'`` (Rong et al.'s, the reference), ``'blur'``,
  or whole fill images (e.g. synthcxr's exact lesion-free counterfactual).
* :func:`floor_check`: a metric on which a floor map (random, centre, an image-only edge map)
  beats the median method cannot tell maps apart; it is flagged and left out of verdicts.

Every (image, step) pair is one perturbed image; they are evaluated in chunks of ``chunk_size``
across all images, never one forward pass per step.
"""

from __future__ import annotations

import torch

from ..causal.batching import chunks, default_chunk
from ..causal.masks import fill_images
from ..errors import CemapError
from ..models.classifier import Classifier

OUTPUTS = ("probability", "logit")


def pixel_ranks(maps: torch.Tensor) -> torch.Tensor:
    """B x H x W: 0 for each map's most important pixel, H*W - 1 for its least (ties in scan order)."""
    flat = maps.reshape(maps.shape[0], -1).float()
    order = torch.argsort(-flat, dim=1, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks.reshape(maps.shape)


def _scores(classifier: Classifier, images: torch.Tensor, targets: torch.Tensor, output: str) -> torch.Tensor:
    logits = classifier(images)
    values = logits if output == "logit" else classifier.probabilities(logits)
    return values.gather(1, targets.view(-1, 1)).squeeze(1).float()


def curve_auc(curves: torch.Tensor) -> torch.Tensor:
    """B areas under curves sampled evenly over [0, 1] (trapezoid rule)."""
    x = torch.linspace(0, 1, curves.shape[1])
    return torch.trapezoid(curves, x, dim=1)


def deletion_auc(
    classifier: Classifier,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    steps: int = 16,
    fill: str | float = "zero",
    output: str = "probability",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """B deletion AUCs (lower = more faithful)."""
    return _ranked_auc(classifier, images, maps, targets, steps, fill, output, chunk_size, insertion=False)


def insertion_auc(
    classifier: Classifier,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    steps: int = 16,
    fill: str | float = "blur",
    output: str = "probability",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """B insertion AUCs (higher = more faithful)."""
    return _ranked_auc(classifier, images, maps, targets, steps, fill, output, chunk_size, insertion=True)


def _ranked_auc(classifier, images, maps, targets, steps, fill, output, chunk_size, insertion: bool) -> torch.Tensor:
    """Deletion walks from the images to the fill, insertion from the fill to the images: one curve, two directions."""
    _check_maps(maps, images)
    filled = fill_images(images, fill)
    start, end = (filled, images) if insertion else (images, filled)
    return curve_auc(
        ranked_curves(classifier, images, pixel_ranks(maps), targets, start, end, steps, output, chunk_size)
    )


def _check_maps(maps: torch.Tensor, images: torch.Tensor) -> None:
    if maps.shape != (images.shape[0], *images.shape[2:]):
        raise CemapError(
            f"maps of shape {tuple(maps.shape)} do not match images {tuple(images.shape)}",
            "pass one H x W map per image",
        )


# ----------------------------------------------------------------------------------------------
# v2 (issue 16): random tie-breaking, in-distribution fills, ROAD, and a check that random cannot win


def pixel_ranks_random_ties(maps: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """B x H x W: 0 for each map's most important pixel, H*W - 1 for its least; ties in a random order
    drawn from ``generator`` (seeded ``Generator().manual_seed(0)`` when None), NaN ranked last.

    A blocky map's plateaus are then removed in no particular order instead of scan order (which
    favours whatever lies at the top of the image).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    flat = maps.detach().reshape(maps.shape[0], -1).float().cpu()
    flat = torch.where(torch.isnan(flat), torch.full_like(flat, -float("inf")), flat)
    shuffle = torch.argsort(torch.rand(flat.shape, generator=g), dim=1)
    order = shuffle.gather(1, torch.argsort(-flat.gather(1, shuffle), dim=1, stable=True))
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1]).expand_as(order).contiguous())
    return ranks.reshape(maps.shape)


@torch.inference_mode()
def ranked_curves(
    classifier: Classifier,
    images: torch.Tensor,
    ranks: torch.Tensor,
    targets: torch.Tensor,
    start: torch.Tensor,
    end: torch.Tensor,
    steps: int = 16,
    output: str = "probability",
    chunk_size: int | None = None,
) -> torch.Tensor:
    """B x (steps + 1) target scores as pixels move from ``start`` to ``end`` (both B x C x H x W) in the order of
    ``ranks``
    (B x H x W, 0 = first to change): at step s the round(s / steps * H * W) first-ranked pixels have moved."""
    if output not in OUTPUTS:
        raise CemapError(f"unknown output {output!r}", f"use one of {', '.join(OUTPUTS)}")
    _check_maps(ranks, images)
    b, n = images.shape[0], ranks[0].numel()
    counts = torch.round(torch.linspace(0, n, steps + 1)).long()
    chunk_size = chunk_size or default_chunk(tuple(images.shape[1:]))
    out = []
    for s in chunks(b * (steps + 1), chunk_size):
        idx = torch.arange(s.start, s.stop)
        img, step = idx // (steps + 1), idx % (steps + 1)
        changed = (ranks[img] < counts[step, None, None])[:, None]
        out.append(_scores(classifier, torch.where(changed, end[img], start[img]), targets[img], output))
    return torch.cat(out).reshape(b, steps + 1)


def deletion_insertion(
    classifier: Classifier,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    steps: int = 16,
    fill: str | float | torch.Tensor = "blur",
    output: str = "probability",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B deletion AUCs - lower is better, B insertion AUCs - higher is better) with random tie-breaking.

    Deletion moves the top pixels to ``fill``; insertion starts from ``fill`` and restores them.
    ``fill``: 'blur' (the default), 'zero', 'mean', a number, or B x C x H x W fill images (e.g.
    synthcxr's exact lesion-free counterfactuals: then only lesion pixels change anything). Use an
    in-distribution fill - black pixels scattered over a radiograph push it off the training
    distribution, and then a random map wins deletion.
    """
    _check_maps(maps, images)
    ranks = pixel_ranks_random_ties(maps, generator)
    filled = fill if torch.is_tensor(fill) else fill_images(images, fill)
    if filled.shape != images.shape:
        raise CemapError(f"fill images of shape {tuple(filled.shape)} do not match images {tuple(images.shape)}")
    deletion = curve_auc(ranked_curves(classifier, images, ranks, targets, images, filled, steps, output, chunk_size))
    insertion = curve_auc(ranked_curves(classifier, images, ranks, targets, filled, images, steps, output, chunk_size))
    return deletion, insertion


# Noisy linear imputation (Rong et al. 2022, ROAD): each removed pixel is the weighted mean of its 8
# neighbours (1/6 edge, 1/12 diagonal), solved jointly for all removed pixels, plus N(0, noise^2).
ROAD_NEIGHBOURS = (
    (1, 1, 1 / 12),
    (0, 1, 1 / 6),
    (-1, 1, 1 / 12),
    (1, -1, 1 / 12),
    (0, -1, 1 / 6),
    (-1, -1, 1 / 12),
    (1, 0, 1 / 6),
    (-1, 0, 1 / 6),
)
ROAD_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
ROAD_NOISE = 0.01


def noisy_linear_impute(
    image: torch.Tensor, removed: torch.Tensor, noise: float = ROAD_NOISE, generator: torch.Generator | None = None
) -> torch.Tensor:
    """C x H x W ``image`` with the ``removed`` pixels (H x W booleans) replaced by ROAD's noisy linear imputation.

    The same linear system as the reference code (tleemann/road_evaluation, shipped in
    pytorch-grad-cam), built with vectorised sparse indexing; noise is drawn from ``generator``.
    """
    import numpy as np
    from scipy.sparse import coo_matrix
    from scipy.sparse.linalg import spsolve

    c, h, w = image.shape
    miss = removed.reshape(-1).cpu().numpy().astype(bool)
    unknown = np.flatnonzero(miss)
    if not len(unknown):
        return image.clone()
    img = image.detach().reshape(c, -1).double().cpu().numpy()
    var = np.full(h * w, -1)
    var[unknown] = np.arange(len(unknown))
    row, col = unknown // w, unknown % w
    diag = np.ones(len(unknown))
    rhs = np.zeros((len(unknown), c))
    rows, cols, vals = [], [], []
    for dy, dx, wt in ROAD_NEIGHBOURS:
        r, q = row + dy, col + dx
        valid = (r >= 0) & (r < h) & (q >= 0) & (q < w)
        diag[~valid] -= wt
        nb = np.where(valid, r * w + q, 0)
        known = valid & ~miss[nb]
        rhs[known] -= wt * img[:, nb[known]].T
        free = valid & miss[nb]
        rows.append(np.flatnonzero(free)), cols.append(var[nb[free]]), vals.append(np.full(int(free.sum()), wt))
    idx = np.arange(len(unknown))
    a = coo_matrix(
        (np.concatenate([*vals, -diag]), (np.concatenate([*rows, idx]), np.concatenate([*cols, idx]))),
        shape=(len(unknown),) * 2,
    ).tocsc()
    sol = spsolve(a, rhs).reshape(len(unknown), c)
    out = image.detach().reshape(c, -1).clone().float()
    filled = torch.from_numpy(sol.T).float()
    if noise:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        filled = filled + noise * torch.randn(filled.shape, generator=g)
    out[:, torch.from_numpy(unknown)] = filled
    return out.reshape(c, h, w)


IMPUTERS = ("noisy-linear", "blur")


def road(
    classifier: Classifier,
    images: torch.Tensor,
    maps: torch.Tensor,
    targets: torch.Tensor,
    fractions=ROAD_FRACTIONS,
    noise: float = ROAD_NOISE,
    output: str = "probability",
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
    imputer: str | torch.Tensor = "noisy-linear",
) -> dict[str, torch.Tensor]:
    """ROAD (Rong et al., ICML 2022): remove the top (MoRF) or bottom (LeRF) ``fractions`` of each map's pixels,
    impute them, and record the target's score change (after - before).

    ``imputer``: 'noisy-linear' (Rong et al.'s noisy linear imputation, the reference: each removed
    pixel the weighted mean of its neighbours plus N(0, ``noise``^2)), 'blur' (a blurred copy of the
    image), or B x C x H x W fill images (e.g. synthcxr's exact lesion-free counterfactual).
    Returns {"morf": B (mean over fractions; lower = more faithful), "lerf": B (higher = more
    faithful), "combined": B = (lerf - morf) / 2 (higher = more faithful; pytorch-grad-cam's
    ``ROADCombined``), "morf_curve" / "lerf_curve": B x F}. Ties in the map are broken at random
    (``generator``), exactly round(f * H * W) pixels are removed at fraction f, and all imputed
    images go through the model in chunks.
    """
    if output not in OUTPUTS:
        raise CemapError(f"unknown output {output!r}", f"use one of {', '.join(OUTPUTS)}")
    _check_maps(maps, images)
    if not torch.is_tensor(imputer) and imputer not in IMPUTERS:
        raise CemapError(f"unknown ROAD imputer {imputer!r}", f"use one of {', '.join(IMPUTERS)} or fill images")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    ranks = pixel_ranks_random_ties(maps, g)
    b, n = images.shape[0], ranks[0].numel()
    counts = [int(round(f * n)) for f in fractions]
    fill = (
        None
        if isinstance(imputer, str) and imputer == "noisy-linear"
        else (imputer if torch.is_tensor(imputer) else fill_images(images, "blur"))
    )
    imputed = []
    for order in ("morf", "lerf"):
        for k in counts:
            removed = ranks < k if order == "morf" else ranks >= n - k
            if fill is None:
                imputed.append(torch.stack([noisy_linear_impute(images[i], removed[i], noise, g) for i in range(b)]))
            else:
                imputed.append(torch.where(removed[:, None], fill, images))
    batch = torch.stack(imputed, 1).reshape(-1, *images.shape[1:])  # B x (2F) images, image-major
    f = len(counts)
    rep = targets.repeat_interleave(2 * f)
    chunk_size = chunk_size or default_chunk(tuple(images.shape[1:]))
    with torch.inference_mode():
        before = torch.cat([_scores(classifier, images[s], targets[s], output) for s in chunks(b, chunk_size)])
        after = torch.cat(
            [_scores(classifier, batch[s], rep[s], output) for s in chunks(len(batch), chunk_size)]
        ).reshape(b, 2, f)
    diff = after - before[:, None, None]
    morf, lerf = diff[:, 0], diff[:, 1]
    return {
        "morf": morf.mean(1),
        "lerf": lerf.mean(1),
        "combined": (lerf.mean(1) - morf.mean(1)) / 2,
        "morf_curve": morf,
        "lerf_curve": lerf,
    }


FLOORS = ("random", "centre", "edge")


def floor_check(means: dict[str, float], higher_is_better: bool, floors=FLOORS) -> dict:
    """Does a floor map beat the median method on this metric? Then the metric cannot tell maps apart here.

    ``means``: method -> mean score (NaN = not scored); the ``floors`` are left out of the median.
    Returns {"uninformative": bool, "median_method": the median of the methods' means, "floors_beating_median":
    [names]}.
    """
    import statistics

    methods = [v for k, v in means.items() if k not in floors and v == v]
    scored = {k: means[k] for k in floors if k in means and means[k] == means[k]}
    if not methods or not scored:
        return {"uninformative": False, "median_method": None, "floors_beating_median": []}
    median = statistics.median(methods)
    beating = [k for k, v in scored.items() if ((v > median) if higher_is_better else (v < median))]
    return {"uninformative": bool(beating), "median_method": float(median), "floors_beating_median": beating}


def uninformative(means: dict[str, float], higher_is_better: bool, floors=FLOORS) -> bool:
    """True when a floor map (random, centre or edge) scores better than the median method (:func:`floor_check`)."""
    return floor_check(means, higher_is_better, floors)["uninformative"]
