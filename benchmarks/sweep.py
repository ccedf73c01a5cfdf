"""Speed-up of parallel sweep executors against a serial run of the same small sweep.

The same sweep (digits_pair, lr x batch size 2 x 2, STL per task + MTL sum, 2 seeds:
12 grid runs + 3 seed runs, ``--epochs`` epochs, default 8) runs into a fresh store with each executor:

* serial: in this process, one run at a time, torch using every core (the baseline),
  and the same with one torch thread (separates thread scaling from process parallelism);
* local N: N worker processes, each run with max(1, cores // N) torch threads (config key ``threads``);
* ray: a local Ray instance with one CPU (and one torch thread) per run; its start-up
  (ray.init, worker processes) is included, as a user would pay it.

Prints wall-clock seconds and the speed-up ``serial / executor`` (> 1 = faster).

    python benchmarks/sweep.py [--workers 2] [--epochs 8] [--no-ray]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from mtlens import RunStore
from mtlens.orchestration import LocalExecutor, SerialExecutor, run_sweep
from mtlens.orchestration.executors import Executor, available_cores

BASE = {
    "setting": "digits_pair",
    "epochs": 8,
    "train_eval_size": 256,
    "setting_options": {"n_train": 500, "n_val": 200, "n_test": 198},
}
GRID = {"lr": [1e-2, 1e-3], "batch_size": [16, 64]}


def timed_sweep(executor: Executor, epochs: int, threads: int) -> float:
    """Seconds of the sweep with every run under ``threads`` torch threads."""
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        result = run_sweep(
            {**BASE, "epochs": epochs, "threads": threads},
            GRID,
            RunStore(root),
            ["sum"],
            [0, 1],
            executor=executor,
            progress=False,
        )
        elapsed = time.perf_counter() - start
    assert result.problems.empty and len(result.selected) == 3
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--epochs", type=int, default=BASE["epochs"])
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    cores = available_cores()
    print(f"cores={cores} load={os.getloadavg()[0]:.1f} (1-min load average before the runs), {args.epochs} epochs")
    serial = timed_sweep(SerialExecutor(), args.epochs, cores)
    print(f"serial            {serial:7.1f} s  1.00x (baseline, {cores} torch threads)")
    one_thread = timed_sweep(SerialExecutor(), args.epochs, 1)
    print(
        f"serial 1 thread   {one_thread:7.1f} s  {serial / one_thread:.2f}x  (the speed-ups below are against "
        f"serial; divide by {serial / one_thread:.2f} for the 1-thread serial baseline)"
    )
    for workers in args.workers:
        seconds = timed_sweep(LocalExecutor(workers), args.epochs, max(1, cores // workers))
        print(f"local workers={workers:<3d} {seconds:7.1f} s  {serial / seconds:.2f}x")
    if not args.no_ray:
        from mtlens.orchestration.ray_backend import RayExecutor

        seconds = timed_sweep(RayExecutor(workers=cores), args.epochs, 1)
        print(f"ray cpus={cores:<8d} {seconds:7.1f} s  {serial / seconds:.2f}x")


if __name__ == "__main__":
    main()
