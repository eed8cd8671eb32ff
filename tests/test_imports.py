"""No import cycle among the project's modules, and components are found without the registry importing them.

The graph counts every import a module can execute: at module level, inside functions (a lazy import that hides a
cycle is still one), and the parent packages an import runs; only ``if TYPE_CHECKING:`` blocks are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "detectors", "sinks", "config")


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            parts = list(f.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = f
    return mods


def _targets(name: str, mods: dict[str, Path]) -> set[str]:
    """The project modules that importing ``name`` executes: it (or its closest package) and its parents."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts) + 1) if ".".join(parts[:i]) in mods}


def _imports_of(mod: str, path: Path, mods: dict[str, Path]) -> set[str]:
    deps: set[str] = set()
    package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]

    def visit(nodes: list[ast.stmt] | list[ast.AST]) -> None:
        for child in nodes:
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                visit(child.orelse)
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    deps.update(_targets(alias.name, mods))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package[: len(package) - child.level + 1] + ([base] if base else []))
                deps.update(_targets(base, mods))
                for alias in child.names:  # ``from pkg import module``
                    deps.update(_targets(f"{base}.{alias.name}", mods))
            else:
                visit(list(ast.iter_child_nodes(child)))

    visit(ast.parse(path.read_text(), str(path)).body)
    deps.discard(mod)
    return deps


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {mod: _imports_of(mod, path, mods) for mod, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        found.append(sorted(comp))
    return found


def test_the_walker_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports() -> None:
    graph = import_graph()
    assert "agent.sources.kafka_scale" in graph["agent.topology"]  # imported inside a method
    assert "agent.registry" in graph["agent.sources.file"]
    assert "agent.sources" in graph["agent.sources.file"]  # the parent package runs first


def test_no_import_cycle_among_the_projects_modules() -> None:
    assert cycles(import_graph()) == []


def test_the_registry_finds_the_builtin_components_without_importing_them_by_name() -> None:
    from agent import registry

    graph = import_graph()
    assert not graph["agent.registry"] - {"agent"}, graph["agent.registry"]
    assert {"file", "kafka", "s3_export", "blob_export"} <= set(registry.components("source"))
    assert {"bedrock", "dcgm", "focus", "cur", "azure_cost", "billing", "json"} <= set(registry.components("decoder"))
    assert {"seasonal", "threshold", "budget"} <= set(registry.components("detector"))
    assert {"console", "jsonl", "prometheus", "webhook"} <= set(registry.components("sink"))
