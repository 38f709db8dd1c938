"""One exception type for every user mistake, so the CLI can print one line and exit 2."""

from __future__ import annotations

import sys


class CemapError(ValueError):
    """A problem with the user's input; the message says what is wrong and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


def unknown_name(kind: str, name: str, valid: list[str]) -> CemapError:
    """The error for a name that is not in a registry: it lists the names that are."""
    names = sorted(valid)
    shown = ", ".join(names[:MAX_LISTED]) + (f", ... ({len(names)} in all)" if len(names) > MAX_LISTED else "")
    plural = kind + ("es" if kind.endswith(("s", "sh", "ch", "x")) else "s")
    return CemapError(f"unknown {kind} {name!r}", f"valid {plural}: {shown}")


MAX_LISTED = 20


def check_options(kind: str, name: str, factory, options: dict) -> None:
    """Refuse keyword options that ``factory`` does not take, before any work starts (instead of a TypeError later)."""
    import inspect

    if not options:
        return
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [
        n
        for n, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and n not in ("self", "split")
    ]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        flag = "--model-opt" if kind == "model" else "--data-opt"
        raise CemapError(
            f"{kind} {name!r} has no option {unknown[0]!r}", f"{flag} keys it takes: {', '.join(valid) or 'none'}"
        )


def warn(message: str) -> None:
    """A ``warning:`` line on stderr (yellow on a terminal): for what cemap did on the user's behalf and goes on with,
    such as taking over a dead run's lock or moving a damaged cache entry aside."""
    import typer

    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, bold=True, err=True, color=sys.stderr.isatty() or None)
