"""Ctrl-C: ``mtlens study`` (in-process runs) and ``mtlens sweep --workers 2`` (worker processes; marked slow: 20 s
on 2 idle cores) end with exit 130 and one line naming the interrupted runs and saying that rerunning
resumes them, without a traceback; the rerun finishes every run and leaves a store that checks clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from _subjects import TINY

from kills import fork
from mtlens import RunStore
from mtlens.cli import main
from mtlens.errors import MtlensError
from mtlens.training.trainer import TrainingRun

pytestmark = pytest.mark.integration
# The child (forked from the test process: ``kills.fork``) holds its first run after the checkpoint of step 2 (sleeps
# until interrupted), so that the parent, however starved of CPU on a loaded machine (2 test workers beside mypy),
# sends SIGINT while a run is training: with a short sleep per checkpoint the child sometimes finished every run
# before the parent saw step 2.  It first restores Python's SIGINT handler, as a shell would give it: a pytest-xdist
# worker ignores SIGINT, and an ignored signal is inherited by the processes it starts (Python then installs no
# handler of its own).  It holds in 0.1 s sleeps: the kernel may deliver the process's SIGINT to another thread
# (torch's), and then Python raises KeyboardInterrupt in the main thread only when its current sleep returns, which
# for one sleep of 120 s outlasted the parent's 60 s wait (a rare timeout in CI).


def _held_command(argv: list[str]) -> None:
    """What the child runs: the command line ``argv``, each run held after its checkpoint of step 2."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    checkpoint = TrainingRun._checkpoint

    def held(self: TrainingRun, step: int) -> None:
        checkpoint(self, step)
        for _ in range(1200 if step >= 2 else 0):
            time.sleep(0.1)

    TrainingRun._checkpoint = held  # type: ignore[method-assign]  # (in the child process only)
    sys.exit(main(argv))


def _interrupt_when_training(argv: list[str], store: RunStore, out: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``argv`` in a child (its standard output and error in files under ``out``) and send it
    ``SIGINT`` once some run has checkpointed step 2."""
    stdout, stderr = out / "stdout.txt", out / "stderr.txt"
    child = fork(lambda: _held_command(argv), stdout=stdout, stderr=stderr)
    deadline = time.time() + 120
    while time.time() < deadline and child.is_alive():
        try:
            steps = [(store.status(r) or {}).get("step", 0) for r in store.run_ids()]
        except MtlensError:
            steps = []
        if any(s >= 2 for s in steps):
            break
        time.sleep(0.005)
    assert child.is_alive() and child.pid is not None, "the command ended before it could be interrupted"
    os.kill(child.pid, signal.SIGINT)
    child.join(timeout=60)
    return subprocess.CompletedProcess(argv, child.exitcode, stdout.read_text(), stderr.read_text())


@pytest.mark.parametrize("command", ["study", pytest.param("sweep", marks=pytest.mark.slow)])
def test_ctrl_c_names_the_interrupted_runs_and_the_rerun_resumes_them(command, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({k: v for k, v in TINY.items() if k not in ("setting", "tasks", "method")}))
    store = RunStore(tmp_path / "store")
    if command == "study":
        argv = ["study", "digits_pair", "--config", str(config), "--seed-list", "0"]
    else:
        (tmp_path / "grid.yaml").write_text(yaml.safe_dump({"lr": [0.01, 0.02]}))
        argv = ["sweep", "digits_pair", "--config", str(config), "--grid", str(tmp_path / "grid.yaml")]
        argv += ["--seed-list", "0", "--workers", "2"]
    argv += ["--store", str(store.root), "--quiet"]

    result = _interrupt_when_training(argv, store, tmp_path)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    (line,) = [x for x in result.stderr.splitlines() if "interrupted" in x]
    assert "rerun the same command to resume" in line
    stopped = store.runs().query("state == 'interrupted'")["run_id"].tolist()
    assert stopped and all(run_id in line for run_id in stopped)

    assert main(argv) == 0
    assert set(store.runs()["state"]) == {"finished"}
    capsys.readouterr()
    assert main(["runs", "--store", str(store.root), "--check"]) == 0, capsys.readouterr().out
