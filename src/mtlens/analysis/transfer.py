"""Transfer: final MTL vs STL test performance at the validation-selected checkpoint.

For every run and task, the selected checkpoint is the recorded step with the best
validation value of the task's selection metric (earliest step on ties).  At that step
the test metric ``M`` is read.  Over seeds, per task and MTL method:

    delta          = mean(M_MTL) - mean(M_STL)
    relative (%)   = 100 * sigma * delta / |mean(M_STL)|,   sigma = -1 if lower is better else +1

so ``relative > 0`` always means MTL is better (positive transfer); the per-method
``delta_m`` (Maninis et al.) is the mean of ``relative`` over tasks.  ``p_value`` is
Welch's two-sided t-test between the seeds (NaN with fewer than 2 seeds per side).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mtlens.tasks import selection_scores

TaskInfo = dict[tuple[str, str], dict[str, Any]]


def selection_info(task_info: TaskInfo, setting: str, task: str) -> dict[str, Any]:
    """The task's ``selection_metric`` and ``lower_is_better`` map; validation loss when the store has none."""
    return task_info.get((setting, task), {"selection_metric": "loss", "lower_is_better": {"loss": True}})


def selected_checkpoints(runs: pd.DataFrame, task_info: TaskInfo) -> pd.DataFrame:
    """One row per (run, task): the selected step and every ``test/*`` value at that step."""
    records = []
    for (setting, run_id, task), frame in runs.groupby(["setting", "run_id", "task"], sort=True):
        info = selection_info(task_info, setting, task)
        metric = info["selection_metric"]
        val = frame[frame["quantity"] == f"val/{metric}"].sort_values("step")
        if val.empty:
            continue
        values = val["value"].to_numpy(float)
        lower = info["lower_is_better"].get(metric, False)
        scores = selection_scores(values, lower)
        best_step = int(val["step"].to_numpy()[int(np.argmin(scores))])
        at_step = frame[(frame["step"] == best_step) & frame["quantity"].str.startswith("test/")]
        first = frame.iloc[0]
        record = {"setting": setting, "run_id": run_id, "task": task, "mode": first["mode"],
                  "method": first["method"], "seed": int(first["seed"]), "step": best_step,
                  "epoch": float(val["epoch"].to_numpy()[int(np.argmin(scores))])}
        record.update(dict(zip(at_step["quantity"], at_step["value"])))
        records.append(record)
    return pd.DataFrame.from_records(records)


def transfer_table(runs: pd.DataFrame, task_info: TaskInfo, metric: str | None = None) -> pd.DataFrame:
    """Per (setting, task, MTL method): STL and MTL test ``metric`` over seeds and the transfer.

    ``metric`` defaults to each task's selection metric.
    """
    selected = selected_checkpoints(runs, task_info)
    if selected.empty:
        return pd.DataFrame()
    records = []
    for (setting, task), frame in selected.groupby(["setting", "task"], sort=False):
        info = selection_info(task_info, setting, task)
        name = metric or info["selection_metric"]
        column = f"test/{name}"
        if column not in frame:
            continue
        stl = frame.loc[frame["mode"] == "stl", column].dropna().to_numpy(float)
        sign = -1.0 if info["lower_is_better"].get(name, False) else 1.0
        for method, mtl_frame in frame[frame["mode"] == "mtl"].groupby("method"):
            mtl = mtl_frame[column].dropna().to_numpy(float)
            if len(stl) == 0 or len(mtl) == 0:
                continue
            delta = mtl.mean() - stl.mean()
            p_value = (stats.ttest_ind(mtl, stl, equal_var=False).pvalue
                       if len(mtl) > 1 and len(stl) > 1 else np.nan)
            records.append({
                "setting": setting, "task": task, "method": method, "metric": f"test/{name}",
                "stl_mean": stl.mean(), "stl_std": stl.std(ddof=1) if len(stl) > 1 else np.nan, "n_stl": len(stl),
                "mtl_mean": mtl.mean(), "mtl_std": mtl.std(ddof=1) if len(mtl) > 1 else np.nan, "n_mtl": len(mtl),
                "delta": delta,
                "relative_pct": 100.0 * sign * delta / abs(stl.mean()) if stl.mean() != 0 else np.nan,
                "p_value": p_value,
            })
    return pd.DataFrame.from_records(records)


def delta_m(table: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method): the mean relative improvement over tasks (``delta_m``, %)."""
    return (table.groupby(["setting", "method"], as_index=False)["relative_pct"].mean()
            .rename(columns={"relative_pct": "delta_m_pct"}))
