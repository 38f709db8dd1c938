"""CE maps: the class causal effect of masking each cell of a grid, painted back onto the image.

All (image, cell) pairs are evaluated in chunks of a few dozen masked images; overlapping
cells are averaged per pixel. With zero fill and non-overlapping cells this is exactly
Captum's ``Occlusion`` on the predicted probability (same sign: higher = matters more).
Networks whose convolutions all come before any non-local layer (cxr-cnn, mnist-cnn, VGG)
recompute only the windows a cell changes (:mod:`.incremental`), with the same numbers.

Two options (issue 16; both off by default, so the default map's numbers are unchanged):

* ``cells=(c1, c2, ...)``: several grids - each cell size with a half-cell stride, i.e. cells at
  two offsets per axis - painted separately and averaged. A single grid paints plateaus (every
  pixel of a cell gets the same value, so the map's maximum is a tie over a whole cell); the
  average over sizes and offsets varies from pixel to pixel, like the evidence does.
* ``effect_scale='log_odds'``: the effect is the drop in the target's log-odds, logit(p) -
  logit(p_do), computed from the network's logits (exact where the probability has saturated
  at 1.0 in float32, where probability effects are all 0 and the map is flat).
"""

from __future__ import annotations

import torch

from ..models.classifier import Classifier
from .batching import as_model_input, autocast, balanced_chunks, chunks, default_chunk
from .compiled import compiled_predict, require_gpu
from .effects import check_effect_scale, class_effect, log_odds_view, resolve_targets
from .explainer import Explainer
from .incremental import MAX_COST_RATIO, incremental_masking
from .masks import check_fill, fill_images, grid_masks
from .planning import (
    GPU_FULL_CHUNK,
    GPU_WINDOW_FACTOR,
    PLANS,
    MaskPlan,
    activation_bytes,
    cpu_plan,
    device_name,
    measure,
    memory_cap,
    on_gpu,
    workload_bucket,
)


INCREMENTAL_CHUNKS = 8  # masked images per incremental pass, in full-pass chunks (cxr-cnn: 256 best of 32-512)


def default_cell(size: int) -> int:
    """About a 7 x 7 grid (the notebooks' 32-pixel cells on 224-pixel images)."""
    return max(2, size // 7)


def paint(effects: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """B x M effects onto M x H x W masks -> B x H x W, each pixel the mean over the cells covering it."""
    flat = masks.reshape(masks.shape[0], -1).float()
    total = effects.float() @ flat
    count = flat.sum(0).clamp_min(1)
    return (total / count).reshape(effects.shape[0], *masks.shape[1:])


def distinct_images(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the distinct images, index of each input among them): an image asked for several targets is masked once."""
    if len(images) < 2:
        return images, torch.arange(len(images), device=images.device)
    # equal images have equal checksums (integer arithmetic on the float bits: exact, whatever the summation order), so
    # all checksums different means all images different, found without sorting every pixel
    bits = images.float().flatten(1).contiguous().view(torch.int32).long()
    checksum = (bits * (torch.arange(bits.shape[1], device=images.device) % 65521 + 1)).sum(1)
    if len(torch.unique(checksum)) == len(images):
        return images, torch.arange(len(images), device=images.device)
    distinct, inverse = torch.unique(images.flatten(1), dim=0, return_inverse=True)
    if len(distinct) == len(images):
        return images, torch.arange(len(images), device=images.device)
    return distinct.reshape(-1, *images.shape[1:]), inverse


class CEMap(Explainer):
    """The CE map (registered as ``ce``): ``attribute(images, target)`` -> B x H x W, the class causal effect of
    filling each cell of a grid, painted back onto the image (overlapping cells averaged).

    Args:
        classifier: the model explained.
        cell: cell size in pixels (default about a 7 x 7 grid); ``stride``: step between cells (default ``cell``).
        fill: what a masked cell is filled with: "zero", "max", "mean", "blur" or a number in [0, 1].
        chunk_size: masked images per forward pass (default: chosen for the CPU's caches, or measured on a GPU).
        precision: "fp32" or "bf16" (autocast).
        blur_sigma: the blur fill's Gaussian sigma (default from the cell size).
        incremental: recompute only the windows a cell changes where that pays (same numbers as full passes).
        cells: several cell sizes (each with a half-cell stride), their maps averaged (issue 16's multi-scale map).
        effect_scale: "probability" (the paper's) or "log_odds" (does not vanish on saturated outputs).
        batch_size: None (default) maps all images in one call, targets taken from the same pass; a number maps
            that many images per call after resolving the targets, as every registered explainer does.
    """

    def __init__(
        self,
        classifier: Classifier,
        cell: int | None = None,
        stride: int | None = None,
        fill: str | float = "zero",
        chunk_size: int | None = None,
        precision: str = "fp32",
        blur_sigma: float | None = None,
        incremental: bool = True,
        cells: tuple[int, ...] | None = None,
        effect_scale: str = "probability",
        batch_size: int | None = None,
        compiled: bool = False,
    ) -> None:
        autocast(precision)  # validates the name before any work
        _, h, w = classifier.input_shape
        self.effect_scale = check_effect_scale(effect_scale)
        if effect_scale == "log_odds":
            classifier = log_odds_view(classifier)
        super().__init__(classifier, batch_size)
        self.batch_size = batch_size  # None: every image in one call (see attribute)
        self.cell = default_cell(min(h, w)) if cell is None else cell  # 0 is refused by grid_masks, not defaulted
        self.stride = self.cell if stride is None else stride
        self.cells = tuple(int(c) for c in cells) if cells else None
        if self.cells:
            grids = [grid_masks(h, w, c, max(1, c // 2)) for c in self.cells]
            self.scale_sizes = [len(g) for g in grids]
            self.masks = torch.cat(grids)
        else:
            self.scale_sizes = None
            self.masks = grid_masks(h, w, self.cell, self.stride)
        self.fill = check_fill(fill)
        self.blur_sigma = blur_sigma
        self.given_chunk = chunk_size
        self.chunk_size = chunk_size or default_chunk(classifier.input_shape, precision=precision)
        self.precision = precision
        self.incremental = incremental_masking(classifier) if incremental else None
        self.compiled = compiled  # full passes through torch.compile of the network (GPU only; see .compiled)

    @property
    def channels_last(self) -> bool:
        """The layout of this map's full passes on the CPU (a GPU plan measures both; see :meth:`plan`)."""
        return cpu_plan(self.classifier.input_shape, self.precision, False, self.given_chunk).channels_last

    @property
    def forward_passes_per_image(self) -> int:
        return self.masks.shape[0] + 1

    def effects_for_masks(
        self,
        images: torch.Tensor,
        masks: torch.Tensor,
        target: int | torch.Tensor | None = None,
        differentiable: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B x M class CEs of masking each of ``masks`` in each image, the B targets used).

        The unmasked image rides along as one more (empty) mask, so every forward pass runs at
        the chunk size; each chunk is built with a single ``where``. ``differentiable=True`` keeps
        the graph (adaptive attacks differentiate through the map).
        """
        images = self.classifier.check_images(images)
        home = images.device  # computed where the classifier runs, returned where the images came from
        images = images.to(self.classifier.device)
        if differentiable:
            probs = self.masked_probabilities(images, masks)
        else:
            with torch.inference_mode():
                distinct, inverse = distinct_images(images)
                probs = self.masked_probabilities(distinct, masks)[inverse]
        probs = probs.to(home)
        p, p_do = probs[:, 0], probs[:, 1:]
        targets = resolve_targets(p.detach(), target)
        return class_effect(p, p_do, targets), targets

    def masked_probabilities(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """B x (1 + M) x K probabilities: the image itself, then the image with each mask filled."""
        b, m = images.shape[0], masks.shape[0] + 1
        masks = torch.cat([masks.new_zeros(1, *masks.shape[1:]), masks])
        owner = torch.arange(b).repeat_interleave(m)
        which = torch.arange(m).repeat(b)
        return self.pair_probabilities(images, owner, masks, which).reshape(b, m, -1)

    def pair_probabilities(
        self, images: torch.Tensor, owner: torch.Tensor, masks: torch.Tensor, which: torch.Tensor
    ) -> torch.Tensor:
        """N x K probabilities of ``images[owner[n]]`` with ``masks[which[n]]`` filled, in chunks as :meth:`plan`
        says."""
        if self.compiled:
            require_gpu(self.classifier)
        device = images.device
        owner, which, masks = owner.to(device), which.to(device), masks.to(device)
        if owner.numel() == 0:
            return images.new_zeros(0, self.classifier.num_classes)
        fills = fill_images(images, self.fill, self.blur_sigma)
        with autocast(self.precision, device):
            plan = self.plan(images, owner, masks, which, fills)
            return self._evaluate(plan, images, owner, masks, which, fills)

    def plan(
        self, images: torch.Tensor, owner: torch.Tensor, masks: torch.Tensor, which: torch.Tensor, fills: torch.Tensor
    ) -> MaskPlan:
        """How to evaluate these masked images: the CPU rules, the caller's ``chunk_size``, or on a GPU the fastest
        candidate measured on this call's own inputs (kept per classifier for calls of a similar size)."""
        worthwhile = self.incremental is not None and self.incremental.worthwhile(masks)
        if not on_gpu(images.device) or self.given_chunk:
            plan = cpu_plan(self.classifier.input_shape, self.precision, worthwhile, self.given_chunk)
            return (
                plan
                if not worthwhile
                else MaskPlan(INCREMENTAL_CHUNKS * plan.chunk, True, plan.channels_last, plan.source)
            )
        if torch.is_grad_enabled():  # a differentiable map (adaptive attacks) holds its graph: chunks stay small
            return MaskPlan(
                default_chunk(self.classifier.input_shape, images.device, self.precision), False, False, "gradients"
            )
        key = (
            str(images.device),
            self.precision,
            tuple(masks.shape),
            int(masks.sum()),
            str(self.fill),
            workload_bucket(owner.numel()),
        )
        plan = PLANS.get(self.classifier, key)
        if plan is None:
            plan = self._measured_plan(images, owner, masks, which, fills)
            PLANS.put(self.classifier, key, plan)
        return plan

    def _measured_plan(self, images, owner, masks, which, fills) -> MaskPlan:
        """Time full passes (both layouts for multi-channel images) and, where the cost estimate promises a saving,
        windows."""
        device, n = images.device, owner.numel()
        cap = memory_cap(
            activation_bytes(self.classifier.predict_proba, list(self.classifier.modules()), images[:1]), device
        )
        full = min(GPU_FULL_CHUNK, cap, n)
        layouts = (False, True) if self.classifier.input_shape[0] > 1 else (False,)
        runs = {}
        for channels_last in layouts:
            plan = MaskPlan(full, False, channels_last, "candidate")
            runs[plan.name] = (plan, full)
        if self.incremental is not None and self.incremental.cost_ratio(masks) <= max(MAX_COST_RATIO, 0.9):
            windowed = min(GPU_WINDOW_FACTOR * full, GPU_WINDOW_FACTOR * cap, n)
            plan = MaskPlan(windowed, True, False, "candidate")
            runs[plan.name] = (plan, windowed)
        seconds = measure(
            {
                name: (lambda p=p, k=k: self._evaluate(p, images, owner[:k], masks, which[:k], fills, eager=True))
                for name, (p, k) in runs.items()
            },
            device,
        )
        per_image = {name: seconds[name] / runs[name][1] for name in runs}
        best = min(per_image, key=per_image.get)
        chosen = runs[best][0]
        return MaskPlan(
            chosen.chunk, chosen.windows, chosen.channels_last, f"measured on {device_name(device)}", per_image
        )

    def _evaluate(self, plan: MaskPlan, images, owner, masks, which, fills, eager: bool = False) -> torch.Tensor:
        """Probabilities of every masked image under ``plan`` (``eager``: never compiled, as when plans are timed)."""
        if plan.windows:
            return self.incremental.probabilities(images, owner, masks, which, fills, plan.chunk)
        out = []
        # a GPU plan keeps every chunk but the last at its measured size; CPU chunks are balanced (cache-sized)
        slices = chunks if on_gpu(images.device) else balanced_chunks
        if self.compiled and not eager and not torch.is_grad_enabled():
            predict = compiled_predict(self.classifier, plan.chunk, plan.channels_last)
        else:
            predict = lambda batch: self.classifier.predict_proba(as_model_input(batch, plan.channels_last))  # noqa: E731
        for s in slices(owner.shape[0], plan.chunk):
            img, cell = owner[s], which[s]
            out.append(predict(torch.where(masks[cell, None], fills[img], images[img])).float())
        return torch.cat(out)

    def plans(self) -> list[dict]:
        """Every plan this classifier's CE maps have used on a GPU so far (the candidates' times included)."""
        return [p.as_json() for p in PLANS.all_for(self.classifier)]

    def attribute(
        self, images: torch.Tensor, target: int | torch.Tensor | None = None, differentiable: bool = False
    ) -> torch.Tensor:
        """CE maps of ``images`` for ``target``.

        Args:
            images: B x C x H x W (or C x H x W) in [0, 1], on any device (returned on the same one).
            target: one class / finding for all images, B of them, or None for the model's own choice (the most
                probable class or finding of the unmasked image).
            differentiable: keep the autograd graph (adaptive attacks differentiate through the map).
        Returns:
            B x H x W float maps: the drop in the target's probability (or log-odds) when the cells covering each
            pixel are filled; higher = the model relies on the region more.
        """
        if self.batch_size is None or differentiable:
            return self._explain(images, target, differentiable)
        return super().attribute(images, target)

    def _explain(
        self, images: torch.Tensor, target: int | torch.Tensor | None, differentiable: bool = False
    ) -> torch.Tensor:
        effects, _ = self.effects_for_masks(images, self.masks, target, differentiable)
        masks = self.masks.to(effects.device)
        if not self.scale_sizes:
            return paint(effects, masks)
        maps = [paint(e, m) for e, m in zip(effects.split(self.scale_sizes, 1), masks.split(self.scale_sizes))]
        return torch.stack(maps).mean(0)
