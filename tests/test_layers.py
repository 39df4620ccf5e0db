"""The layers point one way and no module imports itself back, read from every module's imports with ast
(imports inside functions and under TYPE_CHECKING count too: they are dependencies all the same).

A module may import its own layer and the layers below it. A new top-level module or subpackage gets its
layer in `LAYERS` below (the test names any that has none).
"""
from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mpi_support import REPO

# the import name of each folder that installs into the package (pyproject.toml's package-dir)
ROOTS = {"hpcsynth": REPO / "hpcsynth", "hpcsynth.kernels": REPO / "kernels", "hpcsynth.jobs": REPO / "jobs",
         "hpcsynth.slurm": REPO / "slurm"}

ORDER = ["utilities", "comm", "data", "models", "federated", "evaluate", "io", "app"]
LAYERS = {
    "hpcsynth": "utilities",  # the package's __init__ only; every module in it is named below
    "hpcsynth.messages": "utilities",
    "hpcsynth.files": "utilities",
    "hpcsynth.comm": "comm",
    "hpcsynth.virtual_sites": "comm",  # several sites per rank: a communicator over threads and ranks
    "hpcsynth.kernels": "comm",  # beside the communicator: usable by every layer
    "hpcsynth.data": "data",
    "hpcsynth.models": "models",
    "hpcsynth.federated": "federated",
    "hpcsynth.evaluate": "evaluate",
    "hpcsynth.io": "io",
    **{f"hpcsynth.{name}": "app" for name in ("config", "cli", "launch", "jobs", "submit", "slurm_glue",
                                              "slurm", "scale", "collect", "tune")},
}


@dataclass(frozen=True)
class Import:
    """One import statement's target module, where it is written."""

    source: str
    target: str
    where: str


def _modules() -> dict[str, Path]:
    found = {}
    for package, root in ROOTS.items():
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()


def layer(module: str) -> str | None:
    """The layer of the longest entry of `LAYERS` that names the module or a package above it (the bare
    package name only counts for the package itself)."""
    parts = module.split(".")
    for n in range(len(parts), 1 if len(parts) > 1 else 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    return None


def _known(name: str) -> str | None:
    """The project module `name` refers to (a name inside a module refers to the module), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:  # relative: counted from the module's package
        package = module.split(".")
        package = package if path.name == "__init__.py" else package[:-1]
        base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
    yield base
    yield from (f"{base}.{alias.name}" for alias in node.names)


def imports(module: str) -> list[Import]:
    """The project modules `module` imports, anywhere in its body; never itself or a package above it."""
    path = MODULES[module]
    found = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for name in _targets(module, path, node):
                target = _known(name)
                if target and target != module and not module.startswith(f"{target}."):
                    found.setdefault(target, Import(module, target, f"{path.relative_to(REPO)}:{node.lineno}"))
    return list(found.values())


def test_every_module_has_a_layer():
    assert [m for m in MODULES if layer(m) is None] == [], "add these modules to LAYERS in tests/test_layers.py"


@pytest.mark.parametrize("name", ORDER)
def test_a_layer_imports_only_itself_and_the_layers_below(name):
    upward = [f"{i.where}: {i.source} ({name}) imports {i.target} ({layer(i.target)})"
              for module in MODULES if layer(module) == name for i in imports(module)
              if layer(i.target) is not None and ORDER.index(layer(i.target)) > ORDER.index(name)]
    assert upward == [], "imports that point up:\n" + "\n".join(upward)


def cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in (i.target for i in graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while not component or component[-1] != v:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    graph = {module: imports(module) for module in MODULES}
    report = []
    for component in cycles(graph):
        report.append(" <-> ".join(component))
        report += [f"    {i.where}: {i.source} imports {i.target}" for m in component for i in graph[m]
                   if i.target in component]
    assert report == [], "import cycles:\n" + "\n".join(report)


def test_the_checks_see_a_cycle_and_an_upward_import():
    graph = {"a": [Import("a", "b", "a.py:1")], "b": [Import("b", "a", "b.py:1")], "c": []}
    assert cycles(graph) == [["a", "b"]]
    assert layer("hpcsynth.models.tvae") == "models" and layer("hpcsynth.jobs.train") == "app"
    assert layer("hpcsynth.unlisted") is None and layer("hpcsynth") == "utilities"
    assert any(i.target == "hpcsynth.launch" for i in imports("hpcsynth.slurm_glue"))
