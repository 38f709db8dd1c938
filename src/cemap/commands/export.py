"""``cemap export``: write the sidecar that makes a checkpoint self-describing."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import CemapError
from .model_options import CLASS_NAMES, MEAN, MODEL_OPT, NORMALIZE, SIZE, STD, load, model_inputs


def export(
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Architecture (see cemap models), e.g. resnet18, densenet121, cxr-cnn; default: the sidecar's.",
    ),
    weights: Path = typer.Option(..., "--weights", "-w", help="State-dict file the sidecar describes."),
    model_opt: list[str] = MODEL_OPT,
    size: int = SIZE,
    mean: str = MEAN,
    std: str = STD,
    normalize: str = NORMALIZE,
    class_names: str = CLASS_NAMES,
) -> None:
    """Write <weights>.cemap.json: the architecture, input shape, normalisation and class names of a checkpoint.

    predict, explain and run read it whenever they load these weights, so the input size and class names are given
    once; their own options still win. The weights are loaded and run once first, so a sidecar never describes
    weights that do not fit.

    Example: cemap export --model resnet18 --weights net.pt --size 64 --normalize imagenet --class-names cat,dog
    """
    if str(weights) == "random":
        raise CemapError("cemap export needs a weights file", "pass --weights FILE (a state dict)")
    from ..models.sidecar import write_sidecar

    loaded = load(model, weights, model_opt, model_inputs(size, mean, std, normalize, class_names))
    path = write_sidecar(weights, loaded.classifier, loaded.name, loaded.options)
    pre, clf = loaded.preprocessing, loaded.classifier
    typer.echo(
        f"{loaded.name}: {' x '.join(map(str, pre['input_shape']))} input, normalisation {pre['normalize']}, "
        f"{clf.num_classes} classes ({', '.join(clf.class_names[:5])}{', ...' if clf.num_classes > 5 else ''})"
    )
    typer.echo(f"sidecar written to {path.resolve()}")
