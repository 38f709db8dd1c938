"""Classifiers by name. Importing this package registers the built-in models."""

from .classifier import Classifier, Normalize
from .build import LoadedModel, ModelInputs, load_model
from .registry import default_model_for, get_model, list_models, register_model
from . import mnist_cnn  # noqa: F401  (registers mnist-cnn)
from . import cxr_cnn, torchvision_models, xrv  # noqa: F401  (registers cxr-cnn, torchvision architectures, torchxrayvision models)
from . import synthcxr_nets  # noqa: F401  (registers densenet121-cxr, resnet18-cxr, resnet18-slim-cxr)
from . import planted  # noqa: F401  (registers cxr-cnn-planted, mnist-cnn-planted)

__all__ = [
    "Classifier",
    "LoadedModel",
    "ModelInputs",
    "Normalize",
    "load_model",
    "default_model_for",
    "get_model",
    "list_models",
    "register_model",
]
