"""The rooms of the code and their doors: which package may import which, and no circles.

Every ``import`` in the project's packages is read with :mod:`ast` (function-level imports
included; imports only for type checking left out) and checked against the layering that
ARCHITECTURE.md describes.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ALLOWED: dict[str, set[str]] = {
    "models": {"models"},
    "connectors": {"connectors", "models"},
    "sinks": {"sinks", "models"},
    "pipelines": {"pipelines", "connectors", "sinks", "models"},
    "api": {"api", "models"},
    "evaluation": {"evaluation", "models", "connectors"},
    "triage": {"triage", "evaluation", "pipelines", "connectors", "sinks", "models", "api"},
}
"""Package → the project packages its modules may import."""

TRIAGE_ROOMS: dict[str, set[str]] = {
    "triage": {"triage", "triage.jobs"},
    "triage.jobs": {"triage", "triage.jobs"},
    "triage.tools": {"triage", "triage.jobs", "triage.tools"},
    "triage.cli": {"triage", "triage.jobs", "triage.tools", "triage.cli"},
}
"""Rooms of the application → the rooms its modules may import. The top of ``triage`` is
the composition of a run (the runtime starts the job scheduler); the command line is the
outermost room, and ``python -m triage`` (``triage.__main__``) belongs to it."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Project modules imported by one file, outside ``if TYPE_CHECKING:`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _type_checking_only(node):
            skipped |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.split(".")[0] in ALLOWED}


def _graph() -> dict[str, set[str]]:
    files = [p for package in ALLOWED for p in (ROOT / package).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        # ``from a.b import c`` names a module a.b.c when it exists, else the module a.b.
        graph[name] = {target for target in _imports(path) if target in modules} - {name}
    return graph


def test_packages_import_only_through_their_doors() -> None:
    graph = _graph()
    # The reading sees real edges: module-level, from-imports and function-level ones.
    assert "models.codecs" in graph["sinks.redis"]
    assert "triage.stack" in graph["triage.cli.keys"]
    assert "models.routing" in graph["evaluation.simulation"]
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] not in ALLOWED[module.split(".")[0]]
    )
    assert wrong == []


def _triage_room(module: str) -> str:
    if module == "triage.__main__":
        return "triage.cli"
    parts = module.split(".")
    return ".".join(parts[:2]) if ".".join(parts[:2]) in TRIAGE_ROOMS else "triage"


def test_application_rooms_import_only_through_their_doors() -> None:
    graph = {m: t for m, t in _graph().items() if m.split(".")[0] == "triage"}
    assert "triage.jobs.scheduler" in graph["triage.runtime"]
    assert "triage.tools.demo" in graph["triage.cli.commands"]
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if target.split(".")[0] == "triage"
        and _triage_room(target) not in TRIAGE_ROOMS[_triage_room(module)]
    )
    assert wrong == []


def test_no_import_circles() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert circles == []
