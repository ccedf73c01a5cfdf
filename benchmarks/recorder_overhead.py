"""Overhead of the recorder on the plain-loop example (probes off).

``examples/plain_loop.py`` (the README's plain-loop snippet is an excerpt of it; 6 runs: STL a, STL b
and MTL for two seeds, 4 epochs of ``digits_pair`` with 256 training examples, evaluation on train
subset / val / test at every epoch end; its closing print left out) is executed as written, and
again with ``Recorder`` replaced by a stand-in that keeps the logged values in a list and writes
nothing: the same loop, the same evaluation, without the recorder.  Rounds alternate the two (a
fresh store directory per round, after one warm-up of each); the ratio ``with / without`` is taken
per round on the process's CPU time and on wall time.  CPU time excludes other jobs on a shared
machine; wall time includes the recorder's file writes.  On a loaded machine both vary by several
percent between rounds (cache and scheduler effects of the other jobs), so the script also times the
recorder *inside* each recorded execution: the CPU time spent in its calls (``Recorder(...)``,
entering and leaving the ``with`` block, ``log``) against the execution's total, giving the in-run
ratio ``total / (total - recorder)``, whose baseline is the same execution and so shares its load.

``--n-train N`` runs the example on ``N`` training examples instead of its 256 (the only change to
the code), so that each run trains long enough to weigh the recorder's fixed cost per run (lock,
config, task and status files, the merged trajectory written once at the end) against a training
run of realistic length.

Run: ``.venv/bin/python benchmarks/recorder_overhead.py --rounds 7 [--n-train 768]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import mtlens

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plain_loop.py"


class TimedRecorder(mtlens.Recorder):
    """The recorder, adding the process CPU time spent in its calls to :data:`RECORDER_CPU`."""

    def __init__(self, *args: Any, **kwargs: Any):
        start = time.process_time()
        super().__init__(*args, **kwargs)
        RECORDER_CPU[0] += time.process_time() - start

    def __enter__(self) -> TimedRecorder:
        start = time.process_time()
        super().__enter__()
        RECORDER_CPU[0] += time.process_time() - start
        return self

    def __exit__(self, *exc: Any) -> None:
        start = time.process_time()
        super().__exit__(*exc)
        RECORDER_CPU[0] += time.process_time() - start

    def log(self, *args: Any, **kwargs: Any) -> None:
        start = time.process_time()
        super().log(*args, **kwargs)
        RECORDER_CPU[0] += time.process_time() - start


RECORDER_CPU = [0.0]
"""CPU seconds spent in :class:`TimedRecorder` calls since the last reset."""


class NoRecorder:
    """``Recorder``'s interface as the example uses it, keeping the logged values in memory only."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.values: list[tuple[int, str, Any]] = []

    def __enter__(self) -> NoRecorder:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def log(self, step: int, split: str, values: Any) -> None:
        self.values.append((step, split, values))


def example_code(n_train: int) -> str:
    code = EXAMPLE.read_text()
    if code.count("n_train=256") != 1:
        raise SystemExit(f"expected {EXAMPLE} to load its setting with n_train=256")
    code = re.sub(r"^print\(.*\)$", "", code, flags=re.M)  # the closing print
    return code.replace("n_train=256", f"n_train={n_train}")


def run(code: str, record: bool) -> tuple[float, float, float]:
    """``(cpu seconds, wall seconds, cpu seconds in recorder calls)`` of one execution of the example,
    in a fresh directory."""
    with tempfile.TemporaryDirectory() as directory:
        cwd = os.getcwd()
        os.chdir(directory)
        try:
            namespace: dict[str, Any] = {}
            # the example's `from mtlens import Recorder` binds the timed recorder or the stand-in
            original, mtlens.Recorder = mtlens.Recorder, TimedRecorder if record else NoRecorder
            RECORDER_CPU[0] = 0.0
            cpu, wall = time.process_time(), time.perf_counter()
            try:
                exec(compile(code, str(EXAMPLE), "exec"), namespace)
            finally:
                mtlens.Recorder = original
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            runs = namespace["store"].runs() if record else None
            if record and (len(runs) != 6 or set(runs["state"]) != {"finished"}):
                raise SystemExit("the recorded example did not finish its 6 runs")
            return cpu, wall, RECORDER_CPU[0]
        finally:
            os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n-train", type=int, default=256, help="training examples of digits_pair (the example: 256)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    code = example_code(args.n_train)
    print(
        f"torch {torch.__version__}, {platform.machine()}, {args.threads} thread(s), {platform.platform()}; "
        f"load average {os.getloadavg()[0]:.2f} at start; n_train={args.n_train}"
    )
    run(code, True), run(code, False)  # warm-up: data cache, imports, allocator
    ratios: dict[str, list[float]] = {"cpu": [], "wall": [], "in-run": []}
    for round_ in range(args.rounds):
        order = (True, False) if round_ % 2 == 0 else (False, True)
        times = {record: run(code, record) for record in order}
        for k, kind in enumerate(("cpu", "wall")):
            ratios[kind].append(times[True][k] / times[False][k])
        ratios["in-run"].append(times[True][0] / (times[True][0] - times[True][2]))
        print(
            f"round {round_}: with {times[True][0]:.2f} s cpu / {times[True][1]:.2f} s wall "
            f"({times[True][2] * 1e3 / 6:.1f} ms cpu per run in recorder calls), "
            f"without {times[False][0]:.2f} s cpu / {times[False][1]:.2f} s wall"
        )
    for kind, values in ratios.items():
        print(
            f"{kind:6s} with/without: best {min(values):.3f}x  median {statistics.median(values):.3f}x  "
            f"spread {min(values):.3f}-{max(values):.3f}x over {len(values)} rounds"
        )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
