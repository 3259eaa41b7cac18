"""The package's shape: no import cycle among gear_hpc's modules, and no layer importing one above it.

Only imports at module level count (an import inside a function runs when
it is called, and is how cli/ and the fast path keep their start-up cheap);
so do imports under `if TYPE_CHECKING:`, which a type checker follows.
"""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGE = REPO / "gear_hpc"
SKIP = ("templates", "devcluster")  # data and scripts, not the library


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))
            if not any(part in SKIP for part in p.relative_to(PACKAGE).parts)}


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        nodes = [node]
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks
            nodes = list(node.body)
        for item in nodes:
            if isinstance(item, ast.Import):
                found.update(alias.name for alias in item.names)
            elif isinstance(item, ast.ImportFrom):
                if item.level:
                    base = package.split(".")[: len(package.split(".")) - (item.level - 1)]
                    target = ".".join(base + ([item.module] if item.module else []))
                else:
                    target = item.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in item.names)  # `from pkg import module`
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _top_level_imports(name, path, set(modules)) for name, path in modules.items()}


def test_no_import_cycle_among_gear_hpc_modules():
    graph = _graph()
    assert len(graph) > 30 and "gear_hpc.cli.fastpath" in graph
    done: set[str] = set()
    stack: list[str] = []

    def visit(name: str) -> None:
        if name in stack:
            cycle = stack[stack.index(name):] + [name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if name in done:
            return
        stack.append(name)
        for target in sorted(graph[name]):
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_the_cycle_finder_sees_a_cycle(tmp_path):
    # The check above is only as good as its parse: a known cycle must be found.
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("if TYPE_CHECKING:\n    from .a import thing\n")
    known = {"p.a", "p.b"}
    assert _top_level_imports("p.a", tmp_path / "a.py", known) == {"p.b"}
    assert _top_level_imports("p.b", tmp_path / "b.py", known) == {"p.a"}


# Layers, lowest first (docs/design.md): a module may import its own layer and those below, never above.
LAYERS = {
    "base": 0, "image_manifest": 0,
    "storage": 1, "slurm": 1, "site": 1, "ledger": 1,
    "notify": 2, "data": 2, "executions": 2, "containers": 2, "project": 2, "tuning": 2,
    "cli": 3, "ood": 3, "__main__": 3, "devcluster": 3,
}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_no_layer_imports_one_above_it():
    """Every import counts here, in function bodies too: a lazy import is still a dependency."""
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        package = name if is_package else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) and not isinstance(node, ast.Import):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] + [f"{target}.{alias.name}" for alias in node.names]
            else:
                targets = [node.module or ""] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                mine, theirs = _layer(name), _layer(target)
                if mine is not None and theirs is not None and theirs > mine:
                    wrong.append(f"{name} imports {target}")
    assert wrong == []
