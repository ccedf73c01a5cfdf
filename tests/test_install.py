"""Installable: the project builds into a wheel that installs into a fresh virtual environment and
gives the ``mtlens`` command (every command listed, plain text), with the optional extras declared.

The fresh environment reuses this environment's packages (torch and the other dependencies) through a
``.pth`` file, as a user's environment with a compatible torch would provide them; everything of
mtlens itself comes from the wheel (checked: the imported package lives in the new environment)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from mtlens.cli import build_parser

pytestmark = pytest.mark.integration  # builds and installs a wheel (~20 s on a loaded 2-core machine)

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]


def commands() -> list[str]:
    """The subcommands of ``mtlens``, from the parser itself."""
    parser = build_parser()
    return [name for action in parser._subparsers._group_actions for name in action.choices]  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline from a copy of the sources (a build writes into the tree it builds)."""
    source = tmp_path_factory.mktemp("source")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("mtlens-*.whl")
    return built


def test_the_wheel_holds_the_package_its_command_and_its_extras(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        info = next(n.rsplit("/", 1)[0] for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    sources = {str(p.relative_to(ROOT / "src")) for p in (ROOT / "src" / "mtlens").rglob("*.py")}
    assert sources <= set(names)  # every module, no checkout needed at run time
    assert "mtlens/py.typed" in names  # type information for users' type checkers
    assert "mtlens = mtlens.cli:main" in entry_points
    extras = {line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Provides-Extra:")}
    assert {"ray", "lightning", "hf", "nlp", "mlflow", "tensorboard"} <= extras
    assert "Requires-Dist: torch>=" in metadata


def test_the_wheel_installs_into_a_fresh_venv_and_gives_the_mtlens_command(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run(
        [*PIP, "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)], check=True
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The dependencies (torch, pandas, ...) of this environment, as a user's environment would have them.
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    command = venv / "bin" / "mtlens"
    assert command.exists()

    def run(*args: str) -> str:
        done = subprocess.run([str(command), *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    where = subprocess.run([str(python), "-c", "import mtlens; print(mtlens.__file__)"], capture_output=True, text=True)
    assert where.stdout.startswith(site)  # mtlens from the wheel, not from the checkout
    help_text = run("--help")
    for name in commands():  # each command on a line of its own, with its help
        assert re.search(rf"^\s+{name}\s+\w", help_text, flags=re.MULTILINE), name
    assert not any(markup in help_text for markup in ("``", ":func:", ":mod:", ":class:")), help_text
