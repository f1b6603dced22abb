"""The package's import graph: no cycles, a self-contained sandbox, and imports pointing one way.

The layers, top to bottom (a module may import its own layer and the layers below it)::

    cli/ (and batch_provisioner/__main__)      the only place that may use typer/click/rich UI
    batch_provisioner/__init__, library        the public library
    run/
    api/   sheet/   report/                    report/ may import sheet/; otherwise siblings
    models, errors, settings, safety, logs     shared root modules
    sandbox/                                   the other side of the wire: imports only itself

The graph is built from the AST of every module: every ``import`` / ``from`` statement,
including those inside functions, except the ones under ``if TYPE_CHECKING:``. ``from a.b
import c`` is an edge to ``a.b.c`` when ``c`` is a module, else to ``a.b``. Importing a
submodule runs its package's ``__init__`` too, but that is not an edge: a package ``__init__``
importing its own submodules is normal, a submodule importing the ``__init__`` back is a cycle.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

import batch_provisioner

PACKAGE = "batch_provisioner"
ROOT = Path(batch_provisioner.__file__).resolve().parent.parent
SHARED = frozenset({"models", "errors", "settings", "safety", "logs"})
STAGES = frozenset({"cli", "run", "api", "sheet", "report", "sandbox"})
UI_MODULES = ("typer", "click", "rich.console", "rich.progress", "rich.table")
# Layer -> the layers it must not import (``sandbox`` is checked on its own: only itself).
FORBIDDEN: dict[str, frozenset[str]] = {
    "library": frozenset({"cli"}),
    "run": frozenset({"cli", "library"}),
    "api": frozenset({"run", "cli", "library"}),
    "sheet": frozenset({"run", "cli", "library"}),
    "report": frozenset({"run", "cli", "library"}),
    "shared": frozenset({"run", "cli", "library", "api", "sheet", "report", "sandbox"}),
}
# The middle stages are siblings, except that report/ may read what sheet/ defines.
SIBLINGS = frozenset({"api", "sheet", "report"})
SIBLING_ALLOWED = {("report", "sheet")}


@dataclass(frozen=True, order=True)
class Edge:
    source: str
    target: str
    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.source} -> {self.target}"


@dataclass(frozen=True)
class Graph:
    modules: dict[str, Path]  # module name -> its file
    import_errors: list[str]
    edges: list[Edge]  # every import, internal and external

    def __repr__(self) -> str:  # pytest prints the fixture: keep failures readable
        return f"<Graph: {len(self.modules)} modules, {len(self.edges)} imports>"

    def internal(self) -> list[Edge]:
        return [e for e in self.edges if e.target in self.modules and e.target != e.source]


def _discover() -> tuple[dict[str, Path], list[str]]:
    """Every module of the package, imported (walk_packages descends into subpackages)."""
    modules = {PACKAGE: Path(batch_provisioner.__file__)}
    errors: list[str] = []
    for info in pkgutil.walk_packages(
        batch_provisioner.__path__, PACKAGE + ".", onerror=lambda name: errors.append(name)
    ):
        try:
            module = importlib.import_module(info.name)
        except Exception as exc:  # reported by test_every_module_imports
            errors.append(f"{info.name}: {type(exc).__name__}: {exc}")
            spec = importlib.util.find_spec(info.name)
            origin = spec.origin if spec is not None else None
        else:
            origin = module.__file__
        if origin is not None and origin.endswith(".py"):
            modules[info.name] = Path(origin)
    return modules, errors


@cache
def _external_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: Iterable[str]) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = set(modules)
        self.found: list[tuple[str, int]] = []

    def _is_module(self, name: str) -> bool:
        if name == PACKAGE or name.startswith(PACKAGE + "."):
            return name in self.modules
        return _external_module(name)

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
        ):
            for child in node.orelse:  # only the body is for the type checker
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.found += [(alias.name, node.lineno) for alias in node.names]

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            base = importlib.util.resolve_name("." * node.level + base, self.package)
        if base == "__future__":
            return
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if alias.name != "*" and self._is_module(submodule):
                self.found.append((submodule, node.lineno))
            else:
                self.found.append((base, node.lineno))


def _build() -> Graph:
    modules, errors = _discover()
    edges: set[Edge] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        visitor = _Imports(name, path.name == "__init__.py", modules)
        visitor.visit(tree)
        shown = path.resolve().relative_to(ROOT).as_posix()
        edges |= {Edge(name, target, shown, line) for target, line in visitor.found}
    return Graph(modules, errors, sorted(edges))


@pytest.fixture(scope="module")
def graph() -> Graph:
    return _build()


def layer(module: str) -> str | None:
    """The layer a batch_provisioner module belongs to; None for one nobody placed yet."""
    parts = module.split(".")
    if module == PACKAGE or parts[1] == "library":
        return "library"
    if parts[1] == "__main__":
        return "cli"  # ``python -m batch_provisioner``: an entry point, like the console script
    if parts[1] in STAGES:
        return parts[1]
    if parts[1] in SHARED and len(parts) == 2:
        return "shared"
    return None


def _listing(edges: Iterable[Edge]) -> str:
    return "\n".join(f"  {edge}" for edge in sorted(edges))


def _strongly_connected(nodes: Iterable[str], edges: list[Edge]) -> list[list[str]]:
    """Tarjan's algorithm; the components with more than one module, each sorted."""
    successors: dict[str, set[str]] = {}
    for edge in edges:
        successors.setdefault(edge.source, set()).add(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(successors.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(found)


def _one_cycle(start: str, members: set[str], edges: list[Edge]) -> list[str]:
    """A shortest cycle through ``start`` inside one strongly connected component."""
    successors: dict[str, list[str]] = {}
    for edge in edges:
        if edge.source in members and edge.target in members:
            successors.setdefault(edge.source, []).append(edge.target)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for nxt in sorted(set(successors.get(node, ()))):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    return [start]


def test_every_module_imports(graph: Graph) -> None:
    assert graph.import_errors == [], "modules that fail to import:\n" + "\n".join(
        graph.import_errors
    )
    assert {f"{PACKAGE}.sandbox.cli", f"{PACKAGE}.cli.sandbox", f"{PACKAGE}.models"} <= set(
        graph.modules
    )


def test_the_visitor_reads_what_python_would_import() -> None:
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "import json\n"
        "from . import logs\n"
        "from ..sheet import read, ROW\n"
        "if TYPE_CHECKING:\n"
        "    from batch_provisioner.run import plan\n"
        "else:\n"
        "    import rich.table\n"
        "def later():\n"
        "    from batch_provisioner.sandbox import run_in_thread\n"
    )
    modules = {f"{PACKAGE}.api.x", f"{PACKAGE}.api.logs", f"{PACKAGE}.sheet",
               f"{PACKAGE}.sheet.read", f"{PACKAGE}.run.plan", f"{PACKAGE}.sandbox"}
    visitor = _Imports(f"{PACKAGE}.api.x", False, modules)
    visitor.visit(ast.parse(source))
    assert [name for name, _ in visitor.found] == [
        "typing", "json", f"{PACKAGE}.api.logs", f"{PACKAGE}.sheet.read", f"{PACKAGE}.sheet",
        "rich.table", f"{PACKAGE}.sandbox",
    ]


def test_no_import_cycles(graph: Graph) -> None:
    internal = graph.internal()
    problems: list[str] = []
    for component in _strongly_connected(graph.modules, internal):
        members = set(component)
        cycle = " -> ".join(_one_cycle(component[0], members, internal))
        inside = [e for e in internal if e.source in members and e.target in members]
        problems.append(f"cycle among {', '.join(component)}\n  e.g. {cycle}\n"
                        f"  edges inside it:\n{_listing(inside)}")
    assert problems == [], "import cycles:\n" + "\n".join(problems)


def test_sandbox_imports_only_itself(graph: Graph) -> None:
    sandbox = f"{PACKAGE}.sandbox"
    bad = [
        e for e in graph.edges
        if layer(e.source) == "sandbox"
        and (e.target == PACKAGE or e.target.startswith(PACKAGE + "."))
        and not (e.target == sandbox or e.target.startswith(sandbox + "."))
    ]
    assert bad == [], "sandbox/ imports the rest of batch_provisioner:\n" + _listing(bad)


def test_only_cli_imports_the_terminal_ui(graph: Graph) -> None:
    def is_ui(target: str) -> bool:
        return any(target == ui or target.startswith(ui + ".") for ui in UI_MODULES)

    bad = [e for e in graph.edges if layer(e.source) != "cli" and is_ui(e.target)]
    assert bad == [], f"only cli/ may import {', '.join(UI_MODULES)}:\n" + _listing(bad)


def test_every_module_has_a_layer(graph: Graph) -> None:
    unplaced = sorted(name for name in graph.modules if layer(name) is None)
    assert unplaced == [], f"modules outside every layer (place them in this test): {unplaced}"


def test_imports_point_down_the_layers(graph: Graph) -> None:
    bad: list[str] = []
    for edge in graph.internal():
        source, target = layer(edge.source), layer(edge.target)
        if source in FORBIDDEN and target in FORBIDDEN[source]:
            bad.append(f"  {edge}   ({source} must not import {target})")
    assert bad == [], "imports pointing up the layers:\n" + "\n".join(sorted(bad))


def test_api_sheet_and_report_stay_siblings(graph: Graph) -> None:
    bad: list[str] = []
    for edge in graph.internal():
        source, target = layer(edge.source), layer(edge.target)
        if (source in SIBLINGS and target in SIBLINGS and source != target
                and (source, target) not in SIBLING_ALLOWED):
            bad.append(f"  {edge}   ({source} must not import {target})")
    assert bad == [], "imports between sibling stages:\n" + "\n".join(sorted(bad))
