"""No import cycles: between gpuprov's packages (facts, operations, engine, verify, rollout,
inventory, lab, cli, deploys...) and between modules. Read from the source with ast, so a
cycle hidden in a function-level import counts too; `if TYPE_CHECKING:` imports do not (they
never run). Facts sit below operations, deploys and the CLI and never import them."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# import package -> folder, as setup.py installs them
ROOTS = {"gpuprov": REPO / "gpuprov", "gpuprov.cli": REPO / "cli", "gpuprov.deploys": REPO / "deploys"}  # fmt: skip


def module_name(path: Path, roots: dict[str, Path]) -> str:
    for package, root in sorted(roots.items(), key=lambda kv: -len(kv[0])):
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise ValueError(path)


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imported(tree: ast.AST) -> set[str]:
    """Every absolute import in `tree` (module and module.name), outside TYPE_CHECKING."""
    out: set[str] = set()
    todo = [tree]
    while todo:
        node = todo.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return out


def module_graph(roots: dict[str, Path]) -> dict[str, set[str]]:
    paths = {module_name(p, roots): p for root in roots.values() for p in root.rglob("*.py")}
    return {
        name: {m for m in imported(ast.parse(path.read_text())) if m in paths and m != name}
        for name, path in paths.items()
    }


def package_of(module: str, roots: dict[str, Path]) -> str:
    """gpuprov.facts.files -> gpuprov.facts; gpuprov.cli.apply.staged -> gpuprov.cli;
    a top-level module (gpuprov.errors) is its own node."""
    base = min(roots, key=len)
    for package in sorted(roots, key=len, reverse=True):
        if package != base and (module == package or module.startswith(package + ".")):
            return package
    parts = module.split(".")
    return ".".join(parts[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def package_graph(modules: dict[str, set[str]], roots: dict[str, Path]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for module, targets in modules.items():
        source = package_of(module, roots)
        for target in targets:
            if package_of(target, roots) != source:
                out.setdefault(source, set()).add(package_of(target, roots))
    return out


def test_no_import_cycle_between_packages_or_modules():
    modules = module_graph(ROOTS)
    assert len(modules) > 100  # the whole tree was read
    assert cycles(package_graph(modules, ROOTS)) == []
    assert cycles(modules) == []


def test_facts_import_no_layer_above_them():
    modules = module_graph(ROOTS)
    above = ("gpuprov.operations", "gpuprov.deploys", "gpuprov.cli", "gpuprov.engine")
    bad = {
        (m, t)
        for m, targets in modules.items()
        if m.startswith("gpuprov.facts")
        for t in targets
        if t.startswith(above)
    }
    assert bad == set()


def test_the_check_finds_a_cycle_hidden_in_a_function(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x.py").write_text("import pkg.b.y\n")
    (tmp_path / "b" / "y.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.a.z\n"
        "def f():\n    from pkg.a.x import g\n"
    )
    (tmp_path / "a" / "z.py").write_text("")
    roots = {"pkg": tmp_path}
    modules = module_graph(roots)
    assert modules["pkg.b.y"] == {"pkg.a.x"}  # the TYPE_CHECKING import is not counted
    assert cycles(modules) == [["pkg.a.x", "pkg.b.y"]]
    assert cycles(package_graph(modules, roots)) == [["pkg.a", "pkg.b"]]
