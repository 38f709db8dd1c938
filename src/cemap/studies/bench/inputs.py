"""What ``cemap bench`` runs on: its settings, the model under test, its images and an untrained latent autoencoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...causal.adaptive import DEFAULT_REFINE
from ...causal.autoencoder import AEConfig, FittedAutoencoder, LatentAutoencoder
from ...causal.split import split_classifier
from ...errors import CemapError
from ...models.classifier import Classifier


DEFAULT_MODEL = "chexnet"  # DenseNet-121, 14 sigmoid findings, 224 x 224; random weights unless --weights

LATENT_LAYERS = ("features.denseblock2",)  # the reference cut for DenseNet-121

LATENT_K = 16


@dataclass(frozen=True)
class BenchConfig:
    model: str = DEFAULT_MODEL
    weights: str | None = "random"
    images: int = 2
    pgd_batch: int = 8
    repeats: int = 5
    warmup: int = 1
    threads: int = 0
    seed: int = 0
    cell: int | None = None  # default: about a 7 x 7 grid
    adaptive_refine: float = DEFAULT_REFINE
    pgd_steps: int = 10
    quality_images: int = 32
    pgd_quality_images: int = 256
    anchors_in_process: bool = False
    device: str = "cpu"  # 'cuda': every figure, anchors included, on the GPU (anchors then run in this process)
    compare_resnet50: bool = True  # also time ResNet-50 (random weights) CE maps with and without windows

    @classmethod
    def quick(cls, **kw) -> "BenchConfig":
        """About a minute or two on 2 cores: one image, three repeats, a small PGD batch."""
        return cls(**{"images": 1, "pgd_batch": 2, "repeats": 3, "quality_images": 8, "pgd_quality_images": 32, **kw})


def bench_classifier(config: BenchConfig) -> Classifier:
    """The model under test, built with seeded random weights where it has none of its own."""
    from ...models.registry import get_model
    from ...models.torchvision_models import ARCHS

    torch.manual_seed(config.seed)
    takes_weights = config.model == DEFAULT_MODEL or config.model in ARCHS  # built-in models train their own
    kwargs = {"weights": config.weights} if config.weights is not None and takes_weights else {}
    return get_model(config.model, **kwargs).eval()


def bench_images(classifier: Classifier, n: int, seed: int) -> torch.Tensor:
    """Test images of the model's built-in dataset when it has one, else seeded uniform noise in [0, 1]."""
    from ...data.registry import get_dataset, list_datasets
    from ...models.registry import default_model_for

    for dataset in list_datasets():
        try:
            if default_model_for(dataset) == classifier.name:
                return get_dataset(dataset, split="test").batch(range(n)).images.float()
        except CemapError:
            continue
    return torch.rand(n, *classifier.input_shape, generator=torch.Generator().manual_seed(seed))


def latent_layer(classifier: Classifier) -> str:
    return next((layer for layer in LATENT_LAYERS if layer in classifier.layers), None) or classifier.resolve_layer(
        None
    )


def bench_autoencoder(classifier: Classifier, layer: str, image: torch.Tensor, seed: int) -> FittedAutoencoder:
    """A seeded untrained autoencoder at ``layer``: speed does not depend on what it learned."""
    split = split_classifier(classifier, layer)
    with torch.inference_mode():
        act = split.activation(image[None])[0]
    channels = act.shape[1] if act.dim() == 4 else act[0].numel()
    torch.manual_seed(seed)
    return FittedAutoencoder(
        LatentAutoencoder(channels, code=LATENT_K).to(image.device).eval(), split, AEConfig(code=LATENT_K)
    )
