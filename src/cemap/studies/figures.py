"""The figures a study asks for, as data: what to show and in which file, never how to draw it.

A study builds one of these specifications and hands it to its context's drawer
(:meth:`cemap.studies.context.StudyContext.figure`); :mod:`cemap.report.figures` draws them. So the
studies compute and the report draws, and a study run without a drawer (a library call that only
wants the numbers) writes no pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch


@dataclass
class OverlayGrid:
    """One row per image: the image in its own colours, then each map over it, with the true boxes where given."""

    file: str
    images: torch.Tensor  # B x C x H x W in [0, 1]
    maps: dict[str, torch.Tensor]  # name -> B x H x W
    titles: Sequence[str] | None = None
    boxes: Sequence[torch.Tensor] | None = None


@dataclass
class ProfileBars:
    """Mean +- std latent CE per concept channel, one bar group per condition."""

    file: str
    profiles: dict[str, torch.Tensor]  # condition -> N x k
    ylabel: str = "latent CE (ECE)"


@dataclass
class BoxSamples:
    """A grid of images with their ground-truth boxes, one colour per finding."""

    file: str
    images: torch.Tensor
    boxes: Sequence[torch.Tensor]
    box_labels: Sequence[torch.Tensor]
    class_names: Sequence[str]


@dataclass
class ControlPanels:
    """The latent controls study: each condition's profile shift beside its control, differences, per-channel tests."""

    file: str
    dataset: str
    masking: dict
    adversarial: dict
    channel_labels: Sequence[str]
    alpha: float


@dataclass
class ConceptOverlays:
    """Each latent channel's most activating image with the channel's activation over it, titled by its concept."""

    file: str
    dataset: str
    images: torch.Tensor  # N x C x H x W
    top_image: Sequence[int]  # per channel: the index of its most activating image
    maps: torch.Tensor  # k x H x W: that image's activation map of the channel
    labels: Sequence[str]


@dataclass
class SignatureHistograms:
    """Clean versus adversarial distributions of chosen signature features, one row per attack."""

    file: str
    clean: np.ndarray  # N x D
    adversarial: dict[str, np.ndarray]  # attack -> M x D
    feature_names: Sequence[str]
    features: Sequence[int]


@dataclass
class RocPanels:
    """One panel per attack, one ROC curve (fpr, tpr, auroc) per detector."""

    file: str
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray, float]]]


Figure = OverlayGrid | ProfileBars | BoxSamples | ControlPanels | ConceptOverlays | SignatureHistograms | RocPanels
Draw = Callable[[Figure, Path], Path]  # draws a figure into a folder and returns its path (cemap.report.figures.draw)
