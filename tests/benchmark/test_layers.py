"""The layers of docs/ARCHITECTURE.md, enforced on the import graph (every import, also inside functions).

base < data < methods < tasks < harness < reporting < interface (the Python API and the CLI): a module imports only
from its own layer or below, and above the plugin layers methods and tasks are reached through the registry (entry
strings), never imported, so an entry outside the package is no different from one inside it. No module imports
itself back through a circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
PACKAGES = ("benchmark", "methods", "tasks")
# (module prefix, layer); the longest matching prefix wins
LAYERS = {
    "benchmark.__init__": "base",         # the package itself: version and lazy API names
    "benchmark.contracts": "base", "benchmark.atomic": "base", "benchmark.locks": "base",
    "benchmark.hashing": "base", "benchmark.yamlio": "base", "benchmark.notice": "base",
    "benchmark.convergence": "base", "benchmark.stats": "base", "benchmark.results": "base",
    "benchmark.plots": "base", "benchmark.bounds": "base",
    "tasks.data": "data",
    "methods": "methods",
    "tasks": "tasks", "benchmark.builtin": "tasks",
    "benchmark.registry": "harness", "benchmark.spec": "harness", "benchmark.store": "harness",
    "benchmark.runner": "harness", "benchmark.planning": "harness", "benchmark.pretraining": "harness",
    "benchmark.world": "harness", "benchmark.executors": "harness", "benchmark.gridspec": "harness",
    "benchmark.budget": "harness", "benchmark.tracking": "harness",
    "benchmark.migrate": "harness", "benchmark.ui": "harness",
    "benchmark.tables": "reporting", "benchmark.claims": "reporting", "benchmark.paper_claims": "reporting",
    "benchmark.claims_narrow": "reporting", "benchmark.report": "reporting", "benchmark.report_plots": "reporting",
    "benchmark.perf_summary": "reporting", "benchmark.outputs": "reporting", "benchmark.factors": "reporting",
    "benchmark.__main__": "interface", "benchmark.commands": "interface", "benchmark.api": "interface",
}
ORDER = ["base", "data", "methods", "tasks", "harness", "reporting", "interface"]
PLUGINS = ("methods", "tasks")
KNOWN_CIRCLES: set[frozenset[str]] = set()


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the project modules it imports (relative imports resolved; `from pkg import mod` names mod)."""
    mods = modules()

    def known(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets |= {known(f"{base}.{a.name}") if f"{base}.{a.name}" in mods else known(base)
                            for a in node.names}
        graph[name] = {t for t in targets if t and t != name}
    return graph


def layer(module: str) -> str:
    module = "benchmark.__init__" if module == "benchmark" else module
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len, default=None)
    assert prefix is not None, f"{module} is in no layer: add it to LAYERS (and to docs/ARCHITECTURE.md)"
    return LAYERS[prefix]


def back_arrows(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in sorted(graph.items()):
        rank = ORDER.index(layer(source))
        for target in sorted(targets):
            to = layer(target)
            if ORDER.index(to) > rank:
                bad.append(f"{source} ({layer(source)}) -> {target} ({to})")
            elif to in PLUGINS and rank > ORDER.index("tasks"):
                bad.append(f"{source} ({layer(source)}) -> {target} ({to}): reach plugins through the registry")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer_and_no_import_points_up():
    assert back_arrows(import_graph()) == []


def test_no_import_circles():
    found = [c for c in circles(import_graph()) if frozenset(c) not in KNOWN_CIRCLES]
    assert found == []


def test_the_checks_catch_a_back_arrow_and_a_circle():
    """The checks on a made-up graph: a method importing the runner, two harness modules importing each other."""
    graph = {"methods.dcid": {"benchmark.runner"}, "benchmark.runner": {"benchmark.executors"},
             "benchmark.executors": {"benchmark.runner"}, "benchmark.commands.run": {"methods.dcid"}}
    assert back_arrows(graph) == [
        "benchmark.commands.run (interface) -> methods.dcid (methods): reach plugins through the registry",
        "methods.dcid (methods) -> benchmark.runner (harness)"]
    assert circles(graph) == [["benchmark.executors", "benchmark.runner"]]
