"""The curated public API: every ``mtlens`` name the README, the docs and the examples import is importable,
comes from a public module (no ``_private`` module in the path) and, where that module curates its names
with ``__all__``, is listed there; every package's ``__all__`` names what it has."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import mtlens

ROOT = Path(__file__).parents[1]
SRC = Path(mtlens.__file__).parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").glob("*.py"))]

UNCURATED = {"mtlens.integrations", "mtlens.report"}
"""Packages without ``__all__``: ``integrations`` holds one module per optional library (importing them all
would need every extra), ``report`` holds the report's modules (its Python API is ``mtlens.load`` / ``study``)."""


def _python_sources(path: Path) -> list[str]:
    """The Python code of ``path``: the file itself, or a Markdown file's ``python`` blocks."""
    text = path.read_text()
    if path.suffix == ".py":
        return [text]
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def _statements(code: str) -> list[ast.stmt]:
    """The import statements of ``code``; a snippet that does not parse as a whole (``...`` placeholders)
    is read line by line."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        found = []
        for line in code.splitlines():
            with_import = line.strip()
            if with_import.startswith(("from mtlens", "import mtlens")) and "(" not in with_import:
                found += ast.parse(with_import).body
        return found
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def documented_imports() -> list[tuple[str, str, str | None]]:
    """``(document, module, name)`` of every ``from mtlens... import name`` (``name`` None: ``import module``)."""
    found = []
    for path in DOCUMENTS:
        for code in _python_sources(path):
            for node in _statements(code):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mtlens"):
                    found += [(path.name, node.module or "", alias.name) for alias in node.names]
                elif isinstance(node, ast.Import):
                    found += [(path.name, a.name, None) for a in node.names if a.name.startswith("mtlens")]
    return sorted(set(found), key=str)


DOCUMENTED = documented_imports()


def test_the_documents_import_something() -> None:
    assert len(DOCUMENTED) >= 10, DOCUMENTED


@pytest.mark.parametrize(("document", "module", "name"), DOCUMENTED, ids=lambda v: str(v))
def test_every_documented_name_imports_from_a_public_module(document: str, module: str, name: str | None) -> None:
    imported = importlib.import_module(module)
    assert not any(part.startswith("_") for part in module.split(".")), f"{document}: {module} is private"
    if name is None:
        return
    assert hasattr(imported, name), f"{document}: {module} has no {name}"
    curated = getattr(imported, "__all__", None)
    assert curated is None or name in curated, f"{document}: {name} is not in {module}.__all__"


PACKAGES = [
    *sorted(
        ".".join(p.relative_to(SRC.parent).parent.parts) for p in SRC.rglob("__init__.py") if p.parent.name[0] != "_"
    ),
    *("mtlens.cli", "mtlens.errors", "mtlens.gradients", "mtlens.registry", "mtlens.seeding"),
]
"""Every package, and the top-level modules that curate their names."""


@pytest.mark.parametrize("package", PACKAGES)
def test_every_package_curates_its_names(package: str) -> None:
    """Its ``__all__`` exists, names only what it has, each once."""
    module = importlib.import_module(package)
    if package in UNCURATED:
        return
    names = getattr(module, "__all__", None)
    assert names, f"{package} has no __all__"
    missing = [name for name in names if not hasattr(module, name)]
    assert not missing, f"{package}.__all__ names what it lacks: {missing}"
    assert len(set(names)) == len(names)


def test_aggregators_are_one_private_module_per_method_and_public_from_the_package() -> None:
    """Every registered built-in method's class lives in its own private module, exported by the package."""
    import mtlens.aggregators as aggregators

    modules = {path.stem for path in (SRC / "aggregators").glob("_*.py") if path.stem != "__init__"}
    for name in aggregators.__all__:
        value = getattr(aggregators, name)
        origin = getattr(value, "__module__", "")
        if isinstance(value, type) and origin.startswith("mtlens.aggregators."):
            assert origin.rsplit(".", 1)[1] in modules | {"base"}, (name, origin)
    per_method = [m for m in modules if m not in ("_aggregator", "_weighting", "_gradient_aggregation")]
    for module in per_method:
        classes = [
            node.name
            for node in ast.parse((SRC / "aggregators" / f"{module}.py").read_text()).body
            if isinstance(node, ast.ClassDef)
        ]
        assert len(classes) == 1, (module, classes)
        assert classes[0] in aggregators.__all__
