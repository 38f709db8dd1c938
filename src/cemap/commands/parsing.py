"""Command-line values into Python ones: comma lists, KEY=VALUE factory options (checked against the factory
before any work), and the built-in model of a dataset. Shared by every command that builds a model or dataset."""

from __future__ import annotations

from pathlib import Path

from ..errors import CemapError


def names(values: list[str]) -> tuple[str, ...]:
    """Accept both ``--methods a,b`` and ``--methods a --methods b``."""
    return tuple(n.strip() for v in values for n in v.split(",") if n.strip())


def scalar(text: str) -> int | float | str | bool:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def options(pairs: list[str], flag: str) -> dict:
    """``KEY=VALUE`` pairs -> keyword arguments for a dataset or model factory (numbers parsed)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise CemapError(f"{flag} {pair!r} is not KEY=VALUE", f"e.g. {flag} root=/data/images")
        out[key.strip()] = scalar(value.strip())
    return out


NAME_LISTS = ("class_names", "findings")
PATH_KEYS = ("root", "weights", "path", "file", "folder")


def checked_options(kind: str, name: str, factory, opts: dict) -> dict:
    """``opts`` checked against the factory's parameters before any work starts: unknown keys refused, list-valued
    options split at commas (``class_names=a,b,c``), and values that name existing files or folders made absolute
    (config.json must mean the same from any working directory)."""
    import inspect

    from ..errors import check_options

    check_options(kind, name, factory, opts)
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    out = {}
    for key, value in opts.items():
        annotation = str(getattr(params.get(key), "annotation", ""))
        if key in NAME_LISTS or "Sequence[str]" in annotation or "list[str]" in annotation:
            value = [v.strip() for v in str(value).split(",") if v.strip()]
        elif "Sequence[" in annotation or "list[" in annotation:
            value = [scalar(v.strip()) for v in str(value).split(",") if v.strip()]
        elif isinstance(value, str) and (key in PATH_KEYS or "/" in value) and Path(value).expanduser().exists():
            value = str(Path(value).expanduser().resolve())
        out[key] = value
    return out


def builtin_model(dataset: str) -> str:
    from ..models.registry import builtin_models

    models = builtin_models()
    if dataset not in models:
        with_model = ", ".join(f"{d} ({m})" for d, m in sorted(models.items()))
        raise CemapError(
            f"dataset {dataset!r} has no built-in model",
            f"pass --model NAME (cemap models lists them); datasets with one: {with_model}",
        )
    return models[dataset]


def study_model(dataset: str, model: str | None, model_opt: list[str], data_opt: list[str], train_seed: int = 0):
    """The classifier a study runs on, the dataset options it reads and the model's name: ``--model`` with its
    ``--model-opt`` (checked) or the dataset's built-in model, and ``--data-opt`` (checked). On an image folder
    without ``size`` / ``channels`` the images follow the model's input shape; on a planted dataset the planted model
    defaults to the data's artifact. ``train_seed`` > 0: the built-in model trained from that seed.

    Returns:
        (classifier, dataset options, model name).
    """
    from ..data.registry import dataset_factory
    from ..models import get_model
    from ..models.registry import model_factory

    data_options = checked_options("dataset", dataset, dataset_factory(dataset), options(data_opt, "--data-opt"))
    if model is None and dataset.endswith("-planted"):
        model = "cxr-cnn-planted" if dataset.startswith("synthcxr") else "mnist-cnn-planted"
    model = model or builtin_model(dataset)
    opts = checked_options("model", model, model_factory(model), options(model_opt, "--model-opt"))
    if model.endswith("-planted"):
        opts.setdefault("artifact", data_options.get("artifact", "tag"))
        if "size" in data_options and model.startswith("cxr"):
            opts.setdefault("size", data_options["size"])
    classifier = get_model(model, train_seed=train_seed, **opts)
    if dataset == "imagefolder":
        channels, size = classifier.input_shape[0], classifier.input_shape[-1]
        data_options = {"channels": channels, "size": size, **data_options}
    return classifier, data_options, model
