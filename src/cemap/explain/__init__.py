"""Explanation methods behind one verb: ``get_explainer(name, classifier).attribute(images, target) -> B x H x W``.

Methods: ce (causal-effect map), cam, gradcam, gradcam++, scorecam (pytorch-grad-cam),
occlusion, integrated-gradients (Captum), the floors random and centre, and the perturbation
peers ce-ms, rise and kernel-shap. Higher = more important for the target, everywhere.
"""

# Imported in the order list_explainers() reports; each module registers its methods.
from . import ce_multiscale  # noqa: F401, I001  (ce, ce-ms, ce-paper)
from . import cams  # noqa: F401
from . import attribution  # noqa: F401
from . import floors  # noqa: F401
from . import rise, superpixels  # noqa: F401  (RISE, Kernel SHAP)
from ..causal.explainer import Explainer, LayerExplainer
from .gradients import CloneOutput, default_cam_layer, gradient_safe_copy
from .registry import get_explainer, list_explainers, register_explainer

__all__ = [
    "CloneOutput",
    "Explainer",
    "LayerExplainer",
    "default_cam_layer",
    "get_explainer",
    "gradient_safe_copy",
    "list_explainers",
    "register_explainer",
]
