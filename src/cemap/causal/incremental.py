"""Incremental masked passes: masking a cell changes only a window of each early activation.

Through the leading run of *local* layers of a network (convolutions, pooling, and pointwise
layers such as batch-norm, ReLU, dropout and the classifier's normalisation) the activations of
a masked image differ from the unmasked image's only inside a window that grows with each
layer's receptive field. :class:`IncrementalMasking` computes the unmasked activations once
per image, recomputes only those windows for every masked copy, pastes the last one into the
full activation and finishes the network from there (the suffix of a torch.fx split).

The numbers are the full forward pass's up to float rounding. It pays where the local run holds
every convolution of the network and masks are small against the image: cxr-cnn with 12-pixel
cells does about a tenth of the full pass's multiply-adds. Elsewhere (DenseNet, whose first
dense block ends the local run) :func:`incremental_masking` returns None and callers run full
passes.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..models.classifier import Classifier, Normalize
from .batching import balanced_chunks
from .split import Split, leaf_graph, split_classifier

log = logging.getLogger(__name__)

POINTWISE = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Hardtanh,
    nn.Dropout, nn.Dropout2d, nn.BatchNorm2d, Normalize,
)  # each output pixel depends on the same input pixel only (batch-norm and dropout in eval mode)
MAX_COST_RATIO = 0.5  # use windows only when they save at least half of the local layers' work
BASE_BYTES = 256 << 20  # unmasked activations kept at once (images are processed in groups below this)


@dataclass(frozen=True)
class Window:
    """A local layer that reads a k x k neighbourhood: how output windows map to input windows, and how to run it unpadded."""

    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]
    pad_value: float
    run: Callable[[torch.Tensor], torch.Tensor]  # the layer on an already padded window
    weight: float  # multiply-adds per output pixel, for the cost estimate

    def out_size(self, axis: int, n: int) -> int:
        k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        return (n + 2 * p - d * (k - 1) - 1) // s + 1

    def changed(self, axis: int, start: torch.Tensor, stop: torch.Tensor, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Output range [lo, hi) that reads any input of the changed range [start, stop)."""
        k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        lo = (-torch.div(-(start + p - d * (k - 1)), s, rounding_mode="floor")).clamp(0, n_out - 1)
        hi = torch.div(stop - 1 + p, s, rounding_mode="floor") + 1
        return lo, torch.maximum(hi.clamp(max=n_out), lo + 1)  # at least one pixel, so every window has a size

    def needed(self, axis: int, out_len: int) -> int:
        """Padded input length that an output window of ``out_len`` reads."""
        return (out_len - 1) * self.stride[axis] + self.dilation[axis] * (self.kernel[axis] - 1) + 1


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def as_window(m: nn.Module) -> Window | None:
    """The layer as a :class:`Window`, or None when it is not a local layer this module can run on windows."""
    plain_conv = type(m).forward is nn.Conv2d.forward  # a subclass may change its weights on the fly (weight standardisation)
    if isinstance(m, nn.Conv2d) and plain_conv and m.padding_mode == "zeros" and not isinstance(m.padding, str):
        k = _pair(m.kernel_size)
        return Window(k, _pair(m.stride), _pair(m.padding), _pair(m.dilation), 0.0,
                      lambda x: F.conv2d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups),
                      float(m.in_channels // m.groups * m.out_channels * k[0] * k[1]))
    if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and not m.return_indices:
        k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        run = m if p == (0, 0) else (lambda x: F.max_pool2d(x, k, s, 0, m.dilation))
        return Window(k, s, p, _pair(m.dilation), float("-inf"), run, 0.0)
    if isinstance(m, nn.AvgPool2d) and not m.ceil_mode and m.divisor_override is None and (m.count_include_pad or m.padding in (0, (0, 0))):
        k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
        return Window(k, s, _pair(m.padding), (1, 1), 0.0, lambda x: F.avg_pool2d(x, k, s, 0), 0.0)
    return None


def local_chain(classifier: Classifier) -> list[tuple[str, nn.Module]]:
    """The leading run of local layers of preprocess + model, in order, each feeding only the next (qualified names)."""
    root, graph = leaf_graph(classifier)
    chain: list[tuple[str, nn.Module]] = []
    current = None
    for node in graph.nodes:
        if node.op == "placeholder" and current is None:
            current = node
            continue
        if node.op != "call_module" or node.args != (current,) or node.kwargs or len(current.users) != 1:
            break
        module = root.get_submodule(node.target)
        if not (isinstance(module, POINTWISE) or as_window(module) is not None):
            break
        chain.append((node.target, module))
        current = node
    return chain


class IncrementalMasking:
    """Class probabilities of masked images, recomputing only the windows each mask changes in the local layers."""

    def __init__(self, classifier: Classifier, chain: list[tuple[str, nn.Module]], suffix: Split) -> None:
        self.classifier, self.suffix = classifier, suffix
        self.steps: list[tuple[nn.Module, Window | None]] = [(m, as_window(m)) for _, m in chain]
        self.windows = [w for _, w in self.steps if w is not None]
        _, h, w = classifier.input_shape
        self.sizes = [(h, w)]  # map size at each level: the input, then after each window layer
        for win in self.windows:
            self.sizes.append((win.out_size(0, self.sizes[-1][0]), win.out_size(1, self.sizes[-1][1])))

    # -- planning ---------------------------------------------------------------------------
    def changed_ranges(self, masks: torch.Tensor) -> list[torch.Tensor]:
        """Per level, M x 4 (y0, y1, x0, x1): where each mask can have changed that level's activation.

        An empty mask changes nothing; it gets a 1 x 1 range at the origin, whose recomputation returns the unmasked values."""
        rows, cols = masks.any(2), masks.any(1)
        y0, y1, x0, x1 = _first(rows), _end(rows), _first(cols), _end(cols)
        ranges = [torch.stack([y0, y1, x0, x1], 1)]
        for win, (h, w) in zip(self.windows, self.sizes[1:]):
            y0, y1 = win.changed(0, y0, y1, h)
            x0, x1 = win.changed(1, x0, x1, w)
            ranges.append(torch.stack([y0, y1, x0, x1], 1))
        return ranges

    def cost_ratio(self, masks: torch.Tensor) -> float:
        """Multiply-adds of the windowed local layers relative to the full ones (cell masks: about the window / map area)."""
        ranges = self.changed_ranges(masks.cpu())
        full = part = 0.0
        for win, r, (h, w) in zip(self.windows, ranges[1:], self.sizes[1:]):
            area = ((r[:, 1] - r[:, 0]).max() * (r[:, 3] - r[:, 2]).max()).item()
            full += win.weight * h * w
            part += win.weight * area
        return part / full if full else 1.0

    def worthwhile(self, masks: torch.Tensor) -> bool:
        return self.cost_ratio(masks) <= MAX_COST_RATIO

    # -- evaluation -------------------------------------------------------------------------
    def _base(self, images: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Unmasked activations: each window layer's padded input as (B*H*W) x C rows, and the last local output."""
        sources, x = [], images
        for module, win in self.steps:
            if win is not None:
                (py, px), pad = win.padding, win.pad_value
                padded = F.pad(x, (px, px, py, py), value=pad) if (py or px) else x
                sources.append(_rows(padded))
            x = module(x)
        return sources, x

    def probabilities(self, images: torch.Tensor, owner: torch.Tensor, masks: torch.Tensor, which: torch.Tensor,
                      fills: torch.Tensor, chunk_size: int) -> torch.Tensor:
        """N x K probabilities of ``images[owner[n]]`` with ``masks[which[n]]`` replaced by ``fills``: as
        :meth:`CEMap.pair_probabilities`, which calls this when :meth:`worthwhile`."""
        ranges = [r.to(images.device) for r in self.changed_ranges(masks)]
        with torch.no_grad():
            per_image = sum(s.numel() for s in self._base(images[:1])[0]) * images.element_size()
        group = max(1, BASE_BYTES // max(per_image, 1))
        pieces = []
        for g in range(0, images.shape[0], group):
            members = torch.nonzero((owner >= g) & (owner < g + group)).squeeze(1)
            if members.numel() == 0:
                continue
            sources, final = self._base(images[g : g + group])
            pixels = (_rows(images[g : g + group]), _rows(fills[g : g + group]))
            for s in balanced_chunks(members.numel(), chunk_size):
                idx = members[s]
                logits = self._masked_logits(sources, final, pixels, owner[idx] - g, masks, which[idx], ranges)
                pieces.append((idx, self.classifier.probabilities(logits).float()))
        if not pieces:
            return images.new_zeros(0, self.classifier.num_classes)
        order = torch.cat([i for i, _ in pieces]).argsort()
        return torch.cat([p for _, p in pieces])[order]

    def _boxes(self, ranges: list[torch.Tensor], which: torch.Tensor) -> tuple[list["_Box"], list[bool]]:
        """Per level, the windows to compute there, and whether each is exactly what the layer reading it needs.

        By default a window surrounds the level's changed range. When the layer reading the level has no
        padding (a 2 x 2 max-pool), the window is instead exactly the part that layer reads, so its
        input needs no pasting: about as many values, and one gather fewer."""
        boxes = [_Box.around(r[which], *size) for r, size in zip(ranges, self.sizes)]
        direct = [False] * len(boxes)
        for level in reversed(range(len(self.windows))):
            win = self.windows[level]
            if win.padding == (0, 0):
                out = boxes[level + 1]
                boxes[level] = _Box(out.y0 * win.stride[0], out.x0 * win.stride[1], win.needed(0, out.h), win.needed(1, out.w))
                direct[level] = True
        return boxes, direct

    def _masked_logits(self, sources, final, pixels, own, masks, which, ranges) -> torch.Tensor:
        boxes, direct = self._boxes(ranges, which)
        (h, w), box = self.sizes[0], boxes[0]
        image, fill = (_gather(p, own, box.rows(), box.cols(), h, w) for p in pixels)
        hole = masks.reshape(-1, 1)[_lin(which, box.rows(), box.cols(), h, w)]
        x = torch.where(hole, fill, image).permute(0, 3, 1, 2)  # the masked image on level 0's window
        level = 0
        for module, win in self.steps:
            if win is None:
                x = module(x)
                continue
            if not direct[level]:  # what this layer reads: unmasked values, with the window computed so far pasted in
                (h, w), (py, px), out = self.sizes[level], win.padding, boxes[level + 1]
                rows = out.y0[:, None] * win.stride[0] + torch.arange(win.needed(0, out.h), device=x.device)
                cols = out.x0[:, None] * win.stride[1] + torch.arange(win.needed(1, out.w), device=x.device)
                base = _gather(sources[level], own, rows, cols, h + 2 * py, w + 2 * px)
                x = _paste(x, boxes[level], rows - py, cols - px, base).permute(0, 3, 1, 2)
            x = win.run(x)
            level += 1
        # the last window into the full unmasked activation (windows always lie inside their map)
        (h, w), box = self.sizes[level], boxes[level]
        act = final[own].contiguous(memory_format=torch.channels_last)
        flat = act.permute(0, 2, 3, 1).view(-1, act.shape[1])
        flat[_lin(torch.arange(len(own), device=x.device), box.rows(), box.cols(), h, w)] = _rows(x).reshape(len(own), box.h, box.w, -1)
        return self.suffix.finish(act, ())


@dataclass
class _Box:
    """Per-sample windows of one common size: top-left corners (N) and size."""

    y0: torch.Tensor
    x0: torch.Tensor
    h: int
    w: int

    @classmethod
    def around(cls, r: torch.Tensor, height: int, width: int) -> "_Box":
        """The smallest common-size windows holding each range, kept inside the map."""
        h, w = int((r[:, 1] - r[:, 0]).max()), int((r[:, 3] - r[:, 2]).max())
        return cls(r[:, 0].clamp(max=height - h), r[:, 2].clamp(max=width - w), h, w)

    def rows(self) -> torch.Tensor:
        return self.y0[:, None] + torch.arange(self.h, device=self.y0.device)

    def cols(self) -> torch.Tensor:
        return self.x0[:, None] + torch.arange(self.w, device=self.x0.device)


def _first(hits: torch.Tensor) -> torch.Tensor:
    """Per row of an M x N boolean tensor, the index of its first True (0 for none)."""
    return torch.where(hits.any(1), hits.float().argmax(1), 0).long()


def _end(hits: torch.Tensor) -> torch.Tensor:
    """Per row, one past the index of its last True (1 for none)."""
    return torch.where(hits.any(1), hits.shape[1] - hits.flip(1).float().argmax(1), 1).long()


def _rows(x: torch.Tensor) -> torch.Tensor:
    """B x C x H x W -> (B*H*W) x C, a view for channels-last tensors."""
    return x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])


def _lin(owner: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """N x h x w flat indices of pixels (rows[n, i], cols[n, j]) of map ``owner[n]`` among B*height*width."""
    return (owner[:, None, None] * height + rows[:, :, None]) * width + cols[:, None, :]


def _gather(flat: torch.Tensor, owner: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """N x h x w x C: per-sample windows of (B*H*W) x C rows."""
    return flat[_lin(owner, rows, cols, height, width)]


def _paste(window: torch.Tensor, box: _Box, rows: torch.Tensor, cols: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """N x h x w x C: ``base`` (values at rows x cols) with the N x C x box.h x box.w ``window`` values where they overlap."""
    n = window.shape[0]
    ry, rx = rows - box.y0[:, None], cols - box.x0[:, None]
    inside = ((ry >= 0) & (ry < box.h))[:, :, None] & ((rx >= 0) & (rx < box.w))[:, None, :]
    local = _lin(torch.arange(n, device=window.device), ry.clamp(0, box.h - 1), rx.clamp(0, box.w - 1), box.h, box.w)
    return torch.where(inside[..., None], _rows(window)[local], base)


_CACHE: "weakref.WeakKeyDictionary[Classifier, IncrementalMasking | None]" = weakref.WeakKeyDictionary()


def incremental_masking(classifier: Classifier) -> IncrementalMasking | None:
    """The classifier's incremental evaluator, or None when its local layers do not hold every convolution
    (then windows would save little) or it cannot be traced. Built once per classifier."""
    if classifier in _CACHE:
        return _CACHE[classifier]
    engine = None
    try:
        chain = local_chain(classifier)
        model_layers = [name.removeprefix("model.") for name, _ in chain if name.startswith("model.")]
        if model_layers and any(as_window(m) is not None for _, m in chain):
            split = split_classifier(classifier, model_layers[-1], method="fx")
            convs_after = any(isinstance(m, nn.Conv2d) for m in split.suffix.modules())
            if not convs_after:
                engine = IncrementalMasking(classifier, chain, split)
    except Exception as exc:  # untraceable models run full passes
        log.info("no incremental masking for %s (%s)", classifier.name, exc)
    _CACHE[classifier] = engine
    return engine
