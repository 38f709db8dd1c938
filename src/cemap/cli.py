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
        app(args=argv, prog_name="cemap", standalone_mode=False)
    except CemapError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted; results written so far are kept", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except typer.TyperException as exc:  # usage errors (bad flag, unknown command, bad value) in non-standalone mode
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if not message:  # `cemap` alone: the help was printed, nothing went wrong
            sys.exit(0)
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
