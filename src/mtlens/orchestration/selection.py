"""Selecting a grid point by validation performance.

Every grid run is reduced to one **score** (lower is better) by a
:class:`SelectionCriterion`, and each group (an STL task, or an MTL method) selects the
eligible grid point with the lowest score.  For run ``r`` and task ``t`` let ``v_rt`` be
the validation value ``val/<metric>`` of ``t``:

* ``at="best"``: at the run's validation-selected checkpoint for ``t`` (the recorded step
  with the best ``val/<metric>``, earliest on ties; :func:`mtlens.analysis.transfer.selected_checkpoints`);
* ``at="final"``: at the last recorded step.

With ``s_t = +1`` if lower is better for the metric and ``-1`` otherwise, the score is

* ``combine="mean"``:     ``score_r = mean_t s_t * v_rt``  (the mean raw metric, oriented);
* ``combine="relative"``: ``score_r = mean_t 100 * s_t * (v_rt - v*_t) / |v*_t|``, where
  ``v*_t`` is the value of the STL run selected for ``t`` (minus the Delta_m-style relative
  improvement over STL, in %; use it when tasks' metrics have different scales).

An STL run has one task, so ``combine`` does not change which STL point is selected; its
score is always the oriented raw value.  ``metric=None`` uses each task's own selection
metric.  Only ``finished`` runs with a finite score for every task are eligible (failed and
diverged runs never win).  Ties are broken deterministically: the first grid point in grid
order wins.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mtlens.analysis.transfer import TaskInfo, selected_checkpoints, selection_info
from mtlens.registry import check_option_values
from mtlens.store import RunState


@dataclass(frozen=True)
class SelectionCriterion:
    """How a grid run is scored; see the module docstring for the formulas."""

    metric: str | None = None
    at: Literal["best", "final"] = "best"
    combine: Literal["mean", "relative"] = "mean"

    def __post_init__(self) -> None:
        """Check the fields against their annotations (the one statement of what each accepts)."""
        check_option_values("selection criterion", type(self), dataclasses.asdict(self))

    def describe(self) -> str:
        metric = f"val/{self.metric}" if self.metric else "each task's validation selection metric"
        where = "at the best checkpoint" if self.at == "best" else "at the final step"
        return f"{metric} {where}; MTL tasks combined by {self.combine}"


def task_values(rows: pd.DataFrame, task_info: TaskInfo, criterion: SelectionCriterion) -> pd.DataFrame:
    """One row per (run, task): ``run_id, task, metric, step, value, sign`` (``sign = s_t``)."""
    if rows.empty:
        return pd.DataFrame(columns=["run_id", "task", "metric", "step", "value", "sign"])
    info = {
        key: {**value, "selection_metric": criterion.metric or value["selection_metric"]}
        for key, value in task_info.items()
    }
    pairs = rows[["setting", "task"]].drop_duplicates().itertuples(index=False)
    for setting, task in pairs:
        info.setdefault(
            (setting, task),
            {**selection_info(task_info, setting, task), "selection_metric": criterion.metric or "loss"},
        )
    if criterion.at == "best":
        steps = selected_checkpoints(rows, info)[["setting", "run_id", "task", "step"]]
    else:
        steps = rows.groupby(["setting", "run_id", "task"], as_index=False)["step"].max()
    metrics = [info[(setting, task)]["selection_metric"] for setting, task in zip(steps["setting"], steps["task"])]
    steps = steps.assign(
        metric=[f"val/{m}" for m in metrics],
        sign=[
            1.0 if info[key]["lower_is_better"].get(m, False) else -1.0
            for key, m in zip(zip(steps["setting"], steps["task"]), metrics)
        ],
    )
    values = rows.rename(columns={"quantity": "metric"})[["run_id", "task", "step", "metric", "value"]]
    merged = steps.merge(values, on=["run_id", "task", "step", "metric"], how="left")
    return merged[["run_id", "task", "metric", "step", "value", "sign"]].astype({"step": int, "value": float})


def score_runs(
    candidates: pd.DataFrame,
    values: pd.DataFrame,
    criterion: SelectionCriterion,
    reference: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """``candidates`` (``group, mode, point, run_id, state``) with ``score`` and ``eligible`` added.

    ``reference`` maps task -> ``v*_t`` (needed for MTL runs when ``combine="relative"``).
    """
    scores = []
    for run in candidates.itertuples(index=False):
        run_values = values[values["run_id"] == run.run_id]
        v, s = run_values["value"].to_numpy(float), run_values["sign"].to_numpy(float)
        if run_values.empty:
            score = np.nan
        elif run.mode == "mtl" and criterion.combine == "relative":
            ref = np.array([(reference or {}).get(t, np.nan) for t in run_values["task"]], float)
            with np.errstate(divide="ignore", invalid="ignore"):
                score = float(np.mean(100.0 * s * (v - ref) / np.abs(ref)))
        else:
            score = float(np.mean(s * v))
        scores.append(score)
    scored = candidates.assign(score=scores)
    return scored.assign(eligible=(scored["state"] == RunState.FINISHED) & np.isfinite(scored["score"]))


def select_points(scored: pd.DataFrame) -> pd.DataFrame:
    """Per group, the eligible row with the lowest score (the first grid point on ties)."""
    eligible = scored[scored["eligible"]].sort_values(["group", "score", "point"], kind="stable")
    return eligible.groupby("group", sort=False).head(1).reset_index(drop=True)
