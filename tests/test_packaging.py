"""`make run` installs the package without its test extras: everything `vault/` imports at run
time must be a declared dependency (a missing one only shows on a fresh machine)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _type_checking(test: ast.expr) -> bool:
    """``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``): imports only a type checker runs."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "vault").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        type_only = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node.test)
                     for statement in node.body for inner in ast.walk(statement)}
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"vault", "__future__"}


def test_every_runtime_import_is_a_declared_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {re.split(r"[<>=\[ ;]", req, maxsplit=1)[0].lower().replace("_", "-") for req in project["dependencies"]}
    distributions = packages_distributions()
    missing = {}
    for module in sorted(imported_modules()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & declared:
            missing[module] = sorted(names)
    assert missing == {}


def test_every_data_file_is_in_the_package_data() -> None:
    """Templates, mail templates, static files and the translation catalogue reach the wheel."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    patterns = setuptools["package-data"]["vault"]
    package = ROOT / "vault"
    packaged = {path for pattern in patterns for path in package.glob(pattern) if path.is_file()}
    data = {path for path in package.rglob("*")
            if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts}
    assert {str(path.relative_to(package)) for path in data - packaged} == set()
    assert package / "web" / "locale" / "en" / "LC_MESSAGES" / "messages.po" in packaged
