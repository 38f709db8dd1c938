"""What a classifier does to an image before its network: input size, channels and normalisation.

A checkpoint is right only on inputs like those it was trained on (a ResNet trained at 64 px, fed
224-px ImageNet-normalised images, gives other probabilities), so the input spec belongs to the
model, is set from the model's options, a sidecar or the command line, and every output records it.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import CemapError
from .classifier import Classifier, Normalize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# --normalize NAME: the per-channel (mean, std) it stands for
NORMALIZATIONS = {"none": ((0.0,), (1.0,)), "imagenet": (IMAGENET_MEAN, IMAGENET_STD)}
RESIZE = "bilinear, antialiased, to the input size (aspect ratio not kept)"


def normalization_name(mean: Sequence[float], std: Sequence[float]) -> str:
    """'none', 'imagenet' or 'custom' for a (mean, std) pair (one value stands for every channel)."""
    for name, (m, s) in NORMALIZATIONS.items():
        if same_values(mean, m) and same_values(std, s):
            return name
    return "custom"


def same_values(a: Sequence[float], b: Sequence[float]) -> bool:
    """Equal per channel, one value standing for every channel."""
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        return False
    n = max(len(a), len(b))
    return all(abs(a[i % len(a)] - b[i % len(b)]) < 1e-6 for i in range(n))


def set_normalization(classifier: Classifier, mean: Sequence[float], std: Sequence[float]) -> None:
    """Replace the classifier's preprocessing by (x - mean) / std, or by nothing for mean 0 and std 1."""
    channels = classifier.input_shape[0]
    for what, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise CemapError(
                f"--{what} has {len(values)} values for a {channels}-channel model", f"give 1 or {channels} values"
            )
    if any(s <= 0 for s in std):
        raise CemapError(f"--std {','.join(map(str, std))} must be positive", "e.g. --std 0.229,0.224,0.225")
    if normalization_name(mean, std) == "none":
        classifier.preprocess = nn.Identity()
    else:
        classifier.preprocess = Normalize(list(mean), list(std)).to(classifier.device)


def describe(classifier: Classifier) -> dict:
    """The preprocessing ``classifier`` applies, as outputs record it: input shape, resize, normalisation."""
    record: dict = {"input_shape": list(classifier.input_shape), "resize": RESIZE}
    pre = classifier.preprocess
    if isinstance(pre, nn.Identity):
        mean, std = [0.0], [1.0]
    elif isinstance(pre, Normalize):
        mean = [round(v, 6) for v in pre.mean.flatten().tolist()]
        std = [round(v, 6) for v in pre.std.flatten().tolist()]
    else:  # a model's own mapping (e.g. torchxrayvision's [-1024, 1024] range)
        return {**record, "normalize": type(pre).__name__, "mean": None, "std": None}
    return {**record, "normalize": normalization_name(mean, std), "mean": mean, "std": std}


def probe(classifier: Classifier) -> int:
    """Run the network once on a blank input of its input shape, before any file is read or written; returns the
    number of outputs. A model that cannot take that shape is a CemapError; so are NaN or infinite outputs
    (``Classifier.check_outputs``), since NaN weights give NaN on any input."""
    blank = torch.zeros(1, *classifier.input_shape, device=classifier.device)
    with torch.inference_mode():
        try:
            logits = classifier.model(classifier.preprocess(blank))
        except RuntimeError as exc:
            shape = " x ".join(map(str, classifier.input_shape))
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CemapError(
                f"{classifier.name or 'the model'} cannot run on {shape} inputs ({first[:160]})",
                "give the size the model was trained at (--size N or --model-opt size=N)",
            ) from exc
    outputs = int(logits.shape[-1]) if logits.dim() else 1
    if outputs == classifier.num_classes:
        classifier.check_outputs(logits)
    return outputs
