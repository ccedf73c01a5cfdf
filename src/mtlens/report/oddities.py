"""Warnings where the data is odd: notes the report shows next to the rows they concern.

Each function takes the frames the report already has and returns ``key columns + note`` rows (one
sentence per oddity, several joined by "; " by :func:`notes`), merged into the shown table's ``note``
column (the CSV keeps it too):

- :func:`step_zero_notes` -- the validation-selected checkpoint is the untrained one (step 0): the test
  compares initializations, not training;
- :func:`tie_notes` -- a selection tie: the best validation value was reached at several steps (the
  earliest is taken, :func:`~mtlens.analysis.transfer.selected_checkpoints`);
- :func:`early_window_notes` -- the optimization effect's early window (first 25% of the steps) holds
  only step 0, where both runs are untrained: the early log-ratio says nothing about optimization;
- :func:`loss_range_notes` -- runs whose lowest training loss is far above the others' (over
  :data:`LIMIT_FACTOR` times their median) limit the common training-loss range of the gap curves;
- :func:`collapse_notes` -- an MTL method whose task weights collapsed onto one task (mean weight share
  over the second half of training ≥ :data:`COLLAPSE_SHARE`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtlens.analysis.transfer import TaskInfo, selection_info

KEYS = ["setting", "task", "method"]
LIMIT_FACTOR = 2.0
"""A run limits the common loss range when its lowest training loss exceeds this multiple of the median."""
COLLAPSE_SHARE = 0.95
"""A method collapsed onto one task when that task's share of the summed weights is at least this."""
EARLY_FRACTION = 0.25
"""The early window of :func:`~mtlens.analysis.optimization.optimization_effect` (its default)."""


def _frame(records: list[dict], keys: Sequence[str] = KEYS) -> pd.DataFrame:
    return pd.DataFrame.from_records(records, columns=[*keys, "note"])


def _by_method(selected: pd.DataFrame) -> pd.DataFrame:
    """STL rows repeated once per MTL method of their (setting, task), so notes land on every compared row."""
    mtl = selected[selected["mode"] == "mtl"]
    pairs = mtl[["setting", "task", "method"]].drop_duplicates()
    stl = selected[selected["mode"] == "stl"].drop(columns="method").merge(pairs, on=["setting", "task"])
    return pd.concat([stl, mtl], ignore_index=True)


def step_zero_notes(selected: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, task, method): how many STL and MTL runs selected step 0 (``selected``: the rows
    of :func:`~mtlens.analysis.transfer.selected_checkpoints`)."""
    if selected.empty:
        return _frame([])
    records = []
    for key, frame in _by_method(selected).groupby(KEYS):
        zero = frame[frame["step"] == 0]
        if len(zero):
            counts = ", ".join(
                f"{(zero['mode'] == m).sum()} of {(frame['mode'] == m).sum()} {m.upper()}" for m in ("stl", "mtl")
            )
            records.append(
                dict(zip(KEYS, key)) | {"note": f"checkpoint selected at step 0 (untrained) in {counts} runs"}
            )
    return _frame(records)


def tie_notes(rows: pd.DataFrame, selected: pd.DataFrame, task_info: TaskInfo) -> pd.DataFrame:
    """Per (setting, task, method): runs whose selection metric reached its selected value at more than
    one validation step (``rows``: trajectory rows)."""
    if selected.empty:
        return _frame([])
    metrics = {
        (s, t): "val/" + selection_info(task_info, s, t)["selection_metric"]
        for s, t in selected[["setting", "task"]].drop_duplicates().itertuples(index=False)
    }
    val = rows[rows["quantity"].isin(set(metrics.values()))]
    val = val[[metrics.get((s, t)) == q for s, t, q in zip(val["setting"], val["task"], val["quantity"])]]
    at = selected[["run_id", "task", "step"]].merge(
        val[["run_id", "task", "step", "value"]], on=["run_id", "task", "step"]
    )
    best = at.drop_duplicates(["run_id", "task"]).set_index(["run_id", "task"])["value"]
    val = val.join(best.rename("best"), on=["run_id", "task"])
    tied = val[np.isclose(val["value"], val["best"], rtol=0, atol=0)].groupby(["run_id", "task"])["step"].nunique()
    tied_runs = set(tied[tied > 1].index)
    records = []
    for key, frame in _by_method(selected).groupby(KEYS):
        n = sum((r, t) in tied_runs for r, t in zip(frame["run_id"], frame["task"]))
        if n:
            records.append(
                dict(zip(KEYS, key))
                | {
                    "note": f"selection tie in {n} of {len(frame)} runs "
                    "(best validation value at several steps; earliest taken)"
                }
            )
    return _frame(records)


def early_window_notes(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, task, method) of MTL runs: the early window holds only step 0."""
    loss = rows[(rows["quantity"] == "train/loss") & (rows["mode"] == "mtl")]
    records = []
    for key, frame in loss.groupby(KEYS):
        steps = np.unique(frame["step"].to_numpy(float))
        if len(steps) > 1 and (steps <= steps.min() + EARLY_FRACTION * (steps.max() - steps.min())).sum() == 1:
            records.append(
                dict(zip(KEYS, key))
                | {"note": "early window holds only step 0 (untrained): the early log-ratio is uninformative"}
            )
    return _frame(records)


def loss_range_notes(checkpoints: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, task, method): runs (STL or MTL) whose lowest training loss exceeds
    :data:`LIMIT_FACTOR` times the median over the compared runs (``checkpoints``: one row per (run, task,
    step) with ``train/loss``, ``mode``, ``method``, ``seed``)."""
    if checkpoints.empty or "train/loss" not in checkpoints:
        return _frame([])
    lowest = checkpoints.groupby(["setting", "task", "run_id", "mode", "method", "seed"], as_index=False)[
        "train/loss"
    ].min()
    records = []
    for key, frame in _by_method(lowest.rename(columns={"train/loss": "lowest"})).groupby(KEYS):
        median = frame["lowest"].median()
        limiting = frame[frame["lowest"] > LIMIT_FACTOR * median]
        if len(limiting) and median > 0:
            runs = ", ".join(f"{m.upper()} seed {s}" for m, s in zip(limiting["mode"], limiting["seed"]))
            records.append(
                dict(zip(KEYS, key))
                | {
                    "note": f"{runs} {'limits' if len(limiting) == 1 else 'limit'} the common training-loss "
                    f"range (lowest loss "
                    f"{limiting['lowest'].max():.3g} vs median {median:.3g})"
                }
            )
    return _frame(records)


def collapse_notes(rows: pd.DataFrame, weight: str = "method/weight") -> pd.DataFrame:
    """Per (setting, method): task weights collapsed onto one task over the second half of training."""
    weights = rows[(rows["mode"] == "mtl") & (rows["quantity"] == weight)]
    records = []
    for (setting, method), frame in weights.groupby(["setting", "method"]):
        late = frame[frame["epoch"] >= frame["epoch"].max() / 2]
        mean = late.groupby("task")["value"].mean().abs()
        if len(mean) > 1 and mean.sum() > 0 and mean.max() / mean.sum() >= COLLAPSE_SHARE:
            records += [
                {
                    "setting": setting,
                    "task": task,
                    "method": method,
                    "note": f"task weights collapsed onto task {mean.idxmax()} "
                    f"({mean.max() / mean.sum():.0%} of the weight)",
                }
                for task in mean.index
            ]
    return _frame(records)


def notes(parts: Sequence[pd.DataFrame], keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """The notes of ``parts`` joined by "; " per key."""
    frames = [p for p in parts if len(p)]
    if not frames:
        return _frame([], keys)
    joined = pd.concat(frames).groupby(list(keys), sort=False)["note"].agg("; ".join)
    return joined.reset_index()


def with_notes(table: pd.DataFrame, parts: Sequence[pd.DataFrame], keys: Sequence[str] = KEYS) -> pd.DataFrame:
    """``table`` with a ``note`` column (empty where nothing is odd) from ``parts``."""
    if table.empty:
        return table
    joined = notes(parts, keys)
    return table.merge(joined, on=list(keys), how="left") if len(joined) else table.assign(note=np.nan)
