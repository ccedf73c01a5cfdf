"""Time of `mtlens report` against the number of runs, on synthetic stores (no training).

For each N in ``--runs`` (default 18, 54, 500) a store of about N finished runs is written
through :class:`mtlens.store.RunStore`: synthetic settings of K tasks (K = 2, 2, 2, 40, 40, 20,
10, 5, 3, 2, ... taken in order while the total stays <= N; each setting has K STL runs and 4 MTL
methods, 3 seeds each: N = 18 is one 2-task setting, 54 three, 498 adds two CelebA-sized 40-task
settings).  Each run has the rows mtlens records (trajectory rows of the same names and shapes):
10 epochs of 50 steps evaluated at step 0, every 12 steps up to epoch 2 and at every epoch end
(train/val/test loss, error, accuracy per task), the default probes at epochs 0, 0.5, 1, 2, 4, 8
(per task: gradient coherence, m-coherence, Fisher trace, SAM sharpness, gradient norm, update
cosine, intra-task cosines; per MTL pair: conflict cosine, magnitude similarity and ratio; per
run: conflict fraction, update norm) and the method's task weights; values follow smooth loss
curves with seed noise.

Each report runs in a fresh process (`mtlens report` through ``mtlens.cli.main``, imports
included, as a user runs it) and is timed ``--repeats`` times; printed: wall seconds (best and
spread) and CPU seconds (user + system; on a busy shared machine the better measure of what the
report costs: it is single-threaded), the baseline = the CPU time of reading the store's index and
rows alone (``store.runs()`` + ``store.trajectories()``, the least any report must spend; imports
included), the ratio report / baseline, the HTML size, the number of figures and the peak resident
memory of the report process.
``--store PATH`` times a real store the same way (no synthetic one is written).

    python benchmarks/report.py [--runs 18 54 500] [--repeats 3] [--store PATH] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from mtlens.store import ROW_COLUMNS, RunStore

TASK_COUNTS = (2, 2, 2, 40, 40, 20, 10, 5, 3, 2, 2, 2, 2)
METHODS = ("sum", "pcgrad", "cagrad", "mgda")
SEEDS = (0, 1, 2)
EPOCHS, STEPS_PER_EPOCH = 10, 50
PROBE_EPOCHS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
TASK_PROBES = (
    "probe/grad_coherence",
    "probe/m_coherence",
    "probe/fisher_trace",
    "probe/sharpness_sam",
    "probe/grad_norm",
    "probe/update_cosine",
    "probe/intra_cosine_subbatch",
    "probe/intra_cosine_classgroup",
)
PAIR_PROBES = ("probe/conflict_cosine", "probe/magnitude_similarity", "probe/magnitude_ratio")


def settings_for(n_runs: int) -> list[int]:
    """Task counts of the synthetic settings: :data:`TASK_COUNTS` in order while the runs stay <= ``n_runs``."""
    chosen, total = [], 0
    for k in TASK_COUNTS:
        size = (k + len(METHODS)) * len(SEEDS)
        if total + size > n_runs:
            break
        chosen.append(k)
        total += size
    return chosen


def eval_steps() -> np.ndarray:
    dense = np.arange(0, 2 * STEPS_PER_EPOCH + 1, 12)
    return np.unique(np.r_[dense, np.arange(1, EPOCHS + 1) * STEPS_PER_EPOCH])


def config(setting: str, tasks: list[str], method: str, seed: int) -> dict:
    return {
        "setting": setting,
        "tasks": tasks,
        "method": method,
        "method_options": {},
        "seed": seed,
        "epochs": EPOCHS,
        "batch_size": 64,
        "lr": 0.001,
        "optimizer": "adam",
        "momentum": 0.0,
        "probes": ["coherence", "fisher", "sharpness_sam", "conflict", "alignment"],
        "device": "cpu",
    }


def run_rows(run_id: str, setting: str, tasks: list[str], method: str, seed: int, mode: str) -> pd.DataFrame:
    """The trajectory rows of one synthetic run (see the module docstring)."""
    rng = np.random.default_rng(zlib.crc32(run_id.encode()))
    steps = eval_steps()
    epochs = steps / STEPS_PER_EPOCH
    columns: dict[str, list] = {c: [] for c in ("task", "step", "epoch", "quantity", "value")}

    def add(task: str, quantity: str, step: np.ndarray, value: np.ndarray) -> None:
        columns["task"] += [task] * len(step)
        columns["step"] += list(step)
        columns["epoch"] += list(step / STEPS_PER_EPOCH)
        columns["quantity"] += [quantity] * len(step)
        columns["value"] += list(value)

    for i, task in enumerate(tasks):
        speed = (
            0.4
            + 0.05 * (zlib.crc32(f"{setting}/{task}".encode()) % 7)
            + (0.03 if mode == "mtl" else 0.0)
            + rng.normal(0, 0.02)
        )
        train = 2.3 * np.exp(-speed * epochs) + 0.05 + np.abs(rng.normal(0, 0.01, len(steps)))
        val = (
            train + 0.02 * epochs * (1.2 if mode == "mtl" and i % 2 else 0.9) + np.abs(rng.normal(0, 0.01, len(steps)))
        )
        for split, loss in (("train", train), ("val", val), ("test", val + rng.normal(0, 0.01, len(steps)))):
            error = np.clip(0.9 * (1 - np.exp(-loss)) + rng.normal(0, 0.01, len(steps)), 0, 1)
            add(task, f"{split}/loss", steps, loss)
            add(task, f"{split}/error", steps, error)
            add(task, f"{split}/accuracy", steps, 1 - error)
        if mode == "mtl":
            add(task, "method/weight", steps[1:], 1 / len(tasks) + rng.normal(0, 0.02, len(steps) - 1))
    probe_steps = (np.array(PROBE_EPOCHS) * STEPS_PER_EPOCH).astype(int)
    for task in tasks:
        for quantity in TASK_PROBES:
            add(task, quantity, probe_steps, rng.uniform(0.05, 1.0, len(probe_steps)))
    if mode == "mtl":
        for a, b in combinations(tasks, 2):
            for quantity in PAIR_PROBES:
                add(
                    f"{a}|{b}",
                    quantity,
                    probe_steps,
                    rng.uniform(-0.5, 1.0, len(probe_steps))
                    if "cosine" in quantity
                    else rng.uniform(0.3, 3.0, len(probe_steps)),
                )
        add("*", "probe/conflict_fraction", probe_steps, rng.uniform(0, 1, len(probe_steps)))
    add("*", "probe/update_norm", probe_steps[1:], rng.uniform(0.1, 3, len(probe_steps) - 1))
    frame = pd.DataFrame(columns)
    frame = frame.assign(run_id=run_id, setting=setting, mode=mode, method=method, seed=seed)
    return frame[ROW_COLUMNS]


def write_store(root: Path, n_runs: int) -> int:
    """A synthetic store of about ``n_runs`` finished runs; returns the number written."""
    store = RunStore(root)
    info = {"selection_metric": "error", "lower_is_better": {"loss": True, "error": True, "accuracy": False}}
    count = 0
    for s, k in enumerate(settings_for(n_runs)):
        setting = f"synthetic{s}_k{k}"
        tasks = [f"t{i:02d}" for i in range(k)]
        plan = [([t], "sum", "stl") for t in tasks] + [(tasks, m, "mtl") for m in METHODS]
        for run_tasks, method, mode in plan:
            for seed in SEEDS:
                run_id = f"{setting}-{mode}-{run_tasks[0] if mode == 'stl' else 'all'}-{method}-s{seed}"
                store.write_config(run_id, config(setting, run_tasks, method, seed))
                store.write_task_info(run_id, {t: info for t in run_tasks})
                rows = run_rows(run_id, setting, run_tasks, method, seed, mode)
                store.write_part(run_id, int(rows["step"].max()), rows)
                store.finalize(run_id, "finished", int(rows["step"].max()))
                count += 1
    return count


MEASURE = """
import json, resource, sys, time
start = time.perf_counter()
from mtlens.store import RunStore
store = RunStore(sys.argv[1])
if sys.argv[3] == "read":
    store.runs(); store.trajectories()
else:
    from mtlens.cli import main
    assert main(["report", "--store", sys.argv[1], "--out", sys.argv[2]]) == 0
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - start, "cpu": usage.ru_utime + usage.ru_stime,
                  "peak_mib": usage.ru_maxrss / 1024}))
"""


def measure(store: Path, out: Path, what: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, str(store), str(out), what],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def bench(store: Path, label: str, n: int, repeats: int, out: Path) -> None:
    reads = [measure(store, out, "read") for _ in range(repeats)]
    reports = [measure(store, out, "report") for _ in range(repeats)]
    wall, cpu = [r["seconds"] for r in reports], [r["cpu"] for r in reports]
    read_cpu = min(r["cpu"] for r in reads)
    size = (out / "report.html").stat().st_size / 2**20
    figures = len(list((out / "figures").glob("*.vl.json")))
    print(
        f"{label:>10s} {n:4d} runs: report wall {min(wall):6.1f} s (spread {max(wall) - min(wall):4.1f}), "
        f"CPU {min(cpu):6.1f} s; read CPU {read_cpu:5.1f} s, report/read {min(cpu) / read_cpu:5.1f}; "
        f"HTML {size:5.2f} MiB, {figures:3d} figures, peak {max(r['peak_mib'] for r in reports):5.0f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[18, 54, 500])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--store", type=Path, help="time this real store instead of synthetic ones")
    parser.add_argument("--keep", type=Path, help="write the synthetic stores and reports here (default: a temp dir)")
    args = parser.parse_args()
    print(
        f"best of {args.repeats}; each report in a fresh process; cores: {os.cpu_count()}, load: "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        if args.store:
            n = len(RunStore(args.store).run_ids())
            bench(args.store, args.store.name, n, args.repeats, root / "report-real")
            return
        for n_runs in args.runs:
            store = root / f"store-{n_runs}"
            n = write_store(store, n_runs) if not (store / "runs").exists() else len(RunStore(store).run_ids())
            bench(store, "synthetic", n, args.repeats, root / f"report-{n_runs}")


if __name__ == "__main__":
    main()
