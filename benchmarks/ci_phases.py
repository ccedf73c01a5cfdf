"""Time the phases of CI (`.ci/run` = `make test`) in a clean clone of the repository's HEAD.

CI builds its virtual environment from nothing, then runs `make lint`, `make typecheck` and pytest; this script
clones HEAD into a temporary folder and times each phase there as CI meets it (no pip, uv or mypy cache):

- ``venv-pip``: `make venv INSTALLER=pip` into ``.venv-pip`` (the baseline: pip alone, as before uv; pip's cache off);
- ``venv``: `make venv` (uv, the default installer) into ``.venv`` with an empty uv cache;
- ``lint``: `make lint`; ``typecheck``: `make typecheck` (empty mypy cache);
- ``pytest``: ``.venv/bin/python -m pytest -q -m "not slow" --durations=40`` (``--pytest-args`` replaces the
  arguments after ``-m pytest``), or ``make-test``: `make test` itself (lint, typecheck and pytest as CI runs them).

Printed per phase: wall seconds, CPU seconds of the phase's processes (user + system, children included: on a
shared machine the better measure of cost) and the 1-minute load average at its start; then the ratio
venv-pip / venv of both.  Each phase's output is kept in ``--out`` (default: a temporary folder, named at the end).

    python benchmarks/ci_phases.py [--phases venv-pip venv lint typecheck pytest] [--out DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("venv-pip", "venv", "lint", "typecheck", "pytest", "make-test")
DEFAULT_PYTEST_ARGS = '-q -m "not slow" --durations=40 -p no:cacheprovider'


def children_cpu_seconds() -> float:
    """User + system CPU seconds of all waited-for child processes of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def phase_command(phase: str, pytest_args: str) -> list[str]:
    """The command CI runs for ``phase``, in the clone's root."""
    commands = {
        "venv-pip": ["make", "venv", "INSTALLER=pip", "VENV=.venv-pip"],
        "venv": ["make", "venv"],
        "lint": ["make", "lint"],
        "typecheck": ["make", "typecheck"],
        "pytest": [".venv/bin/python", "-m", "pytest", *shlex.split(pytest_args)],
        "make-test": ["make", "test"],
    }
    return commands[phase]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_phases = ["venv-pip", "venv", "lint", "typecheck", "pytest"]
    parser.add_argument("--phases", nargs="+", choices=PHASES, default=default_phases)
    parser.add_argument("--pytest-args", default=DEFAULT_PYTEST_ARGS, help=f"default: {DEFAULT_PYTEST_ARGS}")
    parser.add_argument("--out", type=Path, help="folder for each phase's output (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # one line per phase as it ends, also into a file

    repo = Path(__file__).resolve().parent.parent
    out = args.out or Path(tempfile.mkdtemp(prefix="ci-phases-out-"))
    out.mkdir(parents=True, exist_ok=True)
    clone = Path(tempfile.mkdtemp(prefix="ci-phases-clone-"))
    caches = Path(tempfile.mkdtemp(prefix="ci-phases-caches-"))
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    head = subprocess.run(["git", "log", "--oneline", "-1"], cwd=clone, capture_output=True, text=True).stdout.strip()
    print(f"clone of {repo} at {head}, in {clone}; phase outputs in {out}")
    env = {
        **os.environ,
        "PIP_NO_CACHE_DIR": "1",
        "UV_CACHE_DIR": str(caches / "uv"),
        "MYPY_CACHE_DIR": str(caches / "mypy"),
    }

    results: dict[str, tuple[float, float]] = {}
    failed = []
    try:
        for phase in args.phases:
            load = os.getloadavg()[0]
            cpu0, wall0 = children_cpu_seconds(), time.perf_counter()
            with open(out / f"{phase}.log", "w") as log:
                code = subprocess.run(
                    phase_command(phase, args.pytest_args), cwd=clone, env=env, stdout=log, stderr=subprocess.STDOUT
                ).returncode
            wall, cpu = time.perf_counter() - wall0, children_cpu_seconds() - cpu0
            results[phase] = (wall, cpu)
            status = "ok" if code == 0 else f"FAILED (exit {code}, see {out / f'{phase}.log'})"
            print(f"{phase:10s} wall {wall:7.1f} s   CPU {cpu:7.1f} s   load at start {load:5.2f}   {status}")
            if code != 0:
                failed.append(phase)
        if "venv-pip" in results and "venv" in results:
            (pip_wall, pip_cpu), (uv_wall, uv_cpu) = results["venv-pip"], results["venv"]
            print(f"venv build, pip / uv: wall {pip_wall / uv_wall:.2f}x, CPU {pip_cpu / uv_cpu:.2f}x")
        total = sum(results[p][0] for p in ("venv", "lint", "typecheck", "pytest", "make-test") if p in results)
        print(f"wall of the phases CI runs (venv, lint, typecheck, pytest / make-test) that were timed: {total:.1f} s")
    finally:
        shutil.rmtree(caches, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(clone, ignore_errors=True)
    if failed:
        raise SystemExit(f"failed phases: {', '.join(failed)}")


if __name__ == "__main__":
    main()
