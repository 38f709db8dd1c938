"""The options every command that loads a model shares: the model and its weights, input size, normalisation and class
names.

A checkpoint is right only on inputs like those it was trained on, so these options (or the
checkpoint's sidecar from ``cemap export``) set them; the command then prints what it applied.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import CemapError

IMAGE_FILES = typer.Argument(..., help="Image files (PNG, JPEG, BMP, TIFF, DICOM) or folders of them.")
FILE_MODEL = typer.Option(
    None,
    "--model",
    "-m",
    help="Model name (see cemap models), e.g. cxr-cnn, densenet121, chexnet; default: the weights' sidecar's.",
)
WEIGHTS = typer.Option(None, "--weights", "-w", help="State-dict file for the model (loaded weights-only).")
MODEL_OPT = typer.Option(
    [], "--model-opt", help="Model option KEY=VALUE (repeatable; cemap models lists the models), e.g. size=64."
)
SIZE = typer.Option(
    None,
    "--size",
    help="Input side in pixels the model was trained at; images are resized to it. Default: the model's option, "
    "the weights' sidecar (cemap export) or the model's own size.",
)
MEAN = typer.Option(
    None, "--mean", help="Per-channel mean subtracted after scaling pixels to [0, 1], e.g. 0.5,0.5,0.5."
)
STD = typer.Option(None, "--std", help="Per-channel standard deviation divided by after --mean, e.g. 0.25,0.25,0.25.")
NORMALIZE = typer.Option(
    None,
    "--normalize",
    help="none (pixels in [0, 1]) or imagenet (mean 0.485,0.456,0.406, std 0.229,0.224,0.225, as torchvision's "
    "ImageNet models expect; He et al. 2016). Default: the sidecar's, else the model's.",
)
CLASS_NAMES = typer.Option(
    None,
    "--class-names",
    help="Names of the model's outputs in order: a,b,c or @file.txt (one name per line).",
)


def floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """``0.5,0.5,0.5`` -> (0.5, 0.5, 0.5); a value that is not a number is a one-line error."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise CemapError(f"{flag} {text!r} is not a list of numbers", f"e.g. {flag} 0.5,0.5,0.5") from exc


def class_names(text: str | None) -> tuple[str, ...] | None:
    """``a,b,c`` or ``@file.txt`` (one name per line, blank lines skipped) -> the names."""
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:]).expanduser()
        if not path.is_file():
            raise CemapError(f"--class-names file not found: {path}", "pass @FILE with one class name per line")
        names = tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    else:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise CemapError(f"--class-names {text!r} names no class", "e.g. --class-names cat,dog or @classes.txt")
    return names


def model_inputs(size: int | None, mean: str | None, std: str | None, normalize: str | None, names: str | None):
    """The command line's model inputs, checked (``ModelInputs.check``) before any work."""
    from ..models import ModelInputs

    return ModelInputs(
        size=size,
        mean=floats(mean, "--mean"),
        std=floats(std, "--std"),
        normalize=normalize,
        class_names=class_names(names),
    ).check()


def load(model: str | None, weights: Path | None, model_opt: list[str], inputs):
    """The model as the options, the weights' sidecar and its defaults say (``cemap.models.load_model``), with a
    warning line for each option that overrides the sidecar."""
    from ..models import load_model
    from .common import warn
    from .parsing import checked_options, options

    opts = options(model_opt, "--model-opt")
    if weights is not None:
        if "weights" in opts:
            raise CemapError("--weights and --model-opt weights= both given", "give the weights file once")
        opts["weights"] = str(weights)
    if model is not None:  # unknown keys refused, lists split, paths made absolute (the weights are checked later)
        from ..models.registry import model_factory

        given = opts.pop("weights", None)
        opts = checked_options("model", model, model_factory(model), opts)
        if given is not None:
            opts["weights"] = given
    loaded = load_model(model, opts, inputs)
    for note in loaded.notes:
        warn(note)
    return loaded


def data_follow_model(dataset: str, data_options: dict, model: str, model_options: dict, inputs) -> dict:
    """``cemap run``'s dataset options with the image size set to the model's input size, so the size is given once;
    a size the user gave for the data that differs from the model's is refused as the mismatch it is."""
    import inspect

    from ..data.registry import dataset_factory
    from ..models.build import expected_size

    param = inspect.signature(dataset_factory(dataset)).parameters.get("size")
    size = expected_size(model, model_options, inputs) if param is not None else None
    if size is None:
        return data_options
    given = data_options.get("size")
    if given is None:
        return data_options if param.default == size else {**data_options, "size": size}
    if not isinstance(given, int) or given < 1:
        raise CemapError(f"image size {given} is not a positive number of pixels", "give --data-opt size=N with N >= 1")
    if given != size:
        raise CemapError(
            f"model expects {size} px, data are {given} px",
            "give the size once (--size N or --model-opt size=N): the data follow the model",
        )
    return data_options
