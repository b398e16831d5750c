"""The house rules of docs/architecture.md, read from the code's own imports: each part of vault/
imports only the parts below it, the key hierarchy imports no domain, and no module imports
itself back through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

VAULT = Path(__file__).parents[1] / "vault"

# Lower number, lower floor (docs/architecture.md, "Layers"). A part imports only from lower floors;
# parts on one floor never import each other.
FLOORS = {
    "vault": 0, "settings": 0, "translation": 0, "dates": 0,  # the package's face and pure helpers
    "errors": 1, "logs": 1, "geo": 1, "metrics": 1,            # the error model, logs, metrics; communes and countries
    "db": 2, "mail": 2,                                        # the database; sending mail
    "crypto": 3, "migrations": 3, "web": 3,                    # key hierarchy, schema check, the web layer
    "auth": 4,                                                 # citizen accounts
    "alerts": 5,                                               # alert mails to the citizen, their switches
    "oidc": 6,                                                 # the OpenID Connect provider
    "storage": 7,                                              # the document vault
    "gdpr": 8,                                                 # data-subject rights
    "counter": 9,                                              # the town hall's counter: mandates, statistics
    "services": 10,                                            # the composition root
    "jobs": 11,                                                # background jobs: the queue, in-process runs
    "app": 12, "cli": 12,                                      # entry points
}


def module_name(path: Path) -> str:
    parts = path.relative_to(VAULT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def part_of(module: str) -> str:
    return module.split(".")[1] if "." in module else "vault"


def imported(tree: ast.AST, *, top_level_only: bool) -> set[str]:
    """Modules of vault named by the imports (``from vault import crypto`` names vault.crypto)."""
    nodes = tree.body if top_level_only and isinstance(tree, ast.Module) else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "vault"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "vault":
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names
                      if (VAULT.parent / node.module.replace(".", "/") / alias.name).exists()
                      or (VAULT.parent / node.module.replace(".", "/") / f"{alias.name}.py").exists()}
    return found


MODULES = {module_name(path): ast.parse(path.read_text(encoding="utf-8")) for path in sorted(VAULT.rglob("*.py"))}


def test_every_part_of_vault_has_a_floor() -> None:
    """A new package or module gets its place in the house plan before it gets code."""
    assert {part_of(name) for name in MODULES} - set(FLOORS) == set()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_only_downward(module: str) -> None:
    """A part imports only the parts on lower floors (imports inside functions included)."""
    here = part_of(module)
    upward = sorted(name for name in imported(MODULES[module], top_level_only=False)
                    if part_of(name) != here and FLOORS[part_of(name)] >= FLOORS[here])
    assert upward == [], f"{module} imports {upward} (floor {FLOORS[here]})"


def test_the_key_hierarchy_imports_no_domain() -> None:
    """vault.crypto depends on nothing of the service but its settings."""
    reached = {part_of(name) for module, tree in MODULES.items() if part_of(module) == "crypto"
               for name in imported(tree, top_level_only=False)}
    assert reached <= {"crypto", "settings"}


def test_no_import_cycles() -> None:
    """No module imports itself back through others (module-level imports, as Python runs them)."""
    graph = {module: {name for name in imported(tree, top_level_only=True) if name in MODULES and name != module}
             for module, tree in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str] | None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path, module, target]
            if target not in state and (cycle := visit(target, [*path, module])):
                return cycle
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            assert (cycle := visit(module, [])) is None, " → ".join(cycle)
