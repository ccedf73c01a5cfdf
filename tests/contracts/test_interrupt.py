"""Ctrl-C: ``mtlens study`` (in-process runs) and ``mtlens sweep --workers 2`` (worker processes; marked slow: 20 s
on 2 idle cores) end with exit 130 and one line naming the interrupted runs and saying that rerunning
resumes them, without a traceback; the rerun finishes every run and leaves a store that checks clean."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from _subjects import TINY

from mtlens import RunStore
from mtlens.cli import main
from mtlens.errors import MtlensError

pytestmark = pytest.mark.integration
# The child holds its first run after the checkpoint of step 2 (sleeps until interrupted), so that the parent, however
# starved of CPU on a loaded machine (2 test workers beside mypy), sends SIGINT while a run is training: with a short
# sleep per checkpoint the child sometimes finished every run before the parent saw step 2.  It first restores
# Python's SIGINT handler, as a shell would give it: a pytest-xdist worker ignores SIGINT, and an ignored signal is
# inherited by the processes it starts (Python then installs no handler of its own).  It holds in 0.1 s sleeps: the
# kernel may deliver the process's SIGINT to another thread (torch's), and then Python raises KeyboardInterrupt in the
# main thread only when its current sleep returns, which for one sleep of 120 s outlasted the parent's 60 s wait (a
# rare timeout in CI).
CLI = (
    "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "import sys, time; from mtlens.cli import main; from mtlens.training.trainer import TrainingRun\n"
    "checkpoint = TrainingRun._checkpoint\n"
    "def held(self, step):\n"
    "    checkpoint(self, step)\n"
    "    for _ in range(1200 if step >= 2 else 0): time.sleep(0.1)\n"
    "TrainingRun._checkpoint = held\n"
    "sys.exit(main(sys.argv[1:]))"
)


def _interrupt_when_training(argv: list[str], store: RunStore) -> subprocess.CompletedProcess[str]:
    """Run the CLI with ``argv`` in a child and send it ``SIGINT`` once some run has checkpointed step 2."""
    child = subprocess.Popen(
        [sys.executable, "-c", CLI, *argv], stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ
    )
    deadline = time.time() + 120
    while time.time() < deadline and child.poll() is None:
        try:
            steps = [(store.status(r) or {}).get("step", 0) for r in store.run_ids()]
        except MtlensError:
            steps = []
        if any(s >= 2 for s in steps):
            break
        time.sleep(0.005)
    assert child.poll() is None, "the command ended before it could be interrupted"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


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

    result = _interrupt_when_training(argv, store)
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
