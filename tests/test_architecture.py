"""The package's structure stays easy to change: small modules, narrow seams, no import cycle.

* no module of ``skrec/`` is longer than 800 lines;
* no module imports a private name (``_name``) from another package: what crosses a package
  boundary is public (a protocol, a documented helper);
* the import graph of ``skrec`` has no cycle, counting imports inside functions (lazy ones)
  and leaving out those under ``if TYPE_CHECKING:`` (type-only).

See ``DESIGN.md`` (the layout, one paragraph per module).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "skrec"
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _package(name: str) -> str:
    return name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]


def _imports(name: str) -> list[tuple[str, str]]:
    """``(imported module, imported name)`` of every skrec import of a module, type-only
    imports left out (``name`` is ``""`` for ``import x``)."""
    tree = ast.parse(MODULES[name].read_text())
    type_only = {id(sub) for node in ast.walk(tree)
                 if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                 for sub in ast.walk(node)}
    out = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package(name)
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != "skrec":
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                out.append((full, "") if full in MODULES else (target, alias.name))
        elif isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "skrec"]
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    n_lines = MODULES[name].read_text().count("\n")
    assert n_lines <= MAX_LINES, f"{name} has {n_lines} lines: split it by job"


def test_no_private_name_crosses_a_package():
    crossing = [(name, target, imported) for name in MODULES
                for target, imported in _imports(name)
                if imported.startswith("_") and not imported.startswith("__")
                and target in MODULES and _package(name) != _package(target)]
    assert crossing == []


def test_the_import_graph_has_no_cycle():
    graph = {name: {t for t, _ in _imports(name) if t in MODULES and t != name}
             for name in MODULES}
    done, path, cycles = set(), [], []

    def visit(node):
        if node in path:
            cycles.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)

    for node in sorted(graph):
        visit(node)
    assert cycles == []
