"""The layering of the package, checked on the source: a forbidden import fails the suite.

    contract  <-  training  <-  export  <-  top (cli, pipeline, demo, bench, docs)
    contract  <-  service   <-  top
    contract  <-  client    <-  top      (the Python client: base install, no torch, no service)

Each layer may import itself and the layers to its left, never one to its right; the contract and
the service never import torch (the serving install has none); and no two modules import each
other, directly or through others. Imports inside functions count: a deferred import still
couples the layers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: installed package -> folder in the repository (pyproject's package-dir)
FOLDERS = {
    "uservec.training": ROOT / "training",
    "uservec.export": ROOT / "export",
    "uservec.service": ROOT / "service",
    "uservec": ROOT / "uservec",
}
TOP = ("uservec.cli", "uservec.pipeline", "uservec.demo", "uservec.bench", "uservec.docs",
       "uservec.embed", "uservec.launch")
ALLOWED = {
    "uservec.contract": ("uservec.contract",),
    "uservec.training": ("uservec.contract", "uservec.training"),
    "uservec.export": ("uservec.contract", "uservec.training", "uservec.export"),
    "uservec.service": ("uservec.contract", "uservec.service"),
    "uservec.client": ("uservec.contract", "uservec.client"),
}
TORCH_FREE = ("uservec.contract", "uservec.service", "uservec.client")


def _modules() -> dict[str, Path]:
    modules = {}
    for package, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join([package, *parts])
            modules.setdefault(name, path)
    return modules


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            # `from pkg import mod` imports the module pkg.mod when there is one
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield sub if sub in MODULES else base


def _layer(name: str) -> str | None:
    for layer in (*ALLOWED, *TOP):
        if name == layer or name.startswith(layer + "."):
            return layer
    return None


def _first_party(name: str) -> str | None:
    """The module of ours that an imported name points at (None: third party)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


GRAPH = {
    name: sorted({m for imp in _imports(name, path) if (m := _first_party(imp)) and m != name})
    for name, path in MODULES.items()
}


def test_every_module_belongs_to_a_layer() -> None:
    stray = [name for name in MODULES if name != "uservec" and _layer(name) is None]
    assert not stray, f"modules outside every layer (add them to tests/test_layers.py): {stray}"


@pytest.mark.parametrize("layer", list(ALLOWED))
def test_a_layer_imports_only_itself_and_the_layers_below(layer: str) -> None:
    allowed = ALLOWED[layer]
    bad = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items() if _layer(name) == layer
        for target in targets
        if target != "uservec" and not any(
            target == a or target.startswith(a + ".") for a in allowed)
    ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("layer", TORCH_FREE)
def test_the_contract_service_and_client_never_import_torch(layer: str) -> None:
    bad = [
        f"{name} imports {imp}"
        for name, path in MODULES.items() if _layer(name) == layer
        for imp in _imports(name, path) if imp.split(".")[0] == "torch"
    ]
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
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

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    # a package's __init__ importing its own modules is not a cycle of the design
    graph = {
        name: [t for t in targets if not (t.startswith(name + ".") or name.startswith(t + "."))]
        for name, targets in GRAPH.items()
    }
    assert _cycles(graph) == []


def test_the_check_sees_a_forbidden_import() -> None:
    """The checker itself: a service module that imported training would be reported."""
    graph = dict(GRAPH)
    graph["uservec.service.app"] = [*graph["uservec.service.app"], "uservec.training.model"]
    bad = [t for t in graph["uservec.service.app"]
           if t != "uservec" and _layer(t) not in ALLOWED["uservec.service"]]
    assert bad == ["uservec.training.model"]
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
