"""orbitd's own modules import each other without a cycle; the board install (link/, flight/)
imports nothing from ground/, hil/, bench/ or tools/; the data sets import without scikit-learn or scipy.

The graph is built from the source with :mod:`ast` (nothing is imported). Every ``import`` and
``from ... import`` counts wherever it stands: at module level, inside a function (a lazy import) or
under ``if TYPE_CHECKING:``. Laziness only postpones a cycle to run time, and two modules that need
each other can be neither understood, tested nor moved apart one at a time.

An edge goes to the module named (``from pkg import sub`` names ``pkg.sub`` when that is a module of
its own) and to the packages Python initialises on the way (``import a.b.c`` runs ``a/__init__.py``
and ``a/b/__init__.py``), except the importer's own enclosing packages, which are already being
initialised when a submodule imports its sibling.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from tests.support import REPO

PACKAGES = ("link", "flight", "ground", "hil", "bench", "tools")
"""Top-level folders of orbitd's code whose import graph must be acyclic."""

BOARD_PACKAGES = ("link", "flight")
"""What the board install holds (pyproject's ``flightd``): it must not import the others."""

Graph = dict[str, set[str]]


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """{dotted module name: source file} of every ``.py`` under ``root/<package>``; a package's
    ``__init__.py`` is named by the package."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _resolve_from(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from X import ...`` statement reads from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(importer: str, path: Path, modules: Mapping[str, Path]) -> set[str]:
    """Modules of ``modules`` that running ``importer`` (source ``path``) may import, at any depth of
    its code (module level, functions, ``TYPE_CHECKING`` blocks)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    named: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(importer, path.name == "__init__.py", node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                named.add(sub if sub in modules else base)
    own = set(_ancestors(importer)) | {importer}
    edges: set[str] = set()
    for name in named:
        known = [m for m in [*_ancestors(name), name] if m in modules]
        edges.update(m for m in known if m not in own or m == name)
    edges.discard(importer)
    return edges


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
    """{module: modules it imports}, restricted to the modules under ``root/<package>``."""
    modules = module_files(root, packages)
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def _components(graph: Graph) -> list[list[str]]:
    """Strongly connected components of ``graph`` (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
    return found


def _shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, as a path that ends where it starts."""
    members = set(component)
    start = component[0]
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"{component} is not a cycle")


def import_cycles(graph: Graph) -> list[list[str]]:
    """One shortest cycle (``[a, b, ..., a]``) per group of modules that import each other."""
    return [_shortest_cycle(graph, c) for c in _components(graph) if len(c) > 1]


def _write(root: Path, files: Mapping[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_orbitd_has_no_import_cycle() -> None:
    graph = import_graph(REPO)
    assert {"flight.daemon", "ground.cli", "hil.scenario", "bench.quant", "tools.build_models"} <= graph.keys()
    assert "link.manifest" in graph["flight.registry"]
    cycles = import_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


def test_board_install_imports_only_link_and_flight() -> None:
    graph = import_graph(REPO)
    outside = {
        module: sorted(m for m in imported if m.split(".")[0] not in BOARD_PACKAGES)
        for module, imported in graph.items()
        if module.split(".")[0] in BOARD_PACKAGES
    }
    assert {module: names for module, names in outside.items() if names} == {}


def test_datasets_import_without_scikit_learn_or_scipy() -> None:
    code = (
        "import sys, ground.model.datasets; "
        "print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_a_lazy_import_cycle_is_found_and_named(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/cli.py": "from pkg.upload import send\n",
        "pkg/upload.py": "def send() -> None:\n    from pkg.cli import main\n",
        "pkg/plain.py": "import pkg.upload\n",
    })  # fmt: skip
    cycles = import_cycles(import_graph(tmp_path, ["pkg"]))
    assert cycles == [["pkg.cli", "pkg.upload", "pkg.cli"]]


def test_relative_type_checking_and_package_init_imports_count(tmp_path: Path) -> None:
    _write(tmp_path, {
        "a/__init__.py": "from a.plant import Plant\n",
        "a/plant.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .scenario import S\n",
        "a/scenario.py": "from . import battery\nimport b.x\n",
        "a/battery.py": "",
        "b/__init__.py": "",
        "b/x.py": "import a.battery\n",
    })  # fmt: skip
    graph = import_graph(tmp_path, ["a", "b"])
    assert graph["a.scenario"] == {"a.battery", "b", "b.x"}
    assert graph["b.x"] == {"a", "a.battery"}
    assert import_cycles(graph) == [["a", "a.plant", "a.scenario", "b.x", "a"]]
