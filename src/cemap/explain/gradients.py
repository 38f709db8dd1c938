"""Gradient-safe model copies for hook-based explainers (the DenseNet in-place ReLU trap).

pytorch-grad-cam captures the CAM layer's output with a forward hook and registers a
gradient hook on that same tensor. torchvision's DenseNet then runs
``F.relu(features, inplace=True)`` on it: the stored activation is silently overwritten with
its ReLU (the negative half of norm5's output disappears) - the long-standing bug in the CAM
libraries' trackers. Setting ``nn.ReLU(inplace=False)`` is not enough, because the in-place
call sits in ``DenseNet.forward`` itself.

The fix here: explain a deep copy of the classifier in which the CAM layer is wrapped by
:class:`CloneOutput`. The library hooks the *inner* layer and sees its true output; the rest
of the network receives a clone, so in-place operations downstream touch only the clone. The
gradient is unchanged (the clone is differentiable), and the user's model is never modified.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import CemapError
from ..models.classifier import Classifier


class CloneOutput(nn.Module):
    """Run ``inner`` and hand a copy of its output downstream."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args, **kwargs):
        out = self.inner(*args, **kwargs)
        return out.clone() if torch.is_tensor(out) else out


def default_cam_layer(classifier: Classifier) -> str:
    """``classifier.cam_layer`` if set, else the last module to produce a spatial map (B x C x h x w, h or w > 1).

    Found with one probing forward pass, so it is the layer CAM papers use: ``features`` for
    DenseNet (norm5's output, before the functional ReLU), ``layer4`` for ResNet, the last
    conv block for a plain CNN. Modules called more than once per pass (a shared ReLU) are
    skipped, because a hook on them would fire twice.
    """
    if getattr(classifier, "cam_layer", None):
        return classifier.cam_layer
    spatial = [name for name, _ in spatial_layers(classifier)]
    if not spatial:
        raise CemapError(
            f"model {classifier.name or 'classifier'} has no layer with a spatial output for class-activation maps",
            "pass layer=... naming a module with a B x C x h x w output",
        )
    return spatial[-1]


def gradient_safe_copy(classifier: Classifier, layer: str) -> tuple[Classifier, nn.Module]:
    """(a deep copy of ``classifier`` with ``layer`` wrapped in CloneOutput, the wrapped layer to hook)."""
    clone, inner = gradient_safe_layers(classifier, [layer])
    return clone, inner[0]


def layer_list(layer: str | list | tuple) -> list[str]:
    """Layer names from a name, 'a+b' (several layers, their CAMs averaged) or a list of names."""
    names = layer.split("+") if isinstance(layer, str) else list(layer)
    return [n for n in names if n]


def gradient_safe_layers(classifier: Classifier, layers: list[str]) -> tuple[Classifier, list[nn.Module]]:
    """(a deep copy of ``classifier`` with each of ``layers`` wrapped in CloneOutput, the wrapped layers to hook)."""
    modules = dict(classifier.model.named_modules())
    for layer in layers or [""]:
        if not layer or layer not in modules:
            raise CemapError(
                f"unknown CAM layer {layer!r}", "name a module of classifier.model, e.g. the last convolution"
            )
    clone = copy.deepcopy(classifier)
    inner: dict[str, nn.Module] = {}
    for layer in sorted(
        set(layers), key=lambda n: -n.count(".")
    ):  # a nested layer before its container: wrapping never hides a path
        parent_name, _, child = layer.rpartition(".")
        parent = clone.model.get_submodule(parent_name) if parent_name else clone.model
        inner[layer] = getattr(parent, child)
        setattr(parent, child, CloneOutput(inner[layer]))
    return clone.eval(), [inner[n] for n in layers]


def spatial_layers(classifier: Classifier) -> list[tuple[str, tuple[int, int]]]:
    """(name, (h, w)) of every module producing a spatial map (B x C x h x w, h or w > 1), called once per forward pass,
    in execution order: the candidate CAM layers (one probing forward pass)."""
    finished: list[tuple[str, tuple | None]] = []
    handles = [
        m.register_forward_hook(
            lambda _m, _i, out, name=name: finished.append(
                (
                    name,
                    tuple(out.shape[2:])
                    if torch.is_tensor(out) and out.dim() == 4 and max(out.shape[2:]) > 1
                    else None,
                )
            )
        )
        for name, m in classifier.model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            classifier(torch.zeros(1, *classifier.input_shape))
    finally:
        for h in handles:
            h.remove()
    calls: dict[str, int] = {}
    for name, _ in finished:
        calls[name] = calls.get(name, 0) + 1
    return [(name, shape) for name, shape in finished if shape is not None and calls[name] == 1]
