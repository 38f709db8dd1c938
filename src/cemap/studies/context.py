"""The one context every study receives: built once, passed down, never rebuilt from a dataset name.

A study is a function ``run_<study>(ctx, config) -> <Study>Result`` (:mod:`cemap.studies.results`);
it reads the classifier, the data splits and the fitted autoencoder from the context, writes its
files under ``ctx.out``, draws randomness only from ``ctx.generator(stream)`` and hands the figures
it wants to ``ctx.figure(spec)`` (drawn by the context's ``draw``, which the CLI sets to
:func:`cemap.report.figures.draw`; without one no pictures are written).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch

from ..causal import FittedAutoencoder, fit_autoencoder
from ..data import get_dataset
from ..data.base import ImageDataset, stack_images
from ..models import Classifier, default_model_for, get_model
from .figures import Draw, Figure


@dataclass
class StudyContext:
    """Classifier, data splits, latent autoencoder (fitted on first use), output folder and seed of one study.

    Args:
        dataset: registered dataset name (its ``train`` and ``test`` splits are used).
        out: the run folder every stage writes into.
        seed: the study's seed; each stage draws from its own named stream (:meth:`generator`).
        quick: a small subset of the same study.
        model: registered model name; the dataset's built-in model when None.
        dataset_options: keyword arguments for ``get_dataset`` (e.g. ``seed``, ``size`` for synthcxr).
        device: where the classifier and the autoencoder run ("cpu", "cuda", "cuda:N"); images stay on the CPU and
            each network moves them (built-in models are trained on the CPU, so both devices explain the same weights).
        draw: draws the figures the studies ask for (None: no figures).
        train_seed: training seed of a built-in model (another seed trains, and caches, another model: repeat a study
            over trainings); 0 is the built-in model itself.
    """

    dataset: str
    out: Path
    seed: int = 0
    quick: bool = False
    model: str | None = None
    dataset_options: dict = field(default_factory=dict)
    device: str = "cpu"
    draw: Draw | None = None
    train_seed: int = 0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.model = self.model or default_model_for(self.dataset)

    @cached_property
    def classifier(self) -> Classifier:
        return get_model(self.model, train_seed=self.train_seed).to(self.device)

    @cached_property
    def train(self) -> ImageDataset:
        return get_dataset(self.dataset, split="train", **self.dataset_options)

    @cached_property
    def test(self) -> ImageDataset:
        return get_dataset(self.dataset, split="test", **self.dataset_options)

    @cached_property
    def train_images(self) -> torch.Tensor:
        """N x C x H x W: every train image (what the autoencoder is fitted on)."""
        return stack_images(self.train)

    @property
    def data_key(self) -> str:
        """The autoencoder cache's name for the train images (the same key ``cemap demo`` has always used)."""
        suffix = (
            ""
            if not self.dataset_options
            else "-" + hashlib.sha256(repr(sorted(self.dataset_options.items())).encode()).hexdigest()[:8]
        )
        return f"{self.dataset}{suffix}-train"

    @cached_property
    def autoencoder(self) -> FittedAutoencoder:
        """The latent autoencoder at the classifier's default layer, fitted on the train split (cached on disk)."""
        return fit_autoencoder(self.classifier, self.train_images, data_key=self.data_key)

    def generator(self, stream: str) -> torch.Generator:
        """A generator seeded from (seed, stream): stages draw independent numbers and never touch the global RNG."""
        digest = hashlib.sha256(f"{self.seed}/{stream}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF)

    def figure(self, spec: Figure) -> str | None:
        """Draw ``spec`` into the run folder; its file name, or None when this context draws no figures."""
        if self.draw is None:
            return None
        self.out.mkdir(parents=True, exist_ok=True)
        return self.draw(spec, self.out).name
