"""Synthetic stores for the report's tests (no training): runs with the rows mtlens records and a
planted truth, written through :class:`mtlens.store.RunStore`.

:func:`planted_store`: setting ``planted`` with tasks ``a`` and ``b``; per seed one STL run per task
and one MTL run per method.  MTL makes task ``a`` worse (test and validation error and loss higher by
``effect`` at every step, noise sd 0.002) and leaves task ``b`` unchanged: the report must find
"MTL worse" on ``a`` with enough seeds and state a null on ``b``.  ``zero_step_task`` makes that task's
validation error lowest at step 0 in every run (a checkpoint selected at step 0), ``collapse`` gives
the first method's weights all to task ``a``; ``probes`` adds the rows of the default probes the report's
correlation analysis reads (per task: Fisher trace, the two coherences, SAM sharpness; per MTL run: the
conflict cosine of the pair ``a|b`` and the conflict fraction, keyed ``*``), noise around a constant.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mtlens.store import ROW_COLUMNS, RunStore

STEPS = np.r_[0, 10, 20, 30, 40, 60, 80, 100, 150, 200]
STEPS_PER_EPOCH = 50
TASKS = ("a", "b")
INFO = {"selection_metric": "error", "lower_is_better": {"loss": True, "error": True}}


def _rows(
    run_id: str,
    mode: str,
    method: str,
    seed: int,
    tasks: Sequence[str],
    effect: float,
    zero_step_task: str | None,
    collapse: bool,
    probes: bool = False,
) -> pd.DataFrame:
    rng = np.random.default_rng(zlib.crc32(run_id.encode()))
    seed_rng = np.random.default_rng(seed)  # shared by the STL and MTL runs of a seed (paired design)
    epochs = STEPS / STEPS_PER_EPOCH
    records = []
    for task in tasks:
        base = 2.0 * np.exp(-0.8 * epochs) + 0.1 + seed_rng.normal(0, 0.01)
        shift = effect if (mode == "mtl" and task == "a") else 0.0
        for split in ("train", "val", "test"):
            loss = base + (shift if split != "train" else 0.0) + rng.normal(0, 0.002, len(STEPS))
            error = 0.05 + 0.3 * (1 - np.exp(-loss)) + rng.normal(0, 0.002, len(STEPS))
            if split == "val" and task == zero_step_task:
                error = 0.5 + np.arange(len(STEPS)) * 0.01
            records += [(task, s, e, f"{split}/loss", v) for s, e, v in zip(STEPS, epochs, loss)]
            records += [(task, s, e, f"{split}/error", v) for s, e, v in zip(STEPS, epochs, error)]
        if mode == "mtl":
            weight = (1.0 if task == "a" else 0.0) if collapse else 0.5
            records += [(task, s, e, "method/weight", weight) for s, e in zip(STEPS[1:], epochs[1:])]
        if probes:
            for quantity in ("fisher_trace", "grad_coherence", "m_coherence", "sharpness_sam"):
                values = 1.0 + rng.normal(0, 0.1, len(STEPS))
                records += [(task, s, e, f"probe/{quantity}", v) for s, e, v in zip(STEPS, epochs, values)]
    if probes and mode == "mtl":
        for key, quantity in (("|".join(tasks), "conflict_cosine"), ("*", "conflict_fraction")):
            values = rng.uniform(0, 1, len(STEPS))
            records += [(key, s, e, f"probe/{quantity}", v) for s, e, v in zip(STEPS, epochs, values)]
    frame = pd.DataFrame.from_records(records, columns=["task", "step", "epoch", "quantity", "value"])
    return frame.assign(run_id=run_id, setting="planted", mode=mode, method=method, seed=seed)[ROW_COLUMNS]


def planted_store(
    root: Path,
    seeds: Sequence[int] = tuple(range(8)),
    methods: Sequence[str] = ("sum",),
    effect: float = 0.05,
    zero_step_task: str | None = None,
    collapse: bool = False,
    probes: bool = False,
) -> RunStore:
    """The store described in the module docstring, written under ``root``."""
    store = RunStore(root)
    plan = [([t], "sum", "stl") for t in TASKS] + [(list(TASKS), m, "mtl") for m in methods]
    for tasks, method, mode in plan:
        for seed in seeds:
            run_id = f"planted-{mode}-{tasks[0] if mode == 'stl' else 'all'}-{method}-s{seed}"
            config = {
                "setting": "planted",
                "tasks": tasks,
                "method": method,
                "method_options": {},
                "seed": seed,
                "epochs": int(STEPS[-1] // STEPS_PER_EPOCH),
                "batch_size": 64,
                "lr": 0.001,
                "optimizer": "adam",
                "momentum": 0.0,
                "device": "cpu",
            }
            store.write_config(run_id, config)
            store.write_task_info(run_id, {t: INFO for t in tasks})
            collapsed = collapse and method == methods[0]
            rows = _rows(run_id, mode, method, seed, tasks, effect, zero_step_task, collapsed, probes)
            store.write_part(run_id, int(STEPS[-1]), rows)
            store.finalize(run_id, "finished", int(STEPS[-1]))
    return store
