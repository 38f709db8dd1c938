"""Kernel SHAP over superpixels (Lundberg & Lee 2017, through Captum): a feature-ablation peer of the CE map.

Each image is cut into about ``n_segments`` superpixels by SLIC (scikit-image; compactness
``compactness`` on the [0, 1] grey levels); without scikit-image a documented fallback uses
square cells of the same count. Captum's ``KernelShap`` then fits Shapley values of the
target's *probability* to ``n_samples`` coalitions of superpixels, absent superpixels taking the
image's mean grey level (an in-distribution fill; a black hole in a radiograph is not). Every
pixel of a superpixel gets its Shapley value. Coalitions are drawn from a generator seeded by
``seed`` (Captum samples with the global RNG, so it runs inside ``torch.random.fork_rng``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..causal.batching import default_chunk
from ..models.classifier import Classifier
from ..causal.explainer import Explainer
from .registry import register_explainer


def superpixels(image: torch.Tensor, n_segments: int = 48, compactness: float = 0.3) -> torch.Tensor:
    """H x W integer labels 0..K-1 of ``image`` (C x H x W in [0, 1]): SLIC if scikit-image is there, else square
    cells."""
    c, h, w = image.shape
    try:
        from skimage.segmentation import slic
    except ImportError:  # fallback: a regular grid with about n_segments cells
        side = max(1, round(math.sqrt(h * w / n_segments)))
        rows, cols = torch.arange(h) // side, torch.arange(w) // side
        return rows[:, None] * (int(cols.max()) + 1) + cols[None, :]
    arr = image.detach().cpu().numpy().astype(np.float64)
    arr = arr[0] if c == 1 else np.moveaxis(arr, 0, -1)
    labels = slic(
        arr,
        n_segments=n_segments,
        compactness=compactness,
        channel_axis=None if c == 1 else -1,
        start_label=0,
        enforce_connectivity=True,
    )
    _, dense = np.unique(labels, return_inverse=True)
    return torch.from_numpy(dense.reshape(h, w).astype(np.int64))


@register_explainer("kernelshap")
class SuperpixelKernelShap(Explainer):
    """Kernel SHAP on ~``n_segments`` SLIC superpixels with ``n_samples`` coalitions per image."""

    def __init__(
        self,
        classifier: Classifier,
        n_segments: int = 48,
        n_samples: int = 256,
        compactness: float = 0.3,
        seed: int = 0,
        batch_size: int | None = None,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(classifier, batch_size)
        self.n_segments, self.n_samples, self.compactness, self.seed = n_segments, n_samples, compactness, seed
        self.chunk_size = chunk_size or default_chunk(classifier.input_shape)

    def _explain(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from captum.attr import KernelShap

        method = KernelShap(lambda x: self.classifier.predict_proba(x))
        out = []
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(self.seed)
            for img, t in zip(images, targets):
                labels = superpixels(img, self.n_segments, self.compactness)
                if (
                    int(labels.max()) == 0
                ):  # one superpixel (a featureless image): Captum cannot sample; the one player gets it all
                    p = self.classifier.predict_proba(torch.stack([img, torch.full_like(img, float(img.mean()))]))[
                        :, int(t)
                    ]
                    out.append(torch.full(img.shape[1:], float(p[0] - p[1]) * img.shape[0]))
                    continue
                attr = method.attribute(
                    img[None],
                    baselines=float(img.mean()),
                    target=int(t),
                    feature_mask=labels[None, None].expand_as(img[None]),
                    n_samples=self.n_samples,
                    perturbations_per_eval=self.chunk_size,
                )
                out.append(attr[0].sum(0))
        return torch.stack(out)
