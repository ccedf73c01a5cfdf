"""Start-up cost of the command line: ``import mtlens.cli`` and ``mtlens --help`` load none of the heavy
libraries (checked in a fresh interpreter's ``sys.modules``, not by timing), and the lazy top-level
namespace of :mod:`mtlens` still serves every public name."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import mtlens

HEAVY = ("torch", "pandas", "matplotlib", "scipy", "sklearn")


def _loaded_after(code: str) -> list[str]:
    """The heavy top-level modules present in ``sys.modules`` after running ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport sys\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_loads_no_heavy_library():
    assert _loaded_after("import mtlens.cli") == []


def test_help_loads_no_heavy_library():
    code = (
        "import contextlib, io, mtlens.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "    mtlens.cli.main(['--help'])\n"
        "assert 'study' in out.getvalue()"
    )
    assert _loaded_after(code) == []


def test_runs_loads_no_torch(tmp_path):
    (tmp_path / "empty").mkdir()
    code = (
        "import contextlib, io, mtlens.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert mtlens.cli.main(['runs', '--store', {str(tmp_path / 'empty')!r}]) == 0"
    )
    assert "torch" not in _loaded_after(code)


def test_every_public_name_resolves_to_its_module_object():
    assert sorted(mtlens.__all__) == sorted(mtlens._SOURCES)
    for name in mtlens.__all__:
        module = importlib.import_module(mtlens._SOURCES[name])
        assert getattr(mtlens, name) is getattr(module, name)
    assert set(mtlens.__all__) <= set(dir(mtlens))


def test_unknown_attribute_is_an_attribute_error():
    try:
        mtlens.no_such_name  # noqa: B018
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("mtlens.no_such_name did not raise")


def test_type_checking_imports_match_the_lazy_table():
    """The ``if TYPE_CHECKING:`` imports (what type checkers see) name the same sources as ``_SOURCES``."""
    tree = ast.parse(Path(mtlens.__file__).read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    imported = {
        alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert imported == mtlens._SOURCES
