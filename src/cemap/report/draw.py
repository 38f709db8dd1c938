"""The one drawer of the studies' figure specifications (:mod:`cemap.studies.figures`): ``draw(spec, folder)``.

The CLI hands :func:`draw` to each study's context, so a study says which figure it wants and the report
layer draws it; a study run without it writes numbers only.
"""

from __future__ import annotations

from functools import singledispatch
from pathlib import Path

from ..studies.figures import (
    BoxSamples,
    ConceptOverlays,
    ControlPanels,
    OverlayGrid,
    ProfileBars,
    RocPanels,
    SignatureHistograms,
)
from .detection_figures import roc_panels, signature_histograms
from .figures import box_samples, overlay_grid, profile_bars
from .latent_figures import concept_overlays, control_panels


@singledispatch
def draw(spec: object, folder: Path) -> Path:
    """Draw ``spec`` into ``folder/spec.file`` and return that path."""
    raise TypeError(f"no drawing for {type(spec).__name__}")


@draw.register
def _(spec: OverlayGrid, folder: Path) -> Path:
    return overlay_grid(spec.images, spec.maps, Path(folder) / spec.file, titles=spec.titles, boxes=spec.boxes)


@draw.register
def _(spec: ProfileBars, folder: Path) -> Path:
    return profile_bars(spec.profiles, Path(folder) / spec.file, ylabel=spec.ylabel)


@draw.register
def _(spec: BoxSamples, folder: Path) -> Path:
    return box_samples(spec.images, spec.boxes, spec.box_labels, spec.class_names, Path(folder) / spec.file)


@draw.register
def _(spec: ControlPanels, folder: Path) -> Path:
    return control_panels(spec, Path(folder) / spec.file)


@draw.register
def _(spec: ConceptOverlays, folder: Path) -> Path:
    return concept_overlays(spec, Path(folder) / spec.file)


@draw.register
def _(spec: SignatureHistograms, folder: Path) -> Path:
    return signature_histograms(
        spec.clean, spec.adversarial, spec.feature_names, spec.features, Path(folder) / spec.file
    )


@draw.register
def _(spec: RocPanels, folder: Path) -> Path:
    return roc_panels(spec.curves, Path(folder) / spec.file)
