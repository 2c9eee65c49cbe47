"""The package's architecture, read from its own imports: one-way layers, no import loops.

Every ``import`` and ``from … import`` of the library — at module level *and* inside functions —
is parsed with ``ast`` into a graph of modules. Data flows one way:

    checks, runtime, cli → kernels, metrics → physics, data → synthesis, classical → learned, first_stage
    → zoo → train → bench → experiments, course, show

A module may import modules of a lower layer, and modules of its own package in the same layer
(``bench.run`` → ``bench.protocol``); never upwards, never sideways into another package of its
layer (``physics`` never imports ``data``), never in a loop, never by a name in a string.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "deblur_edu"

LAYERS = [
    {"checks", "runtime", "cli", "results"},
    {"kernels", "metrics"},
    {"physics", "data"},
    {"synthesis", "classical"},
    {"learned", "first_stage"},
    {"zoo"},
    {"train"},
    {"bench"},
    {"experiments", "course", "show"},
]


def module_name(path: Path) -> str:
    parts = ["deblur_edu", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(module: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The library modules one import statement reaches (a name that is a submodule counts as it)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "deblur_edu"]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != "deblur_edu":
            return []
    else:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        found.append(sub if sub in MODULES else base)
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges.update(t for t in resolve(name, path.name == "__init__.py", node) if t != name)
        graph[name] = edges
    return graph


GRAPH = import_graph()


def group(module: str) -> str:
    """The top-level module or package below ``deblur_edu`` (``bench`` for ``deblur_edu.bench.run``)."""
    return module.split(".")[1] if module != "deblur_edu" else ""


def layer(module: str) -> int:
    for i, names in enumerate(LAYERS):
        if group(module) in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS")


def test_every_module_has_a_layer():
    for module in GRAPH:
        if module != "deblur_edu":
            layer(module)


def test_the_import_graph_has_no_loop():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                loop = path[path.index(target):] + [target] if target in path else [module, target]
                pytest.fail("import loop: " + " → ".join(loop))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_imports_only_flow_down_the_layers():
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            if module == "deblur_edu" and target != "deblur_edu":
                continue  # the package's front door re-exports the basics
            if target == "deblur_edu":
                wrong.append(f"{module} imports the package itself")
            elif layer(target) > layer(module):
                wrong.append(f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})")
            elif layer(target) == layer(module) and group(target) != group(module):
                wrong.append(f"{module} imports {target} beside it in layer {layer(module)}")
    assert not wrong, "\n".join(sorted(wrong))


@pytest.mark.parametrize("low, high", [("learned", "bench"), ("learned", "zoo"), ("learned", "train"),
                                       ("physics", "data"), ("classical", "learned"), ("data", "physics"),
                                       ("kernels", "data")])
def test_named_boundaries_hold(low, high):
    crossing = [f"{m} → {t}" for m, targets in GRAPH.items() for t in targets if group(m) == low and group(t) == high]
    assert not crossing, crossing


def test_no_import_hides_in_a_function_or_a_string():
    """Imports of the library sit at the top of each module (none inside a function to dodge a
    loop), and nothing imports by name at run time (a registry the graph cannot see)."""
    hidden = []
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)) and resolve(name, path.name == "__init__.py", inner):
                        hidden.append(f"{name}.{node.name} imports {resolve(name, path.name == '__init__.py', inner)}")
            if isinstance(node, ast.Call):
                f = node.func
                called = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                if called in ("import_module", "__import__"):
                    hidden.append(f"{name} imports by name at run time")
    assert not hidden, "\n".join(hidden)


def test_the_test_can_see_a_loop(tmp_path, monkeypatch):
    """The loop detector itself: a two-module loop planted in the graph is found."""
    monkeypatch.setitem(GRAPH, "deblur_edu.physics", GRAPH["deblur_edu.physics"] | {"deblur_edu.data"})
    monkeypatch.setitem(GRAPH, "deblur_edu.data", GRAPH["deblur_edu.data"] | {"deblur_edu.physics"})
    with pytest.raises(pytest.fail.Exception, match="import loop"):
        test_the_import_graph_has_no_loop()
