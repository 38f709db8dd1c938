"""The class-activation-map family through pytorch-grad-cam: CAM, Grad-CAM, Grad-CAM++, Score-CAM.

Targets are ``ClassifierOutputTarget(index)`` on the logits (right for softmax and sigmoid
heads alike). pytorch-grad-cam returns each map ReLU'd and min-max scaled to [0, 1] at input
resolution. Inputs are passed with ``requires_grad`` because a cemap Classifier freezes its
weights: without it no activation would carry a gradient and the library's hook never fires.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, ScoreCAM
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from ..errors import CemapError
from ..models.classifier import Classifier
from ..causal.explainer import Explainer
from .gradients import default_cam_layer, gradient_safe_layers, layer_list
from .registry import register_explainer


class ClassActivationMap(BaseCAM):
    """Zhou et al. 2016 as a pytorch-grad-cam variant: channel weights are the target's row of the final linear
    layer."""

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], class_weights: np.ndarray) -> None:
        super().__init__(model, target_layers, uses_gradients=False)
        self.class_weights = class_weights

    def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads) -> np.ndarray:
        return self.class_weights[[t.category for t in targets]]


def final_linear_weights(classifier: Classifier) -> np.ndarray:
    """K x C weights of the last nn.Linear with one output per class."""
    heads = [
        m for m in classifier.model.modules() if isinstance(m, nn.Linear) and m.out_features == classifier.num_classes
    ]
    if not heads:
        raise CemapError(
            f"CAM needs a final nn.Linear with {classifier.num_classes} outputs; model "
            f"{classifier.name or 'classifier'} has none",
            "use gradcam, which needs no particular head",
        )
    return heads[-1].weight.detach().float().cpu().numpy()


class _CAMExplainer(Explainer):
    """Shared mechanics: gradient-safe copy, the hooked layer(s), one library call per chunk.

    ``layer``: a module name, several as 'a+b' or a list (pytorch-grad-cam then averages the
    layers' scaled maps), or None for :func:`default_cam_layer`.
    """

    multi_layer = True

    def __init__(self, classifier: Classifier, layer: str | list | None = None, batch_size: int | None = None) -> None:
        super().__init__(classifier, batch_size)
        layers = layer_list(layer or default_cam_layer(classifier))
        if len(layers) > 1 and not self.multi_layer:
            raise CemapError(f"{self.name} takes one layer, got {'+'.join(layers)}", "name one module")
        self.layer = "+".join(layers)
        self.model, self.hooked_layers = gradient_safe_layers(classifier, layers)
        self.hooked = self.hooked_layers[0]
        self.cam = self._build()

    def _build(self) -> BaseCAM:  # pragma: no cover - abstract
        raise NotImplementedError

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = images.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            maps = self.cam(x, [ClassifierOutputTarget(int(t)) for t in targets])
        self.cam.activations_and_grads.clear()
        return torch.from_numpy(np.asarray(maps, dtype=np.float32))


@register_explainer("cam")
class CAMExplainer(_CAMExplainer):
    """Refused at construction (CemapError) when the model has no CAM structure: global pooling into one linear head."""

    multi_layer = False

    def _build(self) -> BaseCAM:
        weights = final_linear_weights(self.classifier)
        channels = self._layer_channels()
        if channels != weights.shape[1]:
            raise CemapError(
                f"CAM needs the CAM layer to feed global pooling and the final linear layer, but {self.layer} has "
                f"{channels} channels "
                f"and the linear layer takes {weights.shape[1]}",
                "set cam_layer to the last spatial layer before pooling, or use gradcam (its generalisation)",
            )
        return ClassActivationMap(self.model, [self.hooked], weights)

    def _layer_channels(self) -> int:
        """Channels of the CAM layer's output, read from one forward pass of a blank image."""
        seen = []
        handle = self.hooked.register_forward_hook(lambda module, args, out: seen.append(out.shape[1]))
        try:
            with torch.inference_mode():
                self.model(torch.zeros(1, *self.classifier.input_shape))
        finally:
            handle.remove()
        return seen[0]


@register_explainer("gradcam")
class GradCAMExplainer(_CAMExplainer):
    def _build(self) -> BaseCAM:
        return GradCAM(self.model, self.hooked_layers)


@register_explainer("gradcam++")
class GradCAMPlusPlusExplainer(_CAMExplainer):
    def _build(self) -> BaseCAM:
        return GradCAMPlusPlus(self.model, self.hooked_layers)


@register_explainer("scorecam")
class ScoreCAMExplainer(_CAMExplainer):
    """One forward pass per channel of the CAM layer and image, ``channel_batch`` masked images at a time."""

    def __init__(
        self, classifier: Classifier, layer: str | None = None, batch_size: int | None = None, channel_batch: int = 64
    ) -> None:
        self.channel_batch = channel_batch
        super().__init__(classifier, layer, batch_size)

    def _build(self) -> BaseCAM:
        cam = ScoreCAM(self.model, self.hooked_layers)
        cam.batch_size = self.channel_batch
        return cam

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # The library draws a tqdm bar per image; keep them out of the user's terminal.
        with contextlib.redirect_stderr(io.StringIO()), torch.no_grad():
            maps = self.cam(images, [ClassifierOutputTarget(int(t)) for t in targets])
        self.cam.activations_and_grads.clear()
        return torch.from_numpy(np.asarray(maps, dtype=np.float32))
