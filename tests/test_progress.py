"""Progress without a terminal: an executor writes plain lines to stderr (runs started and ended, the
step each run recorded, runs done, elapsed time and time left) when stderr is not a TTY, and a tqdm
bar (no lines) when it is."""

from __future__ import annotations

import io

import pytest

from mtlens import RunStore, parse_config
from mtlens.orchestration.executors import SerialExecutor
from mtlens.orchestration.progress import INTERVAL_ENV, RunProgress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_without_a_terminal_count_runs_steps_and_time_left(monkeypatch):
    monkeypatch.setenv(INTERVAL_ENV, "30")
    stream, clock = io.StringIO(), Clock()
    progress = RunProgress(5, done=1, desc="runs", stream=stream, clock=clock)
    progress.started("r1")
    progress.started("r2")
    clock.now += 10
    progress.running(lambda: {"r1": 40, "r2": None})  # within the interval of the last line: nothing
    clock.now += 30
    progress.running(lambda: {"r1": 80, "r2": 20})
    clock.now += 20  # 60 s after the start, the first of 4 runs ends: 3 left, about 3 minutes
    progress.ended("r1", "finished", 100, "finished=2")
    progress.ended("r2", "diverged", 35, "finished=2 diverged=1")  # 2 ended in 60 s: 2 left, 1 minute
    progress.close("finished=2 diverged=1")
    assert stream.getvalue().splitlines() == [
        "mtlens runs: 4 runs to train, 1 of 5 already complete",
        "mtlens runs: started r1",
        "mtlens runs: started r2",
        "mtlens runs: in progress: r1 at step 80, r2 at step 20; 1/5 done; elapsed 40s",
        "mtlens runs: finished r1 at step 100; 2/5 done (finished=2); elapsed 1m00s, about 3m00s left",
        "mtlens runs: diverged r2 at step 35; 3/5 done (finished=2 diverged=1); elapsed 1m00s, about 1m00s left",
        "mtlens runs: 3/5 done (finished=2 diverged=1) in 1m00s",
    ]


def test_a_terminal_gets_the_bar_and_quiet_gets_nothing():
    terminal = Terminal()
    progress = RunProgress(2, stream=terminal)
    progress.started("r1")
    progress.ended("r1", "finished", 10, "finished=1")
    progress.close()
    assert "mtlens runs:" not in terminal.getvalue() and "1/2" in terminal.getvalue()  # tqdm's bar
    quiet = io.StringIO()
    progress = RunProgress(2, stream=quiet, enabled=False)
    progress.started("r1")
    progress.ended("r1", "finished", 10, "finished=1")
    progress.close()
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59.6, "1m00s"), (125, "2m05s"), (3 * 3600 + 125, "3h02m")])
def test_durations(seconds, text):
    assert duration(seconds) == text


def test_an_executor_without_a_terminal_writes_a_line_per_run_started_and_ended(tmp_path, tiny, capsys):
    def train(config, store, setting, progress):  # a finished run: its (here empty) trajectory, then its status
        store.finalize(config.run_id, "finished", 7 + config.seed)
        return "finished"

    configs = [parse_config({**tiny, "seed": seed}) for seed in range(3)]
    store = RunStore(tmp_path / "store")
    with SerialExecutor(train) as executor:
        results = executor.run(configs, store, progress=True)
    assert list(results["state"]) == ["finished"] * 3
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mtlens runs:")]
    assert lines[0] == "mtlens runs: 3 runs to train, 0 of 3 already complete"
    ids = [c.run_id for c in configs]
    assert f"mtlens runs: started {ids[0]}" in lines
    assert any(line.startswith(f"mtlens runs: finished {ids[2]} at step 9; 3/3 done (finished=3)") for line in lines)
    assert lines[-1].startswith("mtlens runs: 3/3 done (finished=3) in ")
