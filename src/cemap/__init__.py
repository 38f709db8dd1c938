"""cemap: explain image classifiers by causal intervention, and detect adversarial inputs with the same effects.

Quick use::

    import cemap
    clf = cemap.get_model("mnist-cnn")
    test = cemap.get_dataset("mnist5k", split="test")
    x = test.batch(range(4)).images
    maps = cemap.CEMap(clf).attribute(x)                 # B x H x W, higher = matters more
    ae = cemap.fit_autoencoder(clf, cemap.get_dataset("mnist5k", split="train").images)
    profile = cemap.LatentCE(clf, ae).attribute(x)       # B x 16 latent CE profile
"""

from importlib.metadata import PackageNotFoundError, version

from .causal import (
    AEConfig, AdaptiveCEMap, CEMap, FittedAutoencoder, LatentCE, class_effect, expected_effect, fidelity, fit_autoencoder, split_classifier,
)
from .data import Sample, get_dataset, list_datasets, register_dataset
from .errors import CemapError
from .models import Classifier, get_model, list_models, register_model

_LAZY = {"CEDetector": "detect", "CESignature": "detect"}  # scikit-learn loads only when detection is used


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
    "AEConfig", "AdaptiveCEMap", "CEDetector", "CEMap", "CESignature", "CemapError", "Classifier", "FittedAutoencoder", "LatentCE", "Sample", "class_effect",
    "expected_effect", "fidelity", "fit_autoencoder", "get_dataset", "get_model", "list_datasets", "list_models",
    "register_dataset", "register_model", "split_classifier", "__version__",
]
