"""The Classifier: a model together with everything needed to interpret its output.

It takes images in [0, 1] and owns its preprocessing, so every other part of cemap (masks,
attacks, metrics) speaks one pixel space. ``model`` must return logits; ``head`` says how
they become probabilities (softmax over classes, or one sigmoid per finding).
"""

from __future__ import annotations

import copy as copy_module
from typing import Sequence

import torch
from torch import nn

from ..errors import CemapError, unknown_name

HEADS = ("softmax", "sigmoid")


class Normalize(nn.Module):
    """(x - mean) / std per channel, as a module so it travels with the model's device and dtype."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def _own_copy(module: nn.Module | None) -> nn.Module | None:
    if module is None:
        return None
    try:
        return copy_module.deepcopy(module)
    except Exception as exc:  # a module holding an uncopyable resource (open file, lock, C++ handle)
        raise CemapError(
            f"cannot copy {type(module).__name__} ({exc})",
            "pass copy=False to let the Classifier freeze your module in place (eval mode, no parameter gradients)",
        ) from exc


def name_or(classifier: "Classifier") -> str:
    return f"model {classifier.name}" if classifier.name else "the model"


class Classifier(nn.Module):
    def __init__(
        self,
        model: nn.Module,
        class_names: Sequence[str],
        head: str = "softmax",
        input_shape: tuple[int, int, int] = (3, 224, 224),
        preprocess: nn.Module | None = None,
        layers: Sequence[str] | None = None,
        default_layer: str | None = None,
        name: str = "",
        cam_layer: str | None = None,
        copy: bool = True,
    ) -> None:
        """Wrap ``model`` (which returns logits) as a frozen classifier on images in [0, 1].

        Args:
            model: the network; with ``copy=True`` (default) the Classifier freezes its own deep copy
                (eval mode, no parameter gradients), so the caller's module keeps its mode, its
                ``requires_grad`` flags and any later training of its own. ``copy=False`` shares the
                module and freezes *it* - for models too large to hold twice.
            class_names: one name per output.
            head: "softmax" (one class per image) or "sigmoid" (one yes/no per finding).
            input_shape: C x H x W the model takes.
            preprocess: module applied to [0, 1] images before the model (e.g. ``Normalize``); copied like ``model``.
            layers / default_layer: the layers a latent autoencoder may sit on, and the default one.
            cam_layer: the layer class-activation maps read (None: the last spatial one).
        """
        super().__init__()
        if copy:
            model, preprocess = _own_copy(model), _own_copy(preprocess)
        if head not in HEADS:
            raise CemapError(f"unknown head {head!r}", f"use one of {', '.join(HEADS)}")
        self.model = model
        self.preprocess = preprocess if preprocess is not None else nn.Identity()
        self.class_names = list(class_names)
        self.head = head
        self.input_shape = tuple(input_shape)
        self.name = name
        all_layers = [n for n, _ in model.named_modules() if n]
        self.layers = list(layers) if layers is not None else all_layers
        self.default_layer = default_layer or (self.layers[len(self.layers) // 2] if self.layers else None)
        # The layer class-activation maps read; None: the last layer with a spatial output
        # (cemap.explain.default_cam_layer).
        self.cam_layer = cam_layer
        self.outputs_checked = False  # the first forward checks the outputs' count and finiteness (see forward)
        for p in self.parameters():
            p.requires_grad_(False)
        # a frozen classifier: dropout off and BatchNorm on running statistics, wrapper included (its own copy by
        # default)
        self.eval()

    @property
    def multilabel(self) -> bool:
        return self.head == "sigmoid"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def device(self) -> torch.device:
        """Where the network's weights live (inputs must be moved there): the first parameter's device, else the CPU."""
        param = next(self.model.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits for images in [0, 1], on the images' device: the network runs where its weights are, so code that
        keeps images on the CPU (Captum, metrics) can drive a classifier on a GPU. Same device: no copy.

        The first batch's logits are checked once: one per class name, all finite (a broken checkpoint otherwise
        gives NaN maps and effects that look like numbers)."""
        logits = self.model(self.preprocess(images.to(self.device)))
        if not self.outputs_checked:
            self.check_outputs(logits)
        return logits.to(images.device)

    def check_outputs(self, logits: torch.Tensor) -> None:
        """Raise a CemapError unless ``logits`` is B x (one per class name) and finite; remembers a pass."""
        name = self.name or "the model"
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise CemapError(
                f"{name} returns outputs of shape {tuple(logits.shape)}, but {self.num_classes} class names were given",
                f"give one class name per output ({logits.shape[-1] if logits.dim() else 1} here)",
            )
        if not bool(torch.isfinite(logits.detach()).all()):
            raise CemapError(
                f"{name} returns NaN or infinite outputs on the first batch",
                "check the weights file (a diverged training or a damaged checkpoint); cemap predict shows the outputs",
            )
        self.outputs_checked = True

    def class_index(self, target: int | str) -> int:
        """The output index of a class given by index or by name (names as in ``class_names``)."""
        if isinstance(target, str) and not target.lstrip("-").isdigit():
            if target not in self.class_names:
                close = [n for n in self.class_names if target.lower() in n.lower() or n.lower() in target.lower()][:5]
                raise CemapError(
                    f"{name_or(self)} has no class {target!r}",
                    f"did you mean {', '.join(close)}?"
                    if close
                    else f"classes: {', '.join(self.class_names[:10])}" + (" ..." if self.num_classes > 10 else ""),
                )
            return self.class_names.index(target)
        index = int(target)
        if not 0 <= index < self.num_classes:
            raise CemapError(
                f"class index {index} is out of range for {name_or(self)}",
                f"use 0..{self.num_classes - 1} or a class name",
            )
        return index

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1) if self.head == "softmax" else torch.sigmoid(logits)

    def predict_proba(self, images: torch.Tensor) -> torch.Tensor:
        return self.probabilities(self(images))

    def decisions(self, probs: torch.Tensor) -> torch.Tensor:
        """Top-1 class (softmax) or per-finding yes/no at 0.5 (sigmoid)."""
        return probs.argmax(-1) if self.head == "softmax" else (probs > 0.5)

    def resolve_layer(self, layer: str | None) -> str:
        """The layer to intervene on: ``layer`` if valid, else the default; unknown names list the valid ones."""
        layer = layer or self.default_layer
        if layer is None or layer not in dict(self.model.named_modules()) or layer == "":
            raise unknown_name("layer", str(layer), self.layers)
        return layer

    def check_images(self, images: torch.Tensor) -> torch.Tensor:
        """Validate a batch (or a single image) against this classifier; returns a B x C x H x W batch."""
        if not isinstance(images, torch.Tensor):
            raise CemapError(f"expected a torch.Tensor of images, got {type(images).__name__}")
        if images.dim() == 3:
            images = images.unsqueeze(0)
        if images.dim() != 4 or tuple(images.shape[1:]) != self.input_shape:
            raise CemapError(
                f"image shape {tuple(images.shape)} does not fit model {self.name or 'classifier'}",
                f"expected B x {' x '.join(map(str, self.input_shape))} (C x H x W) in [0, 1]",
            )
        if not torch.isfinite(images).all():
            raise CemapError("image contains NaN or infinite values", "clean or drop the image before explaining it")
        if images.min() < -1e-4 or images.max() > 1 + 1e-4:
            raise CemapError(
                f"pixel values span [{images.min():.3g}, {images.max():.3g}], outside [0, 1]",
                "pass raw images scaled to [0, 1]; normalisation belongs to the Classifier",
            )
        return images.float()
