"""Split a classifier at a named layer into prefix g and suffix h.

``prefix(x)`` returns the layer's activation A and whatever else the rest of the network
still needs (skip connections that jump over the cut); ``suffix(A, extras)`` finishes the
forward pass. The graph path (torch.fx) computes the prefix once and lets many interventions
on A share it. Models that cannot be traced fall back to forward hooks: same numbers, but
the suffix re-runs the whole network with A substituted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from ..models.classifier import Classifier

log = logging.getLogger(__name__)


@dataclass
class Split:
    """A classifier cut at ``layer``; ``method`` is 'fx' or 'hooks'."""

    prefix: nn.Module
    suffix: nn.Module
    layer: str
    method: str

    def activation(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[Any, ...]]:
        """(A, extras) on the images' device; the prefix runs where its weights are (as ``Classifier.forward``)."""
        home = images.device
        act, *extras = self.prefix(images.to(_device_of(self.prefix, home)))
        return act.to(home), tuple(_moved(e, home) for e in extras)

    def finish(self, act: torch.Tensor, extras: tuple[Any, ...]) -> torch.Tensor:
        """Logits on ``act``'s device; ``extras`` are broadcast to ``act``'s batch size when they hold one item."""
        b, home = act.shape[0], act.device
        device = _device_of(self.suffix, home)
        # Copies, because the suffix may start with an in-place op (DenseNet's ReLU) and these
        # tensors are shared between chunks of interventions.
        extras = tuple(_moved(_batched_copy(e, b), device) for e in extras)
        return self.suffix(act.to(device).clone(), *extras).to(home)


def _device_of(module: nn.Module, default: torch.device) -> torch.device:
    param = next(module.parameters(), None)
    return param.device if param is not None else default


def _moved(value: Any, device: torch.device) -> Any:
    return value.to(device) if torch.is_tensor(value) else value


def _batched_copy(value: Any, batch: int) -> Any:
    if not torch.is_tensor(value):
        return value
    if value.dim() > 0 and value.shape[0] == 1 and batch != 1:
        return value.expand(batch, *value.shape[1:]).clone()
    return value.clone()


class _LeafAt(fx.Tracer):
    """Keep the cut layer as one opaque node even when it is a custom container, and every module without
    children too: a cut only falls between modules, and their own code may branch on shapes or autograd."""

    def __init__(self, layer: str | None) -> None:
        super().__init__()
        self.layer = layer

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if self.layer is not None and qualname == self.layer:
            return True
        if qualname == "" or (self.layer is not None and self.layer.startswith(qualname + ".")):
            return False
        return next(m.children(), None) is None or super().is_leaf_module(m, qualname)


def _split_fx(root: nn.Module, layer: str) -> tuple[nn.Module, nn.Module]:
    graph = _LeafAt(layer).trace(root)
    nodes = list(graph.nodes)
    cut = next((i for i, n in enumerate(nodes) if n.op == "call_module" and n.target == layer), None)
    if cut is None:
        raise RuntimeError(f"layer {layer} is not called in the traced graph")
    before, after = nodes[: cut + 1], nodes[cut + 1 :]
    before_set = set(before)
    live = [n for n in before if n is not nodes[cut] and any(u not in before_set for u in n.users)]

    pre = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for n in before:
        env[n] = pre.node_copy(n, lambda a: env[a])
    pre.output(tuple(env[n] for n in [nodes[cut], *live]))

    post = fx.Graph()
    env2: dict[fx.Node, fx.Node] = {nodes[cut]: post.placeholder("activation")}
    for i, n in enumerate(live):
        env2[n] = post.placeholder(f"extra_{i}")
    for n in after:
        env2[n] = post.node_copy(n, lambda a: env2[a])
    return fx.GraphModule(root, pre), fx.GraphModule(root, post)


class _HookPrefix(nn.Module):
    def __init__(self, root: nn.Module, layer: nn.Module) -> None:
        super().__init__()
        self.root, self.layer = root, layer

    def forward(self, x: torch.Tensor):
        captured: list[torch.Tensor] = []

        class _Stop(Exception):
            pass

        def grab(_m, _inp, out):
            captured.append(out)
            raise _Stop

        handle = self.layer.register_forward_hook(grab)
        try:
            self.root(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError("the layer was never called during the forward pass")
        return captured[0], x


class _HookSuffix(nn.Module):
    def __init__(self, root: nn.Module, layer: nn.Module) -> None:
        super().__init__()
        self.root, self.layer = root, layer

    def forward(self, act: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        handle = self.layer.register_forward_hook(lambda _m, _i, _o: act)
        try:
            return self.root(x)
        finally:
            handle.remove()


class _Pipeline(nn.Module):
    """preprocess followed by model, traced as one graph so the cut can sit anywhere in the model."""

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.preprocess = classifier.preprocess
        self.model = classifier.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(x))


def leaf_graph(classifier: Classifier) -> tuple[nn.Module, fx.Graph]:
    """(preprocess + model as one module, its torch.fx graph with every module without children as one node)."""
    root = _Pipeline(classifier)
    return root, _LeafAt(None).trace(root)


def split_classifier(classifier: Classifier, layer: str | None = None, method: str = "auto") -> Split:
    """Cut ``classifier`` at ``layer`` (a name in ``classifier.model``); method 'auto' tries fx, then hooks."""
    layer = classifier.resolve_layer(layer)
    root = _Pipeline(classifier)
    qual = f"model.{layer}"
    if method in ("auto", "fx"):
        try:
            prefix, suffix = _split_fx(root, qual)
            return Split(prefix.eval(), suffix.eval(), layer, "fx")
        except Exception as exc:  # tracing fails on data-dependent control flow
            if method == "fx":
                raise
            log.info("fx cannot trace %s (%s); using forward hooks", classifier.name, exc)
    module = root.get_submodule(qual)
    return Split(_HookPrefix(root, module).eval(), _HookSuffix(root, module).eval(), layer, "hooks")
