"""The ``cemap`` command: a thin typer layer over the library.

The subcommands are plain functions in ``cemap.commands``, registered here from :data:`COMMANDS`
(one line adds one). This file also owns the global options and the one rule for errors: one line
with a hint, exit code 2.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer
import typer.core

from . import __version__
from .cache import is_disk_full, nearly_full, torch_writer_error
from .causal.batching import tune_allocator
from .commands import common
from .errors import CemapError

# Every subcommand, in the order ``cemap --help`` lists them: "module" (its function of the same name) or
# "module:function" in cemap.commands; the function's name is the command's. One line adds a command.
COMMANDS = [
    "audit",
    "bench",
    "demo",
    "detect",
    "evaluate",
    "explain",
    "export",
    "listing:models",
    "listing:datasets",
    "listing:methods",
    "predict",
    "report",
    "run",
]


def _flag_without_type(original):
    """Help shows ``--quiet``, not ``--quiet <bool>``: a flag takes no value, so it gets no type column."""

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else original(self, ctx)

    return display_type_rich


if hasattr(typer.core.TyperOption, "display_type_rich"):
    typer.core.TyperOption.display_type_rich = _flag_without_type(typer.core.TyperOption.display_type_rich)

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
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """cemap: causal-effect maps, latent CE profiles and CE-based adversarial detection."""


def command(spec: str):
    """The function a :data:`COMMANDS` entry names."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(f"{__package__}.commands.{module}"), name or module)


for _spec in COMMANDS:
    app.command()(command(_spec))


def _fail(message: str, code: int = 2) -> None:
    common.remove_empty_outputs()
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _track_out(argv: list[str]) -> None:
    """Note the folders of ``--out`` that do not exist yet: a failed command removes them again when they stay empty."""
    common.forget_outputs()  # only this command's folders (tests run several commands in one process)
    for i, arg in enumerate(argv):
        value = (
            argv[i + 1]
            if arg in ("--out", "-o") and i + 1 < len(argv)
            else arg.partition("=")[2]
            if arg.startswith("--out=")
            else None
        )
        if value:
            common.remember_missing(Path(value))


def main(argv: list[str] | None = None) -> None:
    _track_out(list(sys.argv[1:] if argv is None else argv))
    tune_allocator()  # the command owns its process; `import cemap` alone never retunes the allocator
    try:
        code = app(args=argv, prog_name="cemap", standalone_mode=False)
        if (
            code == 130
        ):  # typer turns Ctrl-C inside a command into Exit(130), returned (not raised) outside standalone mode
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except CemapError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        typer.echo("interrupted; results written so far are kept", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort as exc:  # click turns an EOFError or a KeyboardInterrupt raised inside a command into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            typer.echo("interrupted; results written so far are kept", err=True)
            sys.exit(130)
        cause = exc.__cause__
        detail = f" ({cause})" if cause is not None and str(cause) else ""
        _fail(
            f"a file ended before it was complete{detail}: an empty or truncated input, weights or cache file (delete "
            "or replace it and rerun)"
        )
    except typer.TyperException as exc:  # usage errors (bad flag, unknown command, bad value) in non-standalone mode
        ctx = getattr(exc, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        if not message:  # `cemap` alone: the help was printed, nothing went wrong
            sys.exit(0)
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(2)
    except (OSError, RuntimeError) as exc:
        where = next((e.filename for e in _chain(exc) if isinstance(e, OSError) and e.filename), None)
        if not (is_disk_full(exc) or torch_writer_error(exc) and nearly_full(Path(where or ".").parent)):
            raise
        _fail(
            f"no space left on the device{f' while writing {where}' if where else ''} (free some space and rerun; a "
            "cemap run continues with --resume and keeps every committed shard)"
        )


def _chain(exc: BaseException | None) -> list[BaseException]:
    out = []
    while exc is not None and exc not in out:
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


if __name__ == "__main__":
    main()
