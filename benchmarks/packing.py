"""Runs per hour of small runs of the real trainer: one at a time, as ``torch.func`` packs, or as separate processes.

Usage: ``python benchmarks/packing.py [--settings mnist_pair mnist_pair_mlp] [--packs 1 4 8 16] [--epochs 2]
[--threads 1] [--processes N] [--repeats 1] [--device cpu|cuda]``.

For each setting and pack size M, M compatible MTL runs (``method: sum``, seeds ``0..M-1``, learning
rates spread over ``[3e-4, 3e-3]``, probes off, ``--epochs`` epochs with the setting's evaluation schedule)
are trained into a fresh store, with everything the trainer does -- batches, steps, evaluations,
rows, checkpoints:

* ``one at a time``: :class:`SerialExecutor`, the runs one after another in this process (the baseline);
* ``pack``: the same executor with ``pack_size: M`` -- one :func:`mtlens.training.pack.train_pack`
  of the M runs (M = 1 is the unpacked trainer again, a check of the timer's noise);
* ``processes``: :class:`LocalExecutor` with ``min(M, --processes)`` worker processes (default: one per
  core; with ``--device cuda`` all on the GPU), each run with ``--threads`` torch threads; the workers
  are started and have loaded the setting before the timing (as in a long sweep), by one untimed
  1-epoch run each.

Runs/hour is ``3600 * M / seconds``; each mechanism's figure is the best of ``--repeats``.  The settings are
``mnist_pair`` (its conv encoder, ``conv_encoder(1, 28)``) and ``mnist_pair_mlp``, registered here: the same
data and heads on an MLP encoder 784-256-128.  The script asserts that every run finished and that the
packed runs wrote the rows of the one-at-a-time runs, and prints the largest difference of their values
(float rounding: the pack's batched kernels sum in another order; ``mtlens.training.pack``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from mtlens import RunStore, parse_config
from mtlens.orchestration import LocalExecutor, SerialExecutor
from mtlens.orchestration.executors import Executor, available_cores
from mtlens.settings import Setting, load_setting, register_setting
from mtlens.training.config import resolve_config


@register_setting("mnist_pair_mlp")
def mnist_pair_mlp() -> Setting:
    """mnist_pair's data and heads on an MLP encoder 784-256-128 (ReLU)."""
    return dataclasses.replace(
        load_setting("mnist_pair"),
        name="mnist_pair_mlp",
        encoder=lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU()),
        feature_dim=128,
    )


def run_configs(setting: str, members: int, args: argparse.Namespace, pack_size: int) -> list:
    lrs = np.geomspace(3e-4, 3e-3, members) if members > 1 else [1e-3]
    return [
        resolve_config(
            parse_config(
                {
                    "setting": setting,
                    "seed": seed,
                    "lr": float(lr),
                    "epochs": args.epochs,
                    "probes": [],
                    "threads": args.threads,
                    "device": args.device,
                    "pack_size": pack_size,
                }
            )
        )
        for seed, lr in enumerate(lrs)
    ]


def timed(
    make_executor: Callable[[], Executor], configs: list, repeats: int, warm_up: list | None = None
) -> tuple[float, RunStore]:
    """Best wall time of training ``configs`` into a fresh store (and the last store).  ``warm_up``: runs
    trained first, untimed, by the same executor (worker processes started, the setting loaded in each)."""
    best, store = float("inf"), None
    for _ in range(repeats):
        with make_executor() as executor:
            if warm_up:
                executor.run(warm_up, RunStore(tempfile.mkdtemp(prefix="mtlens-packing-")), progress=False)
            store = RunStore(tempfile.mkdtemp(prefix="mtlens-packing-"))
            start = time.perf_counter()
            results = executor.run(configs, store, progress=False)
            if device_is_cuda(configs):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        assert (results["state"] == "finished").all(), results
    assert store is not None
    return best, store


def device_is_cuda(configs: list) -> bool:
    return configs[0].device.startswith("cuda")


def largest_difference(packed: RunStore, reference: RunStore) -> float:
    """The same rows in both stores (asserted); the largest ``|packed - reference|`` of their values."""
    keys = ["run_id", "task", "step", "quantity"]
    got = packed.trajectories().sort_values(keys).reset_index(drop=True)
    want = reference.trajectories().sort_values(keys).reset_index(drop=True)
    assert got[keys].equals(want[keys])
    return float((got["value"] - want["value"]).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["mnist_pair", "mnist_pair_mlp"])
    parser.add_argument("--packs", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1, the runs' default)")
    parser.add_argument("--processes", type=int, default=available_cores(), help="most worker processes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")
    print(
        f"torch {torch.__version__}, {platform.machine()}, {available_cores()} cores, device {args.device}, "
        f"{args.threads} thread(s) per run, up to {args.processes} processes, {args.epochs} epoch(s) per run, "
        f"best of {args.repeats}; load average {os.getloadavg()[0]:.1f} at start"
    )
    for setting in args.settings:
        load_setting(setting)  # data cached before any timing
        warm = [c.model_copy(update={"seed": 20_000, "epochs": 1}) for c in run_configs(setting, 1, args, 1)]
        timed(SerialExecutor, warm, 1)  # the first run of a process imports what deterministic mode needs
        print(f"\n{setting} (runs/hour; ratios to one at a time)")
        header = f"  {'M':>3} {'one at a time':>14} {'pack':>10} {'processes':>10}   pack/one  proc/one  pack/proc"
        print(header + "   max |pack - one|")
        for members in args.packs:
            reference_configs = run_configs(setting, members, args, 1)
            one, reference = timed(SerialExecutor, reference_configs, args.repeats)
            pack, packed = timed(SerialExecutor, run_configs(setting, members, args, members), args.repeats)
            difference = largest_difference(packed, reference)
            workers = min(members, args.processes)
            warm_up = [c.model_copy(update={"seed": 10_000 + c.seed, "epochs": 1}) for c in reference_configs[:workers]]
            proc, _ = timed(
                lambda workers=workers: LocalExecutor(workers, device=args.device),
                run_configs(setting, members, args, 1),
                args.repeats,
                warm_up,
            )
            rate = {name: 3600 * members / seconds for name, seconds in (("one", one), ("pack", pack), ("proc", proc))}
            print(
                f"  {members:>3} {rate['one']:14.0f} {rate['pack']:10.0f} {rate['proc']:10.0f}   "
                f"{rate['pack'] / rate['one']:7.2f}x {rate['proc'] / rate['one']:8.2f}x "
                f"{rate['pack'] / rate['proc']:8.2f}x   {difference:.1e}"
            )
    print(f"\nload average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
