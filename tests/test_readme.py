"""The README's Python example runs as written (every ```python block, in order, in one namespace)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cemap.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def readme_text() -> str:
    if not README.is_file():
        pytest.fail(
            f"{README} is missing: the README (with docs/README_sections.md merged in) must exist and hold the Python "
            "example"
        )
    return README.read_text()


def test_readme_python_example_runs(tmp_path, monkeypatch, mnist_clf, mnist_ae):
    blocks = python_blocks(readme_text())
    assert blocks, "README.md has no ```python block to run"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)


def test_readme_names_only_commands_that_exist():
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    text = readme_text()
    shell = "\n".join(re.findall(r"^```(?:bash|sh|console)\n(.*?)^```", text, flags=re.S | re.M))
    used = set(re.findall(r"`cemap ([a-z][a-z-]+)", text)) | set(
        re.findall(r"^\$? ?cemap ([a-z][a-z-]+)", shell, flags=re.M)
    )
    assert used <= commands, f"README mentions unknown commands: {sorted(used - commands)}"
