"""cemap: explain image classifiers by causal intervention, and detect adversarial inputs with the same effects.

Quick use::

    import cemap
    clf = cemap.get_model("mnist-cnn")
    test = cemap.get_dataset("mnist5k", split="test")
    x = test.batch(range(4)).images
    maps = cemap.CEMap(clf).attribute(x)                 # B x H x W, higher = matters more
    ae = cemap.fit_autoencoder(clf, cemap.stack_images(cemap.get_dataset("mnist5k", split="train")))
    profile = cemap.LatentCE(clf, ae).attribute(x)       # B x 16 latent CE profile
    gradcam = cemap.get_explainer("gradcam", clf).attribute(x)

The top level holds what the README's examples use; everything else lives in its package
(``cemap.causal``, ``cemap.explain``, ``cemap.attacks``, ``cemap.detect``, ``cemap.evaluate``, ...).
"""

from importlib.metadata import PackageNotFoundError, version

from .attacks import get_attack, list_attacks
from .causal import AEConfig, AdaptiveCEMap, CEMap, LatentCE, fidelity, fit_autoencoder
from .data import get_dataset, list_datasets, register_dataset
from .data.base import stack_images
from .errors import CemapError
from .models import Classifier, get_model, list_models, register_model

# Loaded when first used: the baselines need Captum and pytorch-grad-cam, detection needs scikit-learn.
_LAZY = {"CEDetector": "detect", "CESignature": "detect", "get_explainer": "explain", "list_explainers": "explain"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'cemap' has no attribute {name!r}")


try:
    __version__ = version("cemap")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

__all__ = [
    "AEConfig",
    "AdaptiveCEMap",
    "CEDetector",
    "CEMap",
    "CESignature",
    "CemapError",
    "Classifier",
    "LatentCE",
    "fidelity",
    "fit_autoencoder",
    "get_attack",
    "get_dataset",
    "get_explainer",
    "get_model",
    "list_attacks",
    "list_datasets",
    "list_explainers",
    "list_models",
    "register_dataset",
    "register_model",
    "stack_images",
    "__version__",
]
