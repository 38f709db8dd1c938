"""``cemap models``, ``cemap datasets``, ``cemap methods``: what exists, by name."""

from __future__ import annotations

import typer


def models() -> None:
    """List the model names that --model accepts.

    Example: cemap models
    """
    from ..models import list_models

    typer.echo("\n".join(list_models()))


def datasets() -> None:
    """List the dataset names that --dataset accepts.

    Example: cemap datasets
    """
    from ..data import list_datasets

    typer.echo("\n".join(list_datasets()))


def methods() -> None:
    """List the explanation methods that --methods accepts.

    Example: cemap methods
    """
    from ..explain import list_explainers

    typer.echo("\n".join(list_explainers()))
