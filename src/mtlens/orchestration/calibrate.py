"""``mtlens calibrate``: train STL seeds of a setting and check the report's tests on A/A splits.

The STL runs are the study's own (:func:`mtlens.orchestration.study.study_configs` without MTL methods),
so a store that already holds them trains nothing new, and the runs serve a later study of the
same configuration.  The inference itself is :mod:`mtlens.analysis.calibration`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mtlens.analysis.calibration import Effect, PairedTables, calibrate, detectable_effects, false_positive_rates
from mtlens.errors import ConfigError, MtlensError
from mtlens.orchestration.executors import Executor, run_configs
from mtlens.orchestration.study import study_configs
from mtlens.store import RunState, RunStore


@dataclass(frozen=True)
class Calibration:
    """``comparisons``/``rates``: the A/A tests and their false-positive rates; ``effect``: the spiked-in
    effect per (task, quantity) (the median minimum detectable difference of the A/A tests);
    ``power``/``detections``: the detection rates of the positive control with that effect."""

    comparisons: pd.DataFrame
    rates: pd.DataFrame
    effect: Effect
    detections: pd.DataFrame
    power: pd.DataFrame


def run_calibration(
    base: dict[str, Any],
    seeds: Sequence[int],
    store: RunStore,
    n_splits: int = 25,
    alpha: float = 0.05,
    progress: bool = True,
    control_splits: int | None = None,
    log: Callable[[str], None] | None = None,
    executor: Executor | None = None,
) -> Calibration:
    """Train (or reuse) the STL runs of ``seeds``; run :func:`~mtlens.analysis.calibration.calibrate` on
    A/A splits, then again with the minimum detectable effects spiked in (positive control) on the
    first ``control_splits`` splits (default: all).  ``log`` receives one line once the configs are valid.
    ``executor`` trains the runs (e.g. a :class:`~mtlens.orchestration.executors.LocalExecutor` of N worker
    processes; default: in this process, :func:`~mtlens.orchestration.executors.run_configs`).

    Raises :class:`ConfigError` for fewer than 4 seeds (before any training) and
    :class:`MtlensError` naming the runs that did not finish (no rate is computed from part of them).
    """
    if len(set(seeds)) < 4:
        raise ConfigError(f"--seeds: A/A splits need at least 4 seeds (two groups of 2), got {len(set(seeds))}")
    configs = study_configs(base, sorted(set(seeds)), methods=())  # validates everything first
    if log:
        log(f"calibrate {base['setting']}: STL runs of {len(set(seeds))} seeds -> store {store.root}")
    results = run_configs(configs, store, progress, executor=executor)
    unfinished = results[results["state"] != RunState.FINISHED]
    if len(unfinished):
        raise MtlensError(
            "runs not finished, no calibration computed: "
            + "; ".join(f"{r.run_id} ({r.state})" for r in unfinished.itertuples())
        )
    rows = store.trajectories(results["run_id"].tolist())
    task_info = store.task_info()
    tables: PairedTables = {}
    comparisons = calibrate(rows, task_info, n_splits=n_splits, alpha=alpha, tables=tables)
    effect = detectable_effects(comparisons)
    detections = (
        calibrate(rows, task_info, n_splits=control_splits or n_splits, alpha=alpha, effect=effect, tables=tables)
        if effect
        else comparisons.iloc[:0]
    )
    spiked = pd.MultiIndex.from_tuples(list(effect), names=["task", "measure"])
    detections = detections[pd.MultiIndex.from_frame(detections[["task", "measure"]]).isin(spiked)]
    return Calibration(
        comparisons,
        false_positive_rates(comparisons),
        effect,
        detections,
        false_positive_rates(detections) if len(detections) else pd.DataFrame(),
    )
