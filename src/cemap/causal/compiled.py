"""CE maps' full passes through ``torch.compile`` of the network (opt-in, GPU only).

On one H200, DenseNet-121 compiled for a fixed 512-image chunk ran 1.9x eager in fp32 and bf16 (docs/gpu.md):
eager DenseNet is bound by its many small memory-bound kernels (batch norm, ReLU, concatenation), which inductor
fuses. Compiling costs about 45 s per chunk shape, so every chunk is padded to the plan's size (one shape, one
compilation) and the option pays only for long jobs such as ``cemap run``. Compiled kernels sum in another order:
maps differ from eager ones by float rounding (about 1e-6), so it is off by default.
"""

from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch import nn

from ..errors import CemapError
from ..models.classifier import Classifier
from .batching import as_model_input
from .planning import on_gpu

_COMPILED: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def require_gpu(classifier: Classifier) -> None:
    """Compiled maps are refused on the CPU in one line (compiling there costs more than it saves)."""
    if not on_gpu(classifier.device):
        raise CemapError(
            "compiled CE maps run on a GPU only (torch.compile pays there, not on the CPU)",
            "pass --device cuda, or leave out --compile",
        )


def compiled_predict(classifier: Classifier, rows: int, channels_last: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """``predict(batch)`` -> probabilities of up to ``rows`` images, the network compiled once for ``rows`` images.

    Args:
        classifier: on a GPU (the compiled network is shared by every call on the same network).
        rows: the chunk size every batch is padded to.
        channels_last: the plan's memory layout.
    Returns:
        A function from N x C x H x W (N <= rows) to N x K probabilities.
    """
    require_gpu(classifier)
    network = _COMPILED.get(classifier.model)
    if network is None:
        network = _COMPILED[classifier.model] = torch.compile(classifier.model, dynamic=False)

    def predict(batch: torch.Tensor) -> torch.Tensor:
        n = batch.shape[0]
        if n < rows:  # the last chunk: pad with copies of its first image rather than compile a second shape
            batch = torch.cat([batch, batch[:1].expand(rows - n, *batch.shape[1:])])
        return classifier.probabilities(network(classifier.preprocess(as_model_input(batch, channels_last)))[:n])

    return predict
