"""The grouping table's Benjamini–Hochberg family (mtlens.analysis.grouping.grouping_table): each distinct
comparison once.  Two predictors choosing the same grouping, the exhaustive best being that grouping, and the
best against all-together next to all-together against the best are one test each; a grouping compared with
itself is no test (NaN, said in the note), not a p-value of 1 that inflates the family's m."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from grouping_stores import fixed
from mtlens.analysis.grouping import BEST_CHOICE, grouping_table

TASKS = ("a", "b", "c")
GROUPS = ("a", "b", "c", "a+b", "a+c", "b+c", "a+b+c")
PAIR_AB = {(i, j): 1.0 if {i, j} == {"a", "b"} else 0.0 for i in TASKS for j in TASKS if i != j}


def _values(seed: int = 0, seeds: int = 6) -> pd.DataFrame:
    """Every group of three tasks at ``seeds`` seeds: test error 0.20 plus run noise (sd 0.004), a+b's runs 0.01
    lower on validation and test alike (so every half of the seeds chooses a+b | c), all-together 0.005 higher."""
    rng = np.random.default_rng(seed)
    records = []
    for s in range(seeds):
        for group in GROUPS:
            role = "stl" if len(group) == 1 else "all" if group == "a+b+c" else "group"
            shift = -0.01 if group == "a+b" else 0.005 if group == "a+b+c" else 0.0
            for task in group.split("+"):
                test, val = 0.2 + shift + rng.normal(0, 0.004, 2)
                records.append(
                    {"run_id": f"{group}-{s}", "seed": s, "role": role, "group": group, "task": task}
                    | {"sign": -1.0, "test": test, "val": val}
                )
    return pd.DataFrame.from_records(records)


def test_the_family_holds_each_distinct_comparison_once():
    table = grouping_table(_values(), TASKS, 2, {"tag": fixed(PAIR_AB), "cosine": fixed(PAIR_AB)}).set_index("choice")
    assert list(table["grouping"]) == ["a+b | c", "a+b | c", "a+b | c", "a+b+c"]
    tag, cosine, best, together = (table.iloc[k] for k in range(4))
    # Duplicate rows: the same grouping, the same tests, the same adjusted p-values.
    for column in ("delta_m", "p_vs_stl", "p_vs_stl_adjusted", "vs_all", "p_vs_all", "p_vs_all_adjusted"):
        assert tag[column] == cosine[column] == best[column], column
    # A grouping against itself is no test: difference 0, no interval, no p-value, said in the note.
    for row, column in ((tag, "vs_best"), (best, "vs_best"), (together, "vs_all")):
        p = "p_" + column
        assert row[column] == 0 and row[[f"{column}_low", f"{column}_high", p, f"{p}_adjusted"]].isna().all()
    assert "vs_best: the same runs as the exhaustive best, not a test" in tag["note"]
    assert "vs_all: the same runs as all together, not a test" in together["note"]
    # all-together against the best is the best against all-together, negated: one test.
    assert together["vs_best"] == pytest.approx(-best["vs_all"])
    assert (together["vs_best_low"], together["vs_best_high"]) == pytest.approx(
        (-best["vs_all_high"], -best["vs_all_low"])
    )
    assert together["p_vs_best"] == best["p_vs_all"] and together["p_vs_best_adjusted"] == best["p_vs_all_adjusted"]
    # The family: a+b | c against STL and against all-together, all-together against STL: m = 3.
    distinct = np.array([best["p_vs_stl"], best["p_vs_all"], together["p_vs_stl"]])
    adjusted = stats.false_discovery_control(distinct)
    assert [best["p_vs_stl_adjusted"], best["p_vs_all_adjusted"], together["p_vs_stl_adjusted"]] == pytest.approx(
        adjusted
    )
    # What the family of every cell gave (m = 12: a+b | c three times against STL and four times against
    # all-together, four self-comparisons at p = 1): a larger adjusted p-value of the same comparison.
    cells = np.concatenate([np.repeat(distinct, [3, 4, 1]), np.ones(4)])
    assert stats.false_discovery_control(cells)[0] > 1.2 * adjusted[0]
    assert table.loc[BEST_CHOICE, "note"].startswith("chosen by validation Δm on the other half of the seeds")


def test_the_best_reads_the_tables_halves_of_the_seeds_with_or_without_a_predictor_choosing_its_grouping():
    """Seed 3 has test values but no validation value.  The best skips it inside its choice, not in the split: it
    reads the same halves {0, 1} | {2, 3} as the predictor, so the two rows (both a+b | c) are one series of 4 seeds
    and one test.  Split apart (the best halving only seeds 0-2), the two shared a comparison key and the best's row
    printed the predictor's 4-seed Δm and p-value beside its own 3 seeds; alone it showed another p."""
    values = _values(seeds=4)
    values.loc[values["seed"] == 3, "val"] = np.nan
    columns = ["grouping", "n_seeds", "delta_m", "delta_m_low", "delta_m_high", "p_vs_stl", "vs_all", "p_vs_all"]
    alone = grouping_table(values, TASKS, 2, {}).set_index("choice").loc[BEST_CHOICE, columns]
    table = grouping_table(values, TASKS, 2, {"tag": fixed(PAIR_AB)}).set_index("choice")
    assert table.loc[BEST_CHOICE, columns].equals(alone)
    assert alone["n_seeds"] == 4 and alone["grouping"] == "a+b | c"
    assert table.loc["tag (predicted)", columns].equals(alone)
