"""sapo_core modules import downwards only: the graph of their imports of each other has no cycle.

Every `import` statement counts, at module level and inside functions alike: an import moved into a function
to dodge a circle is still a circle (STYLE 16).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sapo_core"


def module_name(path: Path) -> str:
    """The dotted name of a source file of the package (a package's __init__.py is the package)."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    """Every module of sapo_core by dotted name."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    """The sapo_core modules a module's import statements (anywhere in it) name."""
    found = set()
    here = name if is_package else name.rpartition(".")[0]  # the package relative imports start from
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                base = f"{anchor}.{base}" if base else anchor
            # `from pkg import mod` imports the module pkg.mod; `from mod import obj` imports mod.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known)
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the sapo_core modules it imports."""
    mods = modules()
    known = set(mods)
    return {name: imported(ast.parse(path.read_text(encoding="utf-8"), str(path)), name,
                           path.name == "__init__.py", known) for name, path in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a closed path [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_in_sapo_core():
    graph = import_graph()
    assert len(graph) > 10 and "sapo_core.evaluate" in graph and graph["sapo_core.evaluate"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in sapo_core: " + " -> ".join(cycle)


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": {"b2"}, "b2": {"b"}}, ["b", "b2", "b"]),
])
def test_find_cycle_finds_a_planted_cycle(graph, expected):
    assert find_cycle(graph) == expected


def test_function_level_imports_count():
    tree = ast.parse("def f():\n    from sapo_core import config\n\nfrom sapo_core.paths import runs_dir\n")
    known = {"sapo_core", "sapo_core.config", "sapo_core.paths", "sapo_core.evaluate"}
    assert imported(tree, "sapo_core.evaluate", False, known) == {"sapo_core.config", "sapo_core.paths"}
