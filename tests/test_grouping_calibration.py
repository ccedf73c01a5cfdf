"""The grouping table's Δm intervals and p-values on simulated stores with a known answer: on null data
(no grouping differs from all-together or from STL) the 95% intervals cover the truth and the tests reject
at their level; with a known improvement of the chosen grouping, their power is measured.  The seeds share
a large common effect (init and data order), so an analysis that did not pair by seed would have far
wider intervals and lose the power asserted here.  docs/grouping.md states the figures measured here."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlens.analysis.grouping import grouping_table
from mtlens.analysis.inference import paired_power

TASKS = ("a", "b", "c")
GROUPS = ("a", "b", "c", "a+b", "a+c", "b+c", "a+b+c")
SEEDS = 6
MU = 0.20
"""Mean test error of every task and run: Δm is ``100 (MU_STL - MU_group) / MU_STL`` per task."""
SEED_SD, RUN_SD = 0.03, 0.004
"""Seed effect shared by every run of a seed (pairing removes it) and each run's own noise."""
PREDICTOR = {(i, j): 1.0 if {i, j} == {"a", "b"} else 0.0 for i in TASKS for j in TASKS if i != j}
"""An affinity whose best grouping into 2 networks is a+b | c (every pair given: a predictor missing one chooses
nothing)."""
CHOSEN = "tag (predicted)"


def _values(rng: np.random.Generator, gain: float) -> pd.DataFrame:
    """The selected values of a grouping store on ``TASKS`` (:func:`grouping_table`'s input): every group
    trained at ``SEEDS`` seeds; the group ``a+b`` has a test error ``gain`` lower than every other run
    (``gain = 0``: the null)."""
    records = []
    for seed in range(SEEDS):
        shared = rng.normal(0, SEED_SD, len(TASKS))
        for group in GROUPS:
            role = "stl" if len(group) == 1 else "all" if group == "a+b+c" else "group"
            for task in group.split("+"):
                base = MU + shared[TASKS.index(task)]
                test = base + rng.normal(0, RUN_SD) - (gain if group == "a+b" else 0.0)
                val = base + rng.normal(0, RUN_SD)
                records.append(
                    {"run_id": f"{group}-{seed}", "seed": seed, "role": role, "group": group, "task": task}
                    | {"sign": -1.0, "test": test, "val": val}
                )
    return pd.DataFrame.from_records(records)


def _simulate(gain: float, n_sim: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tables = []
    for sim in range(n_sim):
        table = grouping_table(_values(rng, gain), TASKS, 2, {"tag": PREDICTOR}, exhaustive=False)
        tables.append(table.set_index("choice").loc[[CHOSEN]].assign(sim=sim))
    return pd.concat(tables)


def _covers(table: pd.DataFrame, column: str, truth: float) -> float:
    return float(((table[f"{column}_low"] <= truth) & (truth <= table[f"{column}_high"])).mean())


N_SIM = 400
LEVEL_SLACK = 2.5 * np.sqrt(0.05 * 0.95 / N_SIM)
"""Simulation error allowed above the 5% level (2.5 binomial standard errors at ``N_SIM`` stores)."""


def test_grouping_intervals_cover_and_tests_keep_their_level_on_null_stores():
    table = _simulate(0.0, N_SIM, seed=0)
    assert (table["grouping"] == "a+b | c").all() and (table["n_seeds"] == SEEDS).all()
    for column in ("delta_m", "vs_all"):
        assert _covers(table, column, 0.0) >= 0.93, column
    for p in ("p_vs_stl", "p_vs_all"):
        assert (table[p] <= 0.05).mean() <= 0.05 + LEVEL_SLACK, p
    # Not conservative to uselessness either: the nominal 95% is met, not overshot to ~100%.
    assert _covers(table, "vs_all", 0.0) <= 0.98


def test_grouping_tests_have_power_against_a_known_improvement():
    gain = 0.008  # a+b's error 0.008 lower than every other run's
    truth = 2 / 3 * 100 * gain / MU  # Δm of a+b | c, against STL and against all-together: 2.67 points
    table = _simulate(gain, 150, seed=1)
    for column in ("delta_m", "vs_all"):
        assert _covers(table, column, truth) >= 0.93, column
        assert abs(table[column].mean() - truth) < 0.05 * truth, column  # unbiased
    # Per seed, vs_all differences three run pairs (a, b in a+b against all; c alone against all), each with
    # sd 500 * RUN_SD * sqrt(2), averaged over 3 tasks: d_z = 2.67 / 1.63 = 1.63; against STL two pairs (c is
    # its own STL run): d_z = 2.67 / 1.33 = 2.0.  The paired test's own power at those d_z (simulated by
    # `paired_power`, the function behind min_detectable) is what the rejections must reach, within 3
    # binomial standard errors; without the same-seed STL reference and pairing, the seed sd 0.03 (15 Δm
    # points) would leave them below 0.1.
    for column, sd in (("p_vs_all", 500 * RUN_SD * np.sqrt(2) / np.sqrt(3)), ("p_vs_stl", 500 * RUN_SD * 2 / 3)):
        expected = paired_power(truth / sd, SEEDS, 0.05)
        observed = (table[column] <= 0.05).mean()
        assert expected > 0.5 and observed >= expected - 3 * np.sqrt(expected * (1 - expected) / len(table)), (
            column,
            observed,
            expected,
        )
