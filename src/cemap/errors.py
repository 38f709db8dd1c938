"""One exception type for every user mistake, so the CLI can print one line and exit 2."""

from __future__ import annotations


class CemapError(ValueError):
    """A problem with the user's input; the message says what is wrong and what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


def unknown_name(kind: str, name: str, valid: list[str]) -> CemapError:
    """The error for a name that is not in a registry: it lists the names that are."""
    return CemapError(f"unknown {kind} {name!r}", f"valid {kind}s: {', '.join(sorted(valid))}")
