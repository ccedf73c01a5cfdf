"""The package import graph follows the pipeline: a module imports only modules of its own layer or
of layers before it (module-level and function-level imports alike), so there are no cycles between
packages.  See the README's layout section for what each layer holds."""

from __future__ import annotations

import ast
from pathlib import Path

import mtlens

SRC = Path(mtlens.__file__).parent

LAYERS = [
    "errors",
    "states",
    "registry",
    "plugins",
    "seeding",
    "quantities",
    "store",
    "data",
    "tasks",
    "models",
    "gradients",
    "settings",
    "aggregators",
    "probes",
    "training",
    "integrations",
    "analysis",
    "render",
    "orchestration",
    "experiments",
    "report",
    "cli",
    "",
]
"""Layers in pipeline order: the top-level module or package of ``mtlens`` each stands for (``""``: the
package's own ``__init__``, the public API, which may import anything)."""

PURE = {"analysis": {"analysis", "tasks", "errors", "states", "quantities"}}
"""Layers that may import only the listed layers: analysis is table-in / table-out (no models, settings, store)."""


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _module_name(path: Path) -> str:
    relative = path.relative_to(SRC.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, int]]:
    """``(imported mtlens module, line)`` of every ``import`` statement in ``path``, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names if alias.name.startswith("mtlens")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("mtlens"):
            found.append((node.module, node.lineno))
    return found


def edges() -> list[tuple[str, str, int]]:
    return [(_module_name(path), target, line) for path in sorted(SRC.rglob("*.py")) for target, line in imports(path)]


def test_every_module_belongs_to_a_layer():
    layers = {_layer(_module_name(path)) for path in SRC.rglob("*.py")}
    assert layers <= set(LAYERS), f"modules outside every layer: {sorted(layers - set(LAYERS))}; add them to LAYERS"


def test_imports_point_to_earlier_layers_only():
    order = {name: i for i, name in enumerate(LAYERS)}
    upward = [
        f"{source}:{line} imports {target}"
        for source, target, line in edges()
        if order[_layer(target)] > order[_layer(source)]
    ]
    assert not upward, "imports against the pipeline order:\n" + "\n".join(upward)


def test_pure_layers_import_only_what_they_may():
    impure = [
        f"{source}:{line} imports {target}"
        for source, target, line in edges()
        if _layer(source) in PURE and _layer(target) not in PURE[_layer(source)]
    ]
    assert not impure, "table-in/table-out layers importing models, settings or the store:\n" + "\n".join(impure)


def test_module_graph_is_acyclic():
    """No cycle between modules either (within a layer too), counting imports of a package as its ``__init__``."""
    graph: dict[str, set[str]] = {}
    for source, target, _ in edges():
        if source != target:
            graph.setdefault(source, set()).add(target)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                raise AssertionError(
                    "import cycle: " + " -> ".join(path[path.index(nxt) :] + [nxt])
                    if nxt in path
                    else f"import cycle through {nxt}"
                )
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in list(graph):
        if node not in state:
            visit(node, [node])


def test_the_checker_sees_function_level_imports(tmp_path):
    """The parser counts imports inside functions, not only at module level."""
    source = tmp_path / "m.py"
    source.write_text("import os\n\ndef f():\n    from mtlens.report import x\n    import mtlens.cli\n")
    assert imports(source) == [("mtlens.report", 4), ("mtlens.cli", 5)]
