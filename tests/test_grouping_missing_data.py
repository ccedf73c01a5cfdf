"""The grouping tables where data are missing or degenerate: fewer than 2 seeds, an STL reference of 0, a
predictor without an affinity for every pair.  Each is stated in the row's ``note`` instead of a crash, a
0/0, or a grouping chosen from missing values counted as 0 (analysis/grouping.py's module docstring)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from grouping_stores import fixed
from mtlens.analysis.grouping import (
    BEST_CHOICE,
    grouping_table,
    higher_order_table,
    missing_pairs,
    predictor_affinities,
)

TASKS = ["a", "b", "c"]
GROUPS = ["a", "b", "c", "a+b", "a+c", "b+c", "a+b+c"]


def _values(seeds: int, stl_error: dict[str, float], seed: int = 0) -> pd.DataFrame:
    """Selected values of every group of three tasks: a task's test error alone is ``stl_error`` (every seed),
    in any group 0.02 to 0.03 above it; validation = test + 0.01."""
    rng = np.random.default_rng(seed)
    records = []
    for s in range(seeds):
        for group in GROUPS:
            tasks = group.split("+")
            role = "stl" if len(tasks) == 1 else "all" if len(tasks) == 3 else "group"
            for task in tasks:
                test = stl_error[task] + (0.0 if role == "stl" else 0.02 + 0.01 * rng.random())
                records.append(
                    {"run_id": f"{group}-{s}", "seed": s, "role": role, "group": group, "task": task}
                    | {"sign": -1.0, "test": test, "val": test + 0.01}
                )
    return pd.DataFrame.from_records(records)


EVEN = {(i, j): 1.0 for i, j in itertools.permutations(TASKS, 2)}


def test_a_row_with_one_seed_is_not_tested_and_says_why():
    table = grouping_table(_values(1, {"a": 0.1, "b": 0.2, "c": 0.3}), TASKS, 2, {"tag": fixed(EVEN)}).set_index(
        "choice"
    )
    assert list(table.index) == ["tag (predicted)", BEST_CHOICE, "all together"]
    # every choice is made on one half of the seeds and read on the other: one seed cannot be split
    for choice in (BEST_CHOICE, "tag (predicted)"):
        assert table.loc[choice, "note"].startswith("not chosen: 1 seed (cross-fitting chooses on one half")
        assert table.loc[choice, "n_seeds"] == 0 and table.loc[choice, "grouping"] == ""
    measured = table.drop([BEST_CHOICE, "tag (predicted)"])
    assert measured["n_seeds"].eq(1).all() and measured["delta_m"].notna().all()
    p_columns = ["p_vs_stl", "p_vs_all", "p_vs_stl_adjusted", "p_vs_all_adjusted"]
    assert measured[p_columns + ["delta_m_low", "delta_m_high", "vs_all_low"]].isna().all().all()
    assert (
        measured["note"]
        .str.contains(r"delta_m not tested: 1 seed\(s\) with every value \(a paired test needs 2\)")
        .all()
    )
    # one seed is the one seed's Δm: all together, each task 0.02-0.03 worse than alone
    values = _values(1, {"a": 0.1, "b": 0.2, "c": 0.3})
    together = values[values["group"] == "a+b+c"].set_index("task")["test"]
    expected = np.mean([-100 * (together[t] - e) / e for t, e in {"a": 0.1, "b": 0.2, "c": 0.3}.items()])
    assert table.loc["all together", "delta_m"] == pytest.approx(expected)


def test_a_zero_stl_reference_is_left_out_of_delta_m_and_named():
    """Task a's STL test error is 0 on every seed: its relative difference is undefined (0/0 or x/0), so every
    Δm is the mean over b and c, and the tests run (previously: inf or NaN Δm, every seed dropped, a crash)."""
    errors = {"a": 0.0, "b": 0.2, "c": 0.3}
    values = _values(4, errors)
    table = grouping_table(values, TASKS, 2, {"tag": fixed(EVEN)}).set_index("choice")
    assert table["n_seeds"].eq(4).all()
    assert np.isfinite(table[["delta_m", "delta_m_low", "delta_m_high", "p_vs_stl"]].to_numpy(float)).all()
    assert table["note"].str.contains("Δm leaves out a (mean STL test metric 0 over seeds", regex=False).all()
    together = values[values["group"] == "a+b+c"].pivot(index="seed", columns="task", values="test")
    per_seed = pd.concat([-100 * (together[t] - errors[t]) / errors[t] for t in ("b", "c")], axis=1).mean(axis=1)
    assert table.loc["all together", "delta_m"] == pytest.approx(per_seed.mean())
    higher = higher_order_table(values, TASKS, 3)
    assert list(higher["grouping"]) == ["a+b+c"]
    assert np.isfinite(higher[["predicted_delta_m", "measured_delta_m"]].to_numpy(float)).all()
    assert higher.loc[0, "measured_delta_m"] == pytest.approx(per_seed.mean())
    assert "Δm leaves out a" in higher.loc[0, "note"]


def test_every_task_with_a_zero_reference_gives_no_delta_m_and_no_crash():
    values = _values(3, dict.fromkeys(TASKS, 0.0))
    values["val"] = values["test"]  # zero on validation too: no grouping has a validation Δm to be chosen by
    table = grouping_table(values, TASKS, 2, {"tag": fixed(EVEN)}).set_index("choice")
    assert table["n_seeds"].eq(0).all() and table["delta_m"].isna().all()
    assert table.loc["all together", "note"].startswith("Δm leaves out a, b, c")
    assert "not chosen: no trained grouping has a validation Δm" in table.loc[BEST_CHOICE, "note"]


def test_a_predictor_missing_a_pair_chooses_nothing():
    """Without b -> c, a predictor whose other affinities favour b+c | a must not choose from the missing value
    counted as 0; with it present, it chooses."""
    values = _values(4, {"a": 0.1, "b": 0.2, "c": 0.3})
    affinity = {(i, j): (1.0 if {i, j} == {"b", "c"} else -1.0) for i, j in itertools.permutations(TASKS, 2)}
    partial = {pair: v for pair, v in affinity.items() if pair != ("b", "c")}
    assert missing_pairs(partial, TASKS) == [("b", "c")]
    assert missing_pairs({**affinity, ("c", "a"): float("nan")}, TASKS) == [("c", "a")]
    table = grouping_table(values, TASKS, 2, {"full": fixed(affinity), "partial": fixed(partial)}).set_index("choice")
    assert table.loc["full (predicted)", "grouping"] == "a | b+c" and table.loc["full (predicted)", "n_seeds"] == 4
    row = table.loc["partial (predicted)"]
    assert row["grouping"] == "" and row["n_seeds"] == 0 and np.isnan(row["delta_m"]) and np.isnan(row["p_vs_stl"])
    assert row["note"] == "not chosen: no partial affinity for 1 of 6 ordered pairs (b -> c)"
    # the chosen grouping's group b+c has no finished run: chosen, but not measured, and the note says so
    unfinished = grouping_table(values[values["group"] != "b+c"], TASKS, 2, {"full": fixed(affinity)}).set_index(
        "choice"
    )
    row = unfinished.loc["full (predicted)"]
    assert row["grouping"] == "a | b+c" and row["n_seeds"] == 0 and np.isnan(row["delta_m"])
    assert row["note"].endswith("; not measured: a group of this grouping has no finished run (rerun the study)")


def test_predictor_affinities_keep_every_predictor_and_only_finite_pairs():
    affinities = pd.DataFrame(
        {
            "source": ["a", "b"],
            "target": ["b", "a"],
            "tag": [0.5, np.nan],
            "cosine": [np.nan, np.nan],
            "early_gap": [1.0, 2.0],
            "transfer_pct": [3.0, np.inf],
        }
    )
    found = predictor_affinities(affinities)
    assert found == {
        "tag": {("a", "b"): 0.5},
        "cosine": {},
        "early_gap": {("a", "b"): 1.0, ("b", "a"): 2.0},
        "transfer_pct": {("a", "b"): 3.0},
    }
