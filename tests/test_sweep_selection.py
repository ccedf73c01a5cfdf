"""Sweep grids and selection by validation, on synthetic results with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mtlens.errors import ConfigError
from mtlens.orchestration.grid import PAPER_GRID, grid_points, load_grid
from mtlens.orchestration.selection import SelectionCriterion, score_runs, select_points, task_values
from mtlens.orchestration.sweep import grid_candidates

INFO = {
    ("s", "a"): {"selection_metric": "error", "lower_is_better": {"loss": True, "error": True, "accuracy": False}},
    ("s", "b"): {"selection_metric": "error", "lower_is_better": {"loss": True, "error": True, "accuracy": False}},
}


def _rows(run_id: str, mode: str, curves: dict[str, dict[str, list[float]]]) -> pd.DataFrame:
    """Trajectory rows of one run: ``curves[task][quantity]`` is the value at steps 0, 10, 20, ..."""
    records = [
        {
            "run_id": run_id,
            "setting": "s",
            "mode": mode,
            "method": "sum",
            "seed": 0,
            "task": task,
            "step": 10 * k,
            "epoch": float(k),
            "quantity": quantity,
            "value": value,
        }
        for task, quantities in curves.items()
        for quantity, values in quantities.items()
        for k, value in enumerate(values)
    ]
    return pd.DataFrame.from_records(records)


def _curve(error: list[float]) -> dict[str, list[float]]:
    return {
        "val/error": error,
        "val/accuracy": [1 - e for e in error],
        "val/loss": [3 * e for e in error],
        "test/error": error,
    }


def test_task_values_at_best_checkpoint_and_at_final_step():
    rows = _rows("r", "stl", {"a": _curve([0.9, 0.2, 0.4])})
    best = task_values(rows, INFO, SelectionCriterion(at="best"))
    final = task_values(rows, INFO, SelectionCriterion(at="final"))
    assert best[["step", "value", "sign"]].values.tolist() == [[10, 0.2, 1.0]]
    assert final[["step", "value"]].values.tolist() == [[20, 0.4]]
    accuracy = task_values(rows, INFO, SelectionCriterion(metric="accuracy"))
    assert accuracy[["metric", "step", "sign"]].values.tolist() == [["val/accuracy", 10, -1.0]]
    assert accuracy["value"].iloc[0] == pytest.approx(0.8)
    with pytest.raises(ConfigError, match="at=.middle.: Input should be .best. or .final."):
        SelectionCriterion(at="middle")


def _candidates(
    errors: dict[str, list[float]],
    states: dict[str, str] | None = None,
    mode: str = "stl",
    tasks: tuple[str, ...] = ("a",),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One group ``g``; run ``p<i>`` at grid point i with per-task validation error curves ``errors[run]``."""
    rows = pd.concat([_rows(run, mode, {t: _curve(curve) for t in tasks}) for run, curve in errors.items()])
    candidates = pd.DataFrame(
        {
            "group": "g",
            "mode": mode,
            "point": range(len(errors)),
            "run_id": list(errors),
            "state": [(states or {}).get(r, "finished") for r in errors],
        }
    )
    return candidates, rows


def test_selection_picks_lowest_score_and_the_first_grid_point_on_ties():
    candidates, rows = _candidates({"p0": [0.9, 0.5], "p1": [0.8, 0.3], "p2": [0.3, 0.7], "p3": [0.6, 0.3]})
    criterion = SelectionCriterion()
    scored = score_runs(candidates, task_values(rows, INFO, criterion), criterion)
    assert scored["score"].tolist() == pytest.approx([0.5, 0.3, 0.3, 0.3])
    assert select_points(scored)["run_id"].tolist() == ["p1"]  # three-way tie: first in grid order
    final = SelectionCriterion(at="final")
    scored = score_runs(candidates, task_values(rows, INFO, final), final)
    assert select_points(scored)["run_id"].tolist() == ["p1"]  # p1, p3 tie at 0.3 at the end
    by_accuracy = SelectionCriterion(metric="accuracy", at="final")
    scored = score_runs(candidates, task_values(rows, INFO, by_accuracy), by_accuracy)
    assert scored["score"].tolist() == pytest.approx([-0.5, -0.7, -0.3, -0.7])  # higher accuracy = lower score
    assert select_points(scored)["run_id"].tolist() == ["p1"]


def test_failed_diverged_and_non_finite_runs_are_never_selected():
    candidates, rows = _candidates(
        {"p0": [0.9, 0.1], "p1": [0.9, 0.05], "p2": [0.9, np.nan], "p3": [0.9, 0.6]},
        states={"p0": "failed", "p1": "diverged"},
    )
    rows = rows[~((rows["run_id"] == "p2") & (rows["quantity"] == "val/error") & (rows["step"] == 0))]
    criterion = SelectionCriterion(at="final")
    scored = score_runs(candidates, task_values(rows, INFO, criterion), criterion)
    assert scored["eligible"].tolist() == [False, False, False, True]
    assert select_points(scored)["run_id"].tolist() == ["p3"]
    assert select_points(scored.assign(eligible=False)).empty


def test_mtl_combines_tasks_by_mean_or_relative_to_stl():
    # p0: errors (0.2, 0.6); p1: (0.3, 0.4).  STL references: a = 0.1, b = 0.5.
    rows = pd.concat(
        [
            _rows("p0", "mtl", {"a": _curve([0.2]), "b": _curve([0.6])}),
            _rows("p1", "mtl", {"a": _curve([0.3]), "b": _curve([0.4])}),
        ]
    )
    candidates = pd.DataFrame(
        {"group": "mtl:sum", "mode": "mtl", "point": [0, 1], "run_id": ["p0", "p1"], "state": "finished"}
    )
    mean = SelectionCriterion(combine="mean")
    scored = score_runs(candidates, task_values(rows, INFO, mean), mean)
    assert scored["score"].tolist() == pytest.approx([0.4, 0.35])
    relative = SelectionCriterion(combine="relative")
    scored = score_runs(candidates, task_values(rows, INFO, relative), relative, reference={"a": 0.1, "b": 0.5})
    # Brute force: mean over tasks of 100 * (v - v*) / |v*| (lower error is better, so s = +1).
    expected = [
        np.mean([100 * (0.2 - 0.1) / 0.1, 100 * (0.6 - 0.5) / 0.5]),
        np.mean([100 * (0.3 - 0.1) / 0.1, 100 * (0.4 - 0.5) / 0.5]),
    ]
    assert scored["score"].tolist() == pytest.approx(expected)
    assert select_points(scored)["run_id"].tolist() == ["p0"]  # relative and mean disagree here


def test_paper_grid_is_the_default_and_grid_files_are_validated(tmp_path):
    assert load_grid(None) == PAPER_GRID
    assert len(grid_points(PAPER_GRID)) == 54
    path = tmp_path / "grid.yaml"
    path.write_text("lr: [0.1, 0.01]\nbatch_size: [8, 16, 32]\n")
    points = grid_points(load_grid(path))
    assert points[:2] == [{"lr": 0.1, "batch_size": 8}, {"lr": 0.1, "batch_size": 16}] and len(points) == 6
    for text, key in (
        ("lrr: [0.1]", "lrr: unknown key"),
        ("seed: [1, 2]", "seed: set by the sweep"),
        ("lr: 0.1", "lr: expected a non-empty list"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=key):
            load_grid(path)


def test_every_grid_point_is_validated_before_any_run(tiny):
    with pytest.raises(ConfigError, match="lr"):
        grid_candidates(tiny, {"lr": [1e-3, -1.0]}, ["sum"], seed=0)
    with pytest.raises(ConfigError, match="batch_size: swept by the grid"):
        grid_candidates(tiny, {"batch_size": [8]}, ["sum"], seed=0)
    with pytest.raises(ConfigError, match="method"):
        grid_candidates(tiny, {"lr": [1e-3]}, ["no_such_method"], seed=0)
    candidates, configs = grid_candidates(
        {k: v for k, v in tiny.items() if k != "batch_size"}, {"lr": [1e-2, 1e-3], "batch_size": [16]}, ["sum"], seed=0
    )
    assert candidates["group"].tolist() == ["stl:a"] * 2 + ["stl:b"] * 2 + ["mtl:sum"] * 2
    assert len(configs) == 6 and {c.seed for c in configs.values()} == {0}


def _status(selected: list, candidates: list, problems: list, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from pathlib import Path

    from mtlens.cli import _sweep_status
    from mtlens.orchestration.sweep import SweepResult

    frame = lambda records, columns: pd.DataFrame.from_records(records, columns=columns)  # noqa: E731
    result = SweepResult(
        selected=frame(selected, ["group", "point"]),
        candidates=frame(candidates, ["group", "run_id", "state"]),
        problems=frame(problems, ["run_id", "state", "message", "phase"]),
        directory=Path("."),
    )
    code = _sweep_status(result)
    return code, capsys.readouterr().err


def test_sweep_status_says_why_a_group_has_no_point_and_counts_diverged_seed_runs(capsys):
    """Audit E 2026-12-06: with --combine relative and an STL reference of 0 every MTL grid run of a group that
    finished had an infinite score, and the sweep said 'every grid run failed or diverged' and to rerun; a seed
    run of a selected point that diverged gave exit 0 with fewer seeds than asked."""
    code, err = _status(
        [("stl:a", 0), ("mtl:sum", None)],
        [("stl:a", "s0", "finished"), ("mtl:sum", "m0", "finished"), ("mtl:sum", "m1", "finished")],
        [],
        capsys,
    )
    assert code == 1 and "mtl:sum: its finished grid runs have no finite score" in err
    assert "--combine mean" in err and "failed or diverged" not in err and "rerun" not in err
    code, err = _status(
        [("stl:a", 0), ("mtl:sum", None)],
        [("stl:a", "s0", "finished"), ("mtl:sum", "m0", "diverged")],
        [("m0", "diverged", "non-finite loss at step 3", "grid")],
        capsys,
    )
    assert code == 1 and "no grid point selected for mtl:sum (every grid run failed or diverged)" in err
    code, err = _status(
        [("stl:a", 0), ("mtl:sum", 0)],
        [("stl:a", "s0", "finished"), ("mtl:sum", "m0", "finished")],
        [("m0-s1", "diverged", "non-finite loss at step 1", "seeds")],
        capsys,
    )
    assert code == 1 and "1 seed runs of a selected grid point diverged: m0-s1" in err
    code, _ = _status(
        [("stl:a", 0), ("mtl:sum", 1)],
        [("stl:a", "s0", "finished"), ("mtl:sum", "m0", "diverged"), ("mtl:sum", "m1", "finished")],
        [("m0", "diverged", "non-finite loss at step 3", "grid")],
        capsys,
    )
    assert code == 0  # a diverged grid point alone is a result of the sweep


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"lr": [0.01, 0.01]}, r"lr: value\(s\) 0.01 given more than once"),
        ({"threads": [1, 2]}, "threads: says where a run executes"),
        ({"pack_size": [1, 2]}, "pack_size: says where a run executes"),
        ({"lr": [0.01, "1e-2"]}, "are the same run"),
    ],
)
def test_grid_points_that_are_one_run_are_refused(grid, message):
    """Audit E 2026-12-06: ``lr: [0.01, 0.01]`` listed one run id as two points, and ``threads: [1, 2]`` made
    both points one run whose selected.csv said threads 1 while it trained with 2."""
    with pytest.raises(ConfigError, match=message):
        grid_candidates({"setting": "digits_pair"}, grid, ["sum"], 0)
