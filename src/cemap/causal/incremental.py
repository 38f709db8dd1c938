"""Incremental masked passes: masking a cell changes only a window of each early activation.

Everything a network computes before its first *global* step (global pooling, flatten, a linear
layer) is local: convolutions and pooling read a known neighbourhood; batch-norm, ReLU, dropout
and the classifier's normalisation read one pixel; channel concatenation (DenseNet's dense
layers) and elementwise addition (ResNet's residual blocks, downsample included) combine pixels
at the same place. So the activations of a masked image differ from the unmasked image's only
inside a window that grows with each layer's receptive field. :class:`IncrementalMasking`
follows the traced torch.fx graph through all of these, computes the unmasked activations once
per image, recomputes only each node's window for every masked copy (reading unmasked values
around it where a layer needs them), merges windows where branches meet (the smallest common
window holding every branch's), and finishes the network from the last local values.

A window that would cover most of its map is computed whole (and so is everything after it):
late layers of DenseNet-121 and ResNet-50 at 224 px see the whole of their 7 x 7 or 14 x 14 map
anyway. The cost estimate (multiply-adds of windows + whole layers + the global rest, against a
full pass) decides per set of masks whether windows pay. The numbers are the full forward
pass's up to float rounding (~1e-6).

This module is longer than the 450 lines every other module keeps to, by design: the window
arithmetic of each kind of node (convolution, pooling, pointwise, concatenation, addition), the
graph walk that composes them and the cost estimate are one algorithm whose invariants (a
node's window holds every consumer's needs) are checked together; split, each part would be
correct only under assumptions stated in another file.
"""

from __future__ import annotations

import copy
import logging
import operator
import weakref
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..models.classifier import Classifier, Normalize
from ..models.folding import ScaleShift
from .batching import balanced_chunks
from .split import leaf_graph

log = logging.getLogger(__name__)

POINTWISE = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SiLU,
    nn.GELU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Dropout,
    nn.Dropout2d,
    nn.BatchNorm2d,
    Normalize,
    ScaleShift,
)  # each output pixel depends on the same input pixel only (batch-norm and dropout in eval mode)
POINTWISE_FUNCTIONS = {
    F.relu,
    torch.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.gelu,
    F.silu,
    F.hardtanh,
    F.hardswish,
    torch.sigmoid,
    torch.tanh,
    F.dropout,
    F.dropout2d,
    operator.neg,
    torch.neg,
}
POINTWISE_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "contiguous", "clone", "neg"}
ELEMENTWISE = {
    operator.add,
    operator.iadd,
    torch.add,
    operator.mul,
    operator.imul,
    torch.mul,
    operator.sub,
    operator.isub,
    torch.sub,
    operator.truediv,
    torch.div,
}  # several tensors of one shape, or one tensor and numbers
ELEMENTWISE_METHODS = {"add", "add_", "mul", "mul_", "sub", "sub_", "div", "div_"}
CONCAT = {torch.cat, torch.concat}
OUT_OF_PLACE = {operator.iadd: operator.add, operator.imul: operator.mul, operator.isub: operator.sub}

FULL_AREA = 0.55  # a window covering more of its map than this is computed whole, and so is everything after it
MAX_COST_RATIO = 0.6  # use windows only when they save at least 40% of the estimated multiply-adds
BASE_BYTES = 256 << 20  # unmasked activations kept at once (images are processed in groups below this)


@dataclass(frozen=True)
class Window:
    """A local layer that reads a k x k neighbourhood: how output windows map to input windows, and how to run it
    unpadded."""

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

    def changed(
        self, axis: int, start: torch.Tensor, stop: torch.Tensor, n_out: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
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
    plain_conv = (
        type(m).forward is nn.Conv2d.forward
    )  # a subclass may change its weights on the fly (weight standardisation)
    if isinstance(m, nn.Conv2d) and plain_conv and m.padding_mode == "zeros" and not isinstance(m.padding, str):
        k = _pair(m.kernel_size)
        return Window(
            k,
            _pair(m.stride),
            _pair(m.padding),
            _pair(m.dilation),
            0.0,
            lambda x: F.conv2d(x, m.weight, m.bias, m.stride, 0, m.dilation, m.groups),
            float(m.in_channels // m.groups * m.out_channels * k[0] * k[1]),
        )
    if isinstance(m, nn.MaxPool2d) and not m.ceil_mode and not m.return_indices:
        k, s, p = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        run = m if p == (0, 0) else (lambda x: F.max_pool2d(x, k, s, 0, m.dilation))
        return Window(k, s, p, _pair(m.dilation), float("-inf"), run, 0.0)
    if (
        isinstance(m, nn.AvgPool2d)
        and not m.ceil_mode
        and m.divisor_override is None
        and (m.count_include_pad or m.padding in (0, (0, 0)))
    ):
        k, s = _pair(m.kernel_size), _pair(m.stride or m.kernel_size)
        return Window(k, s, _pair(m.padding), (1, 1), 0.0, lambda x: F.avg_pool2d(x, k, s, 0), 0.0)
    return None


# -- the local part of the traced graph ----------------------------------------------------------


@dataclass
class LocalNode:
    """One local step of the graph: 'input' (the image), 'pointwise', 'window' (reads a neighbourhood) or 'merge'
    (several same-size maps: concatenation, addition)."""

    name: str
    kind: str
    inputs: list[int]  # indices among the local nodes, in argument order
    run: Callable[..., torch.Tensor]  # on whole maps (and on windows, except for 'window' nodes: ``window.run``)
    size: tuple[int, int]
    channels: int
    window: Window | None = None


def _out_of_place(m: nn.Module) -> nn.Module:
    """The module itself, or a copy that does not overwrite its input (the unmasked values are read again later)."""
    if getattr(m, "inplace", False):
        m = copy.copy(m)
        m.inplace = False
    return m


def _runner(node: fx.Node, positions: dict[fx.Node, int], root: nn.Module) -> Callable[..., torch.Tensor]:
    """The node's computation on the tensors of its local inputs (given in ``positions`` order), never in place."""
    kwargs = dict(node.kwargs)
    if "inplace" in kwargs:
        kwargs["inplace"] = False
    if node.op == "call_module":
        module = _out_of_place(root.get_submodule(node.target))
        call: Callable[..., Any] = module
    elif node.op == "call_function":
        call = OUT_OF_PLACE.get(node.target, node.target)
    else:  # call_method
        name = node.target[:-1] if node.target.endswith("_") else node.target
        call = lambda self, *a, **k: getattr(self, name)(*a, **k)  # noqa: E731

    def run(*tensors: torch.Tensor) -> torch.Tensor:
        args = fx.node.map_arg(node.args, lambda n: tensors[positions[n]])
        kw = fx.node.map_arg(kwargs, lambda n: tensors[positions[n]])
        return call(*args, **kw)

    return run


def _classify(
    node: fx.Node, root: nn.Module, local: dict[fx.Node, int], shapes: dict[fx.Node, torch.Size]
) -> str | None:
    """'pointwise', 'window', 'merge' or None (not local) for a node whose tensor inputs are all local."""
    shape = shapes.get(node)
    if shape is None or len(shape) != 4:
        return None
    tensor_args = [n for n in node.all_input_nodes]
    if not tensor_args or any(n not in local for n in tensor_args):
        return None
    same = all(shapes[n][2:] == shape[2:] for n in tensor_args)
    if node.op == "call_module":
        m = root.get_submodule(node.target)
        if isinstance(m, POINTWISE) and not m.training:
            return "pointwise"
        return "window" if as_window(m) is not None else None
    if node.op == "call_function" and node.target in POINTWISE_FUNCTIONS and len(tensor_args) == 1 and same:
        if node.target in (F.dropout, F.dropout2d) and (
            node.kwargs.get("training", node.args[2] if len(node.args) > 2 else True)
        ):
            return None
        return "pointwise"
    if (
        node.op == "call_method"
        and node.target in POINTWISE_METHODS
        and len(tensor_args) == 1
        and same
        and not node.kwargs
    ):
        return "pointwise"
    elementwise = (node.op == "call_function" and node.target in ELEMENTWISE) or (
        node.op == "call_method" and node.target in ELEMENTWISE_METHODS
    )
    if elementwise and all(shapes[n] == shape for n in tensor_args) and not node.kwargs:
        return "pointwise" if len(tensor_args) == 1 else "merge"
    if node.op == "call_function" and node.target in CONCAT and same:
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        if (
            dim in (1, -3)
            and isinstance(node.args[0], (list, tuple))
            and all(isinstance(a, fx.Node) for a in node.args[0])
        ):
            return "merge"
    return None


@dataclass
class LocalGraph:
    nodes: list[LocalNode]
    frontier: list[int]  # local nodes the rest of the network reads, in its placeholder order
    suffix: fx.GraphModule  # the rest: frontier values -> logits
    suffix_macs: float  # multiply-adds of the rest per image (convolutions and linear layers), for the cost estimate


def _macs(module: nn.Module, shape: torch.Size | None) -> float:
    if shape is None:
        return 0.0
    if isinstance(module, nn.Conv2d):
        k = module.kernel_size
        return float(module.in_channels // module.groups * module.out_channels * k[0] * k[1] * shape[-1] * shape[-2])
    if isinstance(module, nn.Linear):
        return float(module.in_features * module.out_features * (shape.numel() // shape[-1] // max(shape[0], 1)))
    return 0.0


def local_graph(classifier: Classifier) -> LocalGraph | None:
    """The local part of preprocess + model as :class:`LocalNode` s, and the rest as a graph module; None when nothing
    of the network past its input is local, or when the rest would need nothing but the input."""
    root, graph = leaf_graph(classifier)
    gm = fx.GraphModule(root, graph)
    shapes: dict[fx.Node, torch.Size] = {}

    class _Shapes(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if torch.is_tensor(out):
                shapes[n] = out.shape
            return out

    with torch.no_grad():
        param = next(root.parameters(), None)
        device = param.device if param is not None else "cpu"
        _Shapes(gm).run(torch.zeros(1, *classifier.input_shape, device=device))

    nodes: list[LocalNode] = []
    local: dict[fx.Node, int] = {}
    for node in graph.nodes:
        if node.op == "placeholder" and not local and node in shapes and len(shapes[node]) == 4:
            local[node] = 0
            nodes.append(LocalNode(node.name, "input", [], lambda x: x, tuple(shapes[node][2:]), shapes[node][1]))
            continue
        if not local or node.op not in ("call_module", "call_function", "call_method"):
            continue
        kind = _classify(node, root, local, shapes)
        if kind is None:
            continue
        inputs = list(dict.fromkeys(node.all_input_nodes))
        positions = {n: i for i, n in enumerate(inputs)}
        window = as_window(root.get_submodule(node.target)) if kind == "window" else None
        local[node] = len(nodes)
        nodes.append(
            LocalNode(
                node.name,
                kind,
                [local[n] for n in inputs],
                _runner(node, positions, root),
                tuple(shapes[node][2:]),
                shapes[node][1],
                window,
            )
        )
    if not any(n.window is not None for n in nodes):
        return None

    # the rest: every node that is not local, reading the local values it needs as placeholders
    frontier = [n for n in local if any(u not in local for u in n.users)]
    if not frontier or any(u.op == "output" for n in frontier for u in n.users):
        return None
    rest = fx.Graph()
    env: dict[fx.Node, fx.Node] = {n: rest.placeholder(f"local_{i}") for i, n in enumerate(frontier)}
    macs = 0.0
    for node in graph.nodes:
        if node in local or node.op == "placeholder":
            continue
        env[node] = rest.node_copy(node, lambda a: env[a])
        if node.op == "call_module":
            macs += _macs(root.get_submodule(node.target), shapes.get(node))
    suffix = fx.GraphModule(root, rest).eval()
    return LocalGraph(nodes, [local[n] for n in frontier], suffix, macs)


# -- planning: where each mask can change each node, and the windows computed there -------------------


@dataclass
class Plan:
    """For one set of masks: per local node, the common window size, whether it is the whole map, and each mask's
    window corner (M x 2, on the device), plus which inputs can be read without pasting them into unmasked values."""

    box: list[tuple[int, int]]
    whole: list[bool]
    corners: list[torch.Tensor]
    direct: list[list[bool]]  # per node, per input
    cost: float  # estimated multiply-adds relative to full passes

    def to(self, device) -> "Plan":
        return Plan(self.box, self.whole, [c.to(device) for c in self.corners], self.direct, self.cost)


def mask_ranges(masks: torch.Tensor) -> torch.Tensor:
    """M x 4 (y0, y1, x0, x1) bounding boxes of M x H x W masks; an empty mask gets 1 x 1 at the origin
    (its recomputation returns the unmasked values)."""
    rows, cols = masks.any(2), masks.any(1)
    return torch.stack([_first(rows), _end(rows), _first(cols), _end(cols)], 1)


class IncrementalMasking:
    """Class probabilities of masked images, recomputing only the windows each mask changes in the local layers."""

    def __init__(self, classifier: Classifier, graph: LocalGraph) -> None:
        self.classifier, self.graph = classifier, graph
        self.nodes = graph.nodes
        self.suffix = graph.suffix
        self.windows = [n.window for n in self.nodes if n.window is not None]
        self._plans: dict[tuple, Plan] = {}
        users: list[list[int]] = [[] for _ in self.nodes]
        for i, node in enumerate(self.nodes):
            for j in node.inputs:
                users[j].append(i)
        self.last_use = [max(u) if u else len(self.nodes) for u in users]
        for f in graph.frontier:
            self.last_use[f] = len(self.nodes)

    # -- planning ---------------------------------------------------------------------------
    def changed_ranges(self, masks: torch.Tensor) -> list[torch.Tensor]:
        """Per local node, M x 4 (y0, y1, x0, x1): where each mask can have changed that node's value."""
        ranges: list[torch.Tensor] = []
        for node in self.nodes:
            if node.kind == "input":
                ranges.append(mask_ranges(masks))
            elif node.kind == "pointwise":
                ranges.append(ranges[node.inputs[0]])
            elif node.kind == "window":
                r, (h, w) = ranges[node.inputs[0]], node.size
                y0, y1 = node.window.changed(0, r[:, 0], r[:, 1], h)
                x0, x1 = node.window.changed(1, r[:, 2], r[:, 3], w)
                ranges.append(torch.stack([y0, y1, x0, x1], 1))
            else:  # merge: the union of the branches' ranges
                rs = torch.stack([ranges[j] for j in node.inputs])
                ranges.append(
                    torch.stack([rs[:, :, 0].amin(0), rs[:, :, 1].amax(0), rs[:, :, 2].amin(0), rs[:, :, 3].amax(0)], 1)
                )
        return ranges

    def plan(self, masks: torch.Tensor) -> Plan:
        """The windows for ``masks`` (computed on the host once per set of masks; cached by their bounding boxes)."""
        bounds = mask_ranges(masks.cpu())
        key = (tuple(bounds.flatten().tolist()), tuple(masks.shape[1:]))
        if key in self._plans:
            return self._plans[key]
        ranges = self.changed_ranges(masks.cpu())
        box, whole, corners, direct = [], [], [], []
        part = full = 0.0
        for i, node in enumerate(self.nodes):
            r, (h, w) = ranges[i], node.size
            bh, bw = int((r[:, 1] - r[:, 0]).max()), int((r[:, 3] - r[:, 2]).max())
            is_whole = any(whole[j] for j in node.inputs) or bh * bw > FULL_AREA * h * w
            if is_whole:
                bh, bw = h, w
            box.append((bh, bw))
            whole.append(is_whole)
            corners.append(torch.stack([r[:, 0].clamp(max=h - bh), r[:, 2].clamp(max=w - bw)], 1))
            direct.append([self._direct(i, j, box, whole, corners) for j in node.inputs])
            if node.window is not None:
                full += node.window.weight * h * w
                part += node.window.weight * bh * bw
        suffix = self.graph.suffix_macs
        plan = Plan(box, whole, corners, direct, (part + suffix) / (full + suffix) if full + suffix else 1.0)
        if len(self._plans) > 16:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _direct(self, i: int, j: int, box, whole, corners) -> bool:
        """Whether node ``i`` can read input ``j``'s window as it is (no unmasked values around it)."""
        node = self.nodes[i]
        if whole[j]:
            return True  # then ``i`` is whole too
        if node.kind == "pointwise":
            return True
        if node.kind == "merge":
            return box[j] == box[i] and bool((corners[j] == corners[i]).all())
        win = node.window
        start = corners[i] * torch.tensor(win.stride) - torch.tensor(win.padding)
        need = (win.needed(0, box[i][0]), win.needed(1, box[i][1]))
        return box[j] == need and bool((corners[j] == start).all())

    def cost_ratio(self, masks: torch.Tensor) -> float:
        """Estimated multiply-adds of a windowed pass relative to a full one (windows, whole layers and the global
        rest)."""
        return self.plan(masks).cost

    def worthwhile(self, masks: torch.Tensor) -> bool:
        return self.cost_ratio(masks) <= MAX_COST_RATIO

    # -- evaluation -------------------------------------------------------------------------
    def _base_keys(self, plan: Plan) -> set[tuple[int, int, int, float]]:
        """The unmasked values the masked passes read: (node, row padding, column padding, pad value)."""
        keys: set[tuple[int, int, int, float]] = set()
        for i, node in enumerate(self.nodes):
            for j, direct in zip(node.inputs, plan.direct[i]):
                if not direct:
                    win = node.window
                    keys.add((j, *win.padding, win.pad_value) if win is not None else (j, 0, 0, 0.0))
        keys.update((f, 0, 0, 0.0) for f in self.graph.frontier if not plan.whole[f])
        return keys

    def _base(self, images: torch.Tensor, keys: set[tuple[int, int, int, float]]) -> dict[tuple, torch.Tensor]:
        """Unmasked values: each needed node's (padded) map as (B*H*W) x C rows."""
        values: list[torch.Tensor | None] = []
        kept: dict[tuple, torch.Tensor] = {}
        wanted: dict[int, list[tuple]] = {}
        for key in keys:
            wanted.setdefault(key[0], []).append(key)
        for i, node in enumerate(self.nodes):
            x = images if node.kind == "input" else node.run(*[values[j] for j in node.inputs])
            values.append(x)
            for key in wanted.get(i, ()):
                _, py, px, pad = key
                padded = F.pad(x, (px, px, py, py), value=pad) if (py or px) else x
                kept[key] = _rows(padded.contiguous(memory_format=torch.channels_last))
            for j in node.inputs:  # free what no later node reads
                if self.last_use[j] <= i:
                    values[j] = None
        return kept

    def _base_bytes(self, keys: set[tuple[int, int, int, float]], element_size: int) -> int:
        total = 0
        for i, py, px, _ in keys:
            h, w = self.nodes[i].size
            total += self.nodes[i].channels * (h + 2 * py) * (w + 2 * px)
        return total * element_size

    def probabilities(
        self,
        images: torch.Tensor,
        owner: torch.Tensor,
        masks: torch.Tensor,
        which: torch.Tensor,
        fills: torch.Tensor,
        chunk_size: int,
    ) -> torch.Tensor:
        """N x K probabilities of ``images[owner[n]]`` with ``masks[which[n]]`` replaced by ``fills``: as
        :meth:`CEMap.pair_probabilities`, which calls this when :meth:`worthwhile`. No host synchronisation per
        chunk."""
        plan = self.plan(masks).to(images.device)
        keys = self._base_keys(plan)
        group = max(1, BASE_BYTES // max(self._base_bytes(keys, 4), 1))
        masks, owner, which = masks.to(images.device), owner.to(images.device), which.to(images.device)
        pieces = []
        for g in range(0, images.shape[0], group):
            members = torch.nonzero((owner >= g) & (owner < g + group)).squeeze(1)
            if members.numel() == 0:
                continue
            base = self._base(images[g : g + group], keys)
            pixels = (_rows(images[g : g + group]), _rows(fills[g : g + group]))
            for s in balanced_chunks(members.numel(), chunk_size):
                idx = members[s]
                logits = self._masked_logits(plan, base, pixels, owner[idx] - g, masks, which[idx])
                pieces.append((idx, self.classifier.probabilities(logits).float()))
        if not pieces:
            return images.new_zeros(0, self.classifier.num_classes)
        order = torch.cat([i for i, _ in pieces]).argsort()
        return torch.cat([p for _, p in pieces])[order]

    def _masked_logits(self, plan: Plan, base, pixels, own, masks, which) -> torch.Tensor:
        boxes = [_Box(c[which, 0], c[which, 1], *b) for c, b in zip(plan.corners, plan.box)]
        values: list[torch.Tensor | None] = []
        for i, node in enumerate(self.nodes):
            box = boxes[i]
            if node.kind == "input":
                (h, w) = node.size
                image, fill = (_gather(p, own, box.rows(), box.cols(), h, w) for p in pixels)
                hole = masks.reshape(-1, 1)[_lin(which, box.rows(), box.cols(), h, w)]
                x = torch.where(hole, fill, image).permute(0, 3, 1, 2)  # the masked image on this node's window
            elif node.kind == "pointwise":
                x = node.run(values[node.inputs[0]])
            elif node.kind == "window":
                j, win = node.inputs[0], node.window
                x = values[j]
                if plan.whole[j]:  # whole maps: pad them, keep what the layer reads
                    (py, px) = win.padding
                    x = F.pad(x, (px, px, py, py), value=win.pad_value) if (py or px) else x
                    x = x[:, :, : win.needed(0, box.h), : win.needed(1, box.w)]
                elif not plan.direct[i][0]:  # unmasked values around the input's window, read from its padded map
                    (h, w), (py, px) = self.nodes[j].size, win.padding
                    rows = box.y0[:, None] * win.stride[0] + torch.arange(win.needed(0, box.h), device=x.device)
                    cols = box.x0[:, None] * win.stride[1] + torch.arange(win.needed(1, box.w), device=x.device)
                    around = _gather(base[j, py, px, win.pad_value], own, rows, cols, h + 2 * py, w + 2 * px)
                    x = _paste(x, boxes[j], rows - py, cols - px, around).permute(0, 3, 1, 2)
                x = win.run(x)
            else:  # merge: every branch on this node's window
                xs = [
                    values[j]
                    if direct
                    else self._expand(values[j], boxes[j], box, base[j, 0, 0, 0.0], own, self.nodes[j].size)
                    for j, direct in zip(node.inputs, plan.direct[i])
                ]
                x = node.run(*xs)
            values.append(x)
            for j in node.inputs:
                if self.last_use[j] <= i:
                    values[j] = None
        outs = []
        for f in self.graph.frontier:
            x = values[f]
            if not plan.whole[f]:
                h, w = self.nodes[f].size
                x = self._expand(x, boxes[f], _Box.whole(len(own), h, w, x.device), base[f, 0, 0, 0.0], own, (h, w))
            outs.append(x)
        return self.suffix(*outs)

    @staticmethod
    def _expand(
        x: torch.Tensor, box: "_Box", onto: "_Box", base: torch.Tensor, own: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """N x C x onto.h x onto.w: the unmasked values on ``onto`` with the window ``x`` (on ``box``) pasted in."""
        h, w = size
        rows, cols = onto.rows(), onto.cols()
        return _paste(x, box, rows, cols, _gather(base, own, rows, cols, h, w)).permute(0, 3, 1, 2)


@dataclass
class _Box:
    """Per-sample windows of one common size: top-left corners (N) and size."""

    y0: torch.Tensor
    x0: torch.Tensor
    h: int
    w: int

    @classmethod
    def whole(cls, n: int, height: int, width: int, device) -> "_Box":
        zero = torch.zeros(n, dtype=torch.long, device=device)
        return cls(zero, zero, height, width)

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


def _gather(
    flat: torch.Tensor, owner: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, height: int, width: int
) -> torch.Tensor:
    """N x h x w x C: per-sample windows of (B*H*W) x C rows."""
    idx = _lin(owner, rows, cols, height, width)
    return flat.index_select(0, idx.reshape(-1)).view(*idx.shape, flat.shape[1])


def _paste(window: torch.Tensor, box: _Box, rows: torch.Tensor, cols: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """N x h x w x C: ``base`` (values at rows x cols) with the N x C x box.h x box.w ``window`` values where they
    overlap."""
    n = window.shape[0]
    ry, rx = rows - box.y0[:, None], cols - box.x0[:, None]
    inside = ((ry >= 0) & (ry < box.h))[:, :, None] & ((rx >= 0) & (rx < box.w))[:, None, :]
    local = _lin(torch.arange(n, device=window.device), ry.clamp(0, box.h - 1), rx.clamp(0, box.w - 1), box.h, box.w)
    return torch.where(inside[..., None], _rows(window)[local], base)


_CACHE: "weakref.WeakKeyDictionary[Classifier, IncrementalMasking | None]" = weakref.WeakKeyDictionary()


def local_node_names(classifier: Classifier) -> list[str]:
    """Names of the traced graph's local nodes, in order (for inspection and tests)."""
    graph = local_graph(classifier)
    return [] if graph is None else [n.name for n in graph.nodes]


def incremental_masking(classifier: Classifier) -> IncrementalMasking | None:
    """The classifier's incremental evaluator, or None when it has no local layer or cannot be traced. Built once per
    classifier."""
    if classifier in _CACHE:
        return _CACHE[classifier]
    engine = None
    try:
        graph = local_graph(classifier)
        if graph is not None:
            engine = IncrementalMasking(classifier, graph)
    except Exception as exc:  # untraceable models run full passes
        log.info("no incremental masking for %s (%s)", classifier.name, exc)
    _CACHE[classifier] = engine
    return engine
