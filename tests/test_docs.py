"""The Python examples in README.md and docs/ run, so they cannot rot.

Every fenced block whose info string is exactly ``python`` is executed; the
blocks of one file run in order in one namespace, from the repository root.
Use ``text`` or ``sh`` for blocks that must not run.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def python_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in FENCE.finditer(text)]


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_python_blocks_run(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each Python block of the file runs without error, in order."""
    monkeypatch.chdir(ROOT)
    namespace: dict[str, object] = {"__name__": f"docs_{path.stem}"}
    for line, source in python_blocks(path):
        code = compile(source, f"{path.relative_to(ROOT)}:{line}", "exec")
        exec(code, namespace)


def test_readme_has_runnable_examples() -> None:
    """The README shows at least one executed example (the collector finds blocks)."""
    assert python_blocks(ROOT / "README.md")


def test_quickstart_has_exactly_two_command_lines() -> None:
    """The first sh block under Quickstart holds the two documented command lines."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) == 2
    assert "demo" in lines[0]
    assert "tests" in lines[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert lines[1] in ci.splitlines()
