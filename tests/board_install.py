"""Which tests run on the board install (``pip install orbitd``: link/, flight/ and their packages).

scripts/test.sh runs the link/flight tests a second time under Python 3.10 (JetPack 6's Python) in a
virtual environment with the board install and the test runner only (``.[board-test]``), with
``ORBITD_BOARD_TESTS=1``. There, a test module is collected only when neither it (anywhere in its
code) nor the ``tests.*`` helpers it imports (at their module level, followed through) import the
ground, the simulator, the benches or tools (:data:`NOT_ON_THE_BOARD`), or a package this
interpreter cannot find (onnx, scipy, yaml, ...); a string naming one of those folders' modules
(``"ground.cli"``, run as ``python -m``) counts as an import. Nothing is imported to decide: the source is read
with :mod:`ast`.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import sys
from functools import cache
from pathlib import Path

TESTS = Path(__file__).resolve().parent

BOARD_TESTS = os.environ.get("ORBITD_BOARD_TESTS") == "1" or sys.version_info < (3, 11)
"""True in the board install's test run (ground/ and hil/ need Python 3.11: on 3.10 it is always that run)."""

NOT_ON_THE_BOARD = frozenset({"ground", "hil", "bench", "tools"})
"""orbitd's folders that the board install holds no packages for (their dependencies are extras)."""


RUN_MODULE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")
"""A string that names a module to run (``python -m ground.cli``): counted as an import of it."""


def _imports(path: Path, everywhere: bool) -> set[str]:
    """Dotted names ``path`` imports (absolute imports only) or names as a module to run: anywhere in its
    code, or at module level."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    nodes = ast.walk(tree) if everywhere else iter(tree.body)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and RUN_MODULE.match(node.value)
              and node.value.split(".")[0] in NOT_ON_THE_BOARD):
            names.add(node.value)
    return names


@cache
def _findable(top: str) -> bool:
    return importlib.util.find_spec(top) is not None


def needs_more_than_the_board(path: Path, everywhere: bool = True, seen: frozenset[Path] = frozenset()) -> bool:
    """True when the test module (or helper) at ``path`` imports something the board install lacks."""
    for name in _imports(path, everywhere):
        top = name.split(".")[0]
        if top == "tests":
            helper = TESTS / (name.split(".", 1)[1].replace(".", "/") + ".py") if "." in name else None
            if (helper is not None and helper.is_file() and helper not in seen
                    and needs_more_than_the_board(helper, False, seen | {path})):
                return True
        elif top in NOT_ON_THE_BOARD or not _findable(top):
            return True
    return False
