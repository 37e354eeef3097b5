"""The handler modules form layers: no circle of imports among them (counting the imports placed
inside functions, which only hide a circle from the import machinery), and none imports another
module's private (`_name`) names. Every module must also import on its own."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import governance.handlers

HANDLERS = Path(governance.handlers.__file__).parent
MODULES = sorted(p.stem for p in HANDLERS.glob("*.py") if p.stem != "__init__")


def imports(module: str) -> list[tuple[str, list[str]]]:
    """(imported module, names) of every import in the handler module, at any depth; module names are
    absolute (governance.handlers.x)."""
    tree = ast.parse((HANDLERS / f"{module}.py").read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = "governance.handlers".split(".")[: 2 - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            if not node.module:  # from . import x: each name is a module
                found += [(f"{target}.{n}", []) for n in names]
            else:
                found.append((target, names))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def handler_graph() -> dict[str, set[str]]:
    prefix = "governance.handlers."
    return {m: {t[len(prefix):] for t, _ in imports(m) if t.startswith(prefix) and t[len(prefix):] in MODULES}
            for m in MODULES}


def test_the_parser_sees_what_a_module_imports() -> None:
    graph = handler_graph()
    assert "kube" in graph["jobs"] and "jobs" in graph["sessions"] and "apiwrites" in graph["kube"]


@pytest.mark.parametrize("module", MODULES)
def test_every_handler_module_imports(module: str) -> None:
    importlib.import_module(f"governance.handlers.{module}")


def test_no_private_name_is_imported_from_another_module() -> None:
    private = [f"{m}: from {target} import {name}" for m in MODULES for target, names in imports(m)
               if target.startswith("governance.") for name in names if name.startswith("_")]
    assert private == []


def test_the_handler_modules_import_each_other_without_a_circle() -> None:
    graph = handler_graph()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            visit(module, [module])
    assert circles == []
