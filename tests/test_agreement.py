"""Issue 23: the report sets a significant transfer verdict beside the gap and optimization verdicts of the
same (setting, method, task) and says, from the tables only, whether they agree, differ with a difference
explained by optimization speed at equal steps, or differ unexplained."""

from __future__ import annotations

import math

import pandas as pd

from mtlens.report.verdicts import answers


def transfer_row(task: str, verdict: str, p: float) -> dict[str, object]:
    return {
        "setting": "toy",
        "task": task,
        "method": "sum",
        "metric": "test/error",
        "stl_mean": 0.2,
        "mtl_mean": 0.25 if verdict == "MTL worse" else 0.15,
        "n_stl": 8,
        "n_mtl": 8,
        "design": "paired",
        "delta": 0.05,
        "delta_low": 0.01,
        "delta_high": 0.09,
        "p_adjusted": p,
        "min_p": 0.0078,
        "min_detectable": 0.03,
        "verdict": verdict,
    }


def gap_row(task: str, measure: str, direction: str, p: float) -> dict[str, object]:
    return {
        "setting": "toy",
        "method": "sum",
        "task": task,
        "measure": measure,
        "n_mtl": 8,
        "n_stl": 8,
        "design": "paired",
        "direction": direction,
        "final_gap": 0.01,
        "final_band_low": -0.01,
        "final_band_high": 0.03,
        "p_persistent_adjusted": p,
        "min_p": 0.0078,
        "band_level": 0.0125,
        "min_detectable_final": 0.02,
    }


def effect_row(task: str, ratio: float, p: float) -> dict[str, object]:
    return {
        "setting": "toy",
        "task": task,
        "method": "sum",
        "n_seeds": 8,
        "log_ratio_final": math.log(ratio),
        "log_ratio_final_low": math.log(ratio) - 0.1,
        "log_ratio_final_high": math.log(ratio) + 0.1,
        "log_ratio_final_p_adjusted": p,
        "log_ratio_final_min_detectable": 0.05,
    }


def tables() -> dict[str, pd.DataFrame]:
    """Task a agrees (worse, worse gap); b: worse with no gap but slower optimization (explained); c: worse
    with no gap and no optimization difference (unexplained); d: better with a gap the other way and faster
    optimization (explained); e: worse with a gap the other way and faster optimization (unexplained);
    f: no transfer verdict (nothing said)."""
    transfer = pd.DataFrame(
        [
            transfer_row("a", "MTL worse", 0.01),
            transfer_row("b", "MTL worse", 0.002),
            transfer_row("c", "MTL worse", 0.03),
            transfer_row("d", "MTL better", 0.02),
            transfer_row("e", "MTL worse", 0.04),
            transfer_row("f", "no evidence", 0.4),
        ]
    )
    gap = pd.DataFrame(
        [
            gap_row("a", "val/loss", "MTL worse", 0.004),
            gap_row("a", "val/error", "no persistent gap", 0.3),
            gap_row("b", "val/error", "no persistent gap", 0.21),
            gap_row("b", "val/loss", "no persistent gap", 0.41),
            gap_row("c", "val/loss", "no persistent gap", 0.6),
            gap_row("d", "val/loss", "MTL worse", 0.02),
            gap_row("e", "val/error", "MTL better", 0.03),
            gap_row("f", "val/loss", "MTL worse", 0.01),
        ]
    )
    effect = pd.DataFrame(
        [
            effect_row("a", 1.1, 0.3),
            effect_row("b", 1.35, 0.001),
            effect_row("c", 1.2, 0.2),
            effect_row("d", 0.8, 0.01),
            effect_row("e", 0.7, 0.004),
            effect_row("f", 1.0, 0.9),
        ]
    )
    return {"transfer": transfer, "gap_onset": gap, "optimization_effect": effect}


def test_agree_explained_and_unexplained():
    sentences = answers(tables())["toy"]["agreement"]
    by_task = {task: [s for s in sentences if f"on task {task}" in s] for task in "abcdef"}
    assert [len(by_task[t]) for t in "abcdef"] == [1, 1, 1, 1, 1, 0]
    (a,), (b,), (c,), (d,), (e,) = (by_task[t] for t in "abcde")
    assert a == (
        "Transfer and the gap agree for MTL (sum) on task a: worse test error (adjusted p = 0.010), and a "
        "persistent gap at equal training loss in the same direction (validation loss, adjusted p = 0.0040)."
    )
    assert b == (
        "The worse test error (adjusted p = 0.0020) of MTL (sum) on task b goes with slower optimization at equal "
        "steps (final training-loss ratio MTL/STL 1.4, adjusted p = 0.0010), not with a persistent gap at equal "
        "training loss, which no test showed (validation loss: adjusted p = 0.41; validation error: adjusted p = "
        "0.21)."
    )
    assert c.startswith("Transfer and the gap differ for MTL (sum) on task c, and the tests do not say why")
    assert c.endswith("nor slower optimization at equal steps (no test showed any).")
    assert d == (
        "Transfer and the gap disagree in sign for MTL (sum) on task d: the better test error (adjusted p = 0.020) "
        "goes with faster optimization at equal steps (final training-loss ratio MTL/STL 0.80, adjusted p = 0.010), "
        "while at equal training loss MTL generalized worse (validation loss, adjusted p = 0.020)."
    )
    assert e.startswith("Transfer and the gap disagree in sign for MTL (sum) on task e, and the tests do not say why")
    assert "MTL generalized better (validation error, adjusted p = 0.030)" in e
    assert e.endswith("does not go with slower optimization at equal steps (MTL optimized it faster).")


def test_optimization_at_the_level_does_not_explain():
    """An optimization p just above alpha explains nothing; one at alpha does (adjusted p ≤ alpha)."""
    t = tables()
    t["optimization_effect"].loc[1, "log_ratio_final_p_adjusted"] = 0.0501
    (b,) = [s for s in answers(t)["toy"]["agreement"] if "on task b" in s]
    assert b.startswith("Transfer and the gap differ") and "(no test showed any)" in b
    t["optimization_effect"].loc[1, "log_ratio_final_p_adjusted"] = 0.05
    (b,) = [s for s in answers(t)["toy"]["agreement"] if "on task b" in s]
    assert b.startswith("The worse test error")


def test_a_gap_no_seeds_could_show_is_said_so():
    t = tables()
    t["gap_onset"].loc[3, "min_detectable_final"] = math.inf
    (b,) = [s for s in answers(t)["toy"]["agreement"] if "on task b" in s]
    assert b.endswith(
        "which no test showed (validation loss: adjusted p = 0.41, with 8 seeds no gap could reach this family's "
        "level 0.0125 (smallest possible p 0.0078); validation error: adjusted p = 0.21)."
    )


def test_nothing_to_compare_without_gap_or_optimization_tables():
    t = tables()
    assert "agreement" not in answers({"transfer": t["transfer"]})["toy"]
    (b,) = [
        s
        for s in answers({"transfer": t["transfer"], "gap_onset": t["gap_onset"]})["toy"]["agreement"]
        if "on task b" in s
    ]
    assert "the tests do not say why" in b


def test_the_summary_counts_a_task_by_the_gaps_the_answers_state():
    """A task with a persistent gap in validation error only has that gap in the summary, as in the answers
    (the summary read validation loss alone); measures that disagree are 'mixed'."""
    from mtlens.report.study_report import study_summary

    transfer = pd.DataFrame(
        {
            "setting": "s",
            "method": "sum",
            "task": ["low", "high", "mid"],
            "verdict": ["MTL worse", "no evidence", "no evidence"],
            "relative_pct": [-10.0, -5.0, 0.0],
        }
    )
    directions = {
        ("low", "val/loss"): "no persistent gap",
        ("low", "val/error"): "MTL worse",
        ("high", "val/loss"): "no persistent gap",
        ("high", "val/error"): "no persistent gap",
        ("mid", "val/loss"): "MTL worse",
        ("mid", "val/error"): "MTL better",
    }
    onsets = pd.DataFrame(
        [{"setting": "s", "method": "sum", "task": t, "measure": m, "direction": d} for (t, m), d in directions.items()]
    )
    summary = study_summary(transfer, onsets, pd.DataFrame(columns=["mode", "quantity"]), pd.DataFrame())
    assert summary["gap_verdict"].iloc[0] == "1 MTL worse, 1 mixed, 1 no persistent gap"
