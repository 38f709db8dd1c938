"""Running the command line inside a test and reading its one-line errors (shared by the CLI and hardening tests)."""

from __future__ import annotations

from cemap.cli import main


def run_cli(args, capsys):
    """(exit code, stdout, stderr) of ``cemap args`` run in this process."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, *words, warnings_allowed: bool = False) -> str:
    """Assert exit code 2 and exactly one ``error:`` line naming every one of ``words``; returns that line.

    ``warnings_allowed``: ``warning:`` lines before it (a damaged cache entry moved aside, say) are not counted.
    """
    lines = [ln for ln in err.strip().splitlines() if not (warnings_allowed and ln.startswith("warning: "))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]
