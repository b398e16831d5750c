"""docs/security.md names the test behind each promise: every test it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"`((?:tests/[\w/]+\.py)?(?:::\w+)?)`")


def _names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def references() -> list[tuple[str, str | None]]:
    """(file, test or None) for each reference; ``::name`` alone means the file named before it on
    the same line."""
    found: list[tuple[str, str | None]] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        current: str | None = None
        for ref in REFERENCE.findall(line):
            if not ref:
                continue
            path, _, name = ref.partition("::")
            if path:
                current = path
            assert current is not None, f"{ref!r} names no file: {line}"
            found.append((current, name or None))
    return found


def test_every_test_named_by_the_security_page_exists() -> None:
    refs = references()
    assert len(refs) > 40  # the page is read, not skipped
    missing = []
    for path, name in refs:
        file = ROOT / path
        if not file.is_file():
            missing.append(path)
        elif name is not None and name not in _names(file):
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/security.md names tests that do not exist: {missing}"
