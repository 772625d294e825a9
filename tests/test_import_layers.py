"""The core's import graph: no cycles, and the command line is a leaf nobody else imports.

Walks every module of core/ess with ``ast`` (imports at module level and inside functions;
``if TYPE_CHECKING:`` blocks are left out, they never run), so a lazy import that closes a
circle is caught too. The flow is one way: ess.cli -> ess.api / ess.provision / ess.remote
-> backends, hooks and models.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core" / "ess"


def module_name(path: Path) -> str:
    parts = ["ess", *path.relative_to(CORE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for other in child.orelse:
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        visit(node)

    visit(tree)
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the ess modules it imports (``from . import x`` counts x when x is a module)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: set[str] = set()
        for node in runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                base = (
                    f"{base}.{node.module}"
                    if node.level and node.module
                    else (base if node.level else node.module or "")
                )
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := walk(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start)):
            return cycle
    return None


def test_core_has_no_import_cycle():
    graph = import_graph(core_modules())
    assert len(graph) > 20 and "ess.cli.instance" in graph
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


#: ``python -m ess``: an entry point, like the ``ess`` console script.
ENTRY_POINTS = {"ess.__main__"}


def test_nothing_outside_the_cli_package_imports_it():
    graph = import_graph(core_modules())
    assert "ess.cli" in graph["ess.__main__"]  # the walk sees the one import that is allowed
    offenders = sorted(
        f"{name} imports {target}"
        for name, targets in graph.items()
        if not (name == "ess.cli" or name.startswith("ess.cli.") or name in ENTRY_POINTS)
        for target in targets
        if target == "ess.cli" or target.startswith("ess.cli.")
    )
    assert offenders == []


def test_plugins_use_only_the_public_root_of_the_cli_package():
    """``ess.cli`` re-exports what a plugin needs (backend_command, backend_group, ...); its
    submodules are free to change, so no plugin imports them."""
    offenders = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in runtime_imports(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.startswith("ess.cli.")]
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        # the walker itself: a lazy import inside a function closes a circle; TYPE_CHECKING does not
        ({"ess.a": "from . import b\n", "ess.b": "def f():\n    from .a import x\n"}, ["ess.a", "ess.b", "ess.a"]),
        (
            {
                "ess.a": "from . import b\n",
                "ess.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n",
            },
            None,
        ),
    ],
)
def test_the_walk_sees_lazy_imports_and_skips_type_checking(tmp_path, source, expected):
    modules = {}
    for name, text in source.items():
        path = tmp_path / (name.split(".")[-1] + ".py")
        path.write_text(text)
        modules[name] = path
    assert find_cycle(import_graph(modules)) == expected
