"""The ``cemap`` command: a thin typer layer over the library.

Each module in ``cemap.commands`` adds its own subcommand to ``app``; this file only owns the
global options and the one rule for errors: one line with a hint, exit code 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

from . import __version__
from .errors import CemapError

app = typer.Typer(
    name="cemap",
    help="Explain image classifiers by causal intervention, and detect adversarial inputs with the same effects.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cemap {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """cemap: causal-effect maps, latent CE profiles and CE-based adversarial detection."""


def _load_commands() -> None:
    from . import commands

    for info in pkgutil.iter_modules(commands.__path__):
        importlib.import_module(f"{commands.__name__}.{info.name}")


def main(argv: list[str] | None = None) -> None:
    _load_commands()
    try:
        app(args=argv, standalone_mode=False)
    except CemapError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; results written so far are kept", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except SystemExit:
        raise
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
