"""Simulated grouping stores with a known answer (the selected values :func:`mtlens.analysis.grouping.grouping_table`
reads): every group of the tasks trained at every seed, each run's test and validation error drawn around a known
mean.  Shared by tests/test_grouping_calibration.py and benchmarks/grouping_selection.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from mtlens.analysis.grouping import AffinitySource
from mtlens.analysis.partitions import Affinity

MU = 0.20
"""Mean test error of every task and run: a run ``gain`` lower has Δm ``100 gain / MU`` on its task."""
SEED_SD, RUN_SD = 0.03, 0.004
"""Seed effect shared by every run of a seed (pairing removes it) and each run's own noise."""


def grouping_values(
    rng: np.random.Generator,
    tasks: Sequence[str],
    seeds: int,
    gain: Mapping[str, float] | None = None,
    rho: float = 0.0,
    gain_on_val: bool = True,
    skewed: bool = False,
) -> pd.DataFrame:
    """Selected values of every group of ``tasks`` (joined by ``+``; one task: ``stl``, all: ``all``) at ``seeds``
    seeds: per seed a seed effect ``N(0, SEED_SD)`` per task; per run and task the error ``MU`` + seed effect +
    noise ``N(0, RUN_SD)`` on test and on validation, minus ``gain[group]`` (on test, and on validation with
    ``gain_on_val``).  ``rho``: the correlation of a run's validation and test noise (both read one trained model):
    ``sqrt(rho) r + sqrt(1 - rho) e`` with ``r`` shared; at ``rho = 0`` the draws are those of the stores measured
    before ``rho`` was added (docs/grouping.md).  ``skewed``: every noise term ``RUN_SD (E - 1)``, ``E``
    exponential (mean 0, sd ``RUN_SD``, skewness 2) instead of normal."""

    def noise() -> float:
        return RUN_SD * (rng.exponential() - 1.0) if skewed else rng.normal(0, RUN_SD)

    gain = gain or {}
    groups = ["+".join(g) for size in range(1, len(tasks) + 1) for g in combinations(tasks, size)]
    records = []
    for seed in range(seeds):
        shared = rng.normal(0, SEED_SD, len(tasks))
        for group in groups:
            role = "stl" if "+" not in group else "all" if group.count("+") == len(tasks) - 1 else "group"
            for task in group.split("+"):
                base = MU + shared[tasks.index(task)]
                test_noise, val_noise = noise(), noise()
                if rho:
                    run = noise()
                    test_noise = np.sqrt(rho) * run + np.sqrt(1 - rho) * test_noise
                    val_noise = np.sqrt(rho) * run + np.sqrt(1 - rho) * val_noise
                lower = gain.get(group, 0.0)
                records.append(
                    {"run_id": f"{group}-{seed}", "seed": seed, "role": role, "group": group, "task": task}
                    | {"sign": -1.0, "test": base + test_noise - lower, "val": base + val_noise - lower * gain_on_val}
                )
    return pd.DataFrame.from_records(records)


def fixed(affinity: Affinity) -> AffinitySource:
    """A predictor whose affinities are given, not read from the runs: the same on every set of seeds (so its
    cross-fitted halves choose the one grouping, read on every seed)."""
    return lambda seeds: affinity


def pair_affinity(values: pd.DataFrame, column: str = "test") -> AffinitySource:
    """The measured pairwise transfer of a simulated store (:func:`grouping_values`) read on ``column`` from the runs
    of the given seeds: ``A[i, j] = 100 sign (mean M_j({i, j}) - mean M_j) / |mean M_j|`` over those seeds (the
    transfer table's ``relative_pct``, the ``transfer_pct`` predictor, on ``test``; on ``val`` a predictor read from
    validation only, as ``early_gap``)."""

    per_seed = values.groupby(["seed", "group", "task"])[column].mean().unstack(["group", "task"])
    sign = values.groupby("task")["sign"].first()
    pairs = [(group, *group.split("+")) for group in values["group"].unique() if group.count("+") == 1]

    def source(seeds: Sequence[int]) -> Affinity:
        means = per_seed.reindex(list(seeds)).mean()
        out = {}
        for group, i, j in pairs:
            for partner, task in ((i, j), (j, i)):
                reference = means[(task, task)]
                out[(partner, task)] = 100 * sign[task] * (means[(group, task)] - reference) / abs(reference)
        return out

    return source
