"""Analyses of the assumptions-study experiments (:mod:`mtlens.experiments`).

Every function takes an experiment's manifest (one row per run with its labels) and the
runs' trajectory rows, and returns a tidy table; the report renders them.

* :func:`optimizer_table` -- per (optimizer, method): the learning rate with the best mean
  validation selection metric (over tasks and seeds), and at that lr each task's test value at
  its validation-selected checkpoint, mean and std over seeds, and the mean over tasks.
* :func:`loss_scale_table` -- per (optimizer, scale ``c``): each task's test value at the
  validation-selected checkpoint and the final one, mean over seeds, and the runs that diverged.
* :func:`alignment_table` -- per (mode, quantity, task): the mean and std over probe steps
  and seeds of the cosines and magnitude ratios.
* :func:`corruption_table` -- per (task, mode, corruption): probe accuracy at each severity
  and its mean over severities, mean over seeds (descriptive).
* :func:`corruption_tests` -- per (task, corruption): the MTL − STL difference of the drop
  (clean − mean over severities) with the transfer table's test (paired by seed), its interval and
  Benjamini–Hochberg over the table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mtlens.analysis.inference import bh_adjust
from mtlens.analysis.transfer import (
    TaskInfo,
    difference_test,
    family_bound,
    paired_or_unpaired,
    selected_checkpoints,
)
from mtlens.quantities import (
    CONFLICT_COSINE,
    GRAD_NORM,
    INTER_COSINE_SUBBATCH,
    INTRA_COSINE_CLASSGROUP,
    INTRA_COSINE_SUBBATCH,
    MAGNITUDE_RATIO,
)
from mtlens.states import RunState

ALIGNMENT_QUANTITIES = (
    CONFLICT_COSINE,
    INTER_COSINE_SUBBATCH,
    INTRA_COSINE_SUBBATCH,
    INTRA_COSINE_CLASSGROUP,
    MAGNITUDE_RATIO,
    GRAD_NORM,
)
"""The probe quantities the alignment experiment compares (names of :mod:`mtlens.probes`)."""


def _selection(task_info: TaskInfo, setting: str, task: str) -> tuple[str, bool]:
    info = task_info.get((setting, task), {"selection_metric": "loss", "lower_is_better": {"loss": True}})
    metric = info["selection_metric"]
    return metric, bool(info["lower_is_better"].get(metric, metric == "loss"))


def selected_values(rows: pd.DataFrame, task_info: TaskInfo) -> pd.DataFrame:
    """Per (run, task): the selected step, the validation and test value of the task's selection
    metric there (columns ``run_id, task, metric, lower_is_better, val, test``)."""
    selected = selected_checkpoints(rows, task_info)
    records = []
    for row in selected.to_dict("records"):
        metric, lower = _selection(task_info, row["setting"], row["task"])
        at = rows[
            (rows["run_id"] == row["run_id"])
            & (rows["task"] == row["task"])
            & (rows["step"] == row["step"])
            & (rows["quantity"] == f"val/{metric}")
        ]["value"]
        records.append(
            {
                "run_id": row["run_id"],
                "task": row["task"],
                "metric": metric,
                "lower_is_better": lower,
                "val": float(at.iloc[0]) if len(at) else np.nan,
                "test": row.get(f"test/{metric}", np.nan),
            }
        )
    return pd.DataFrame.from_records(records, columns=["run_id", "task", "metric", "lower_is_better", "val", "test"])


def _spread(values: pd.Series) -> dict[str, Any]:
    return {"mean": values.mean(), "std": values.std(ddof=1) if len(values) > 1 else np.nan, "n": len(values)}


def optimizer_table(
    manifest: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(selected, grid)``: the table per (optimizer, method) at the validation-selected lr, and
    the mean validation/test value of every grid point (see the module docstring)."""
    values = selected_values(rows, task_info).merge(
        manifest[["run_id", "optimizer", "method", "lr", "seed"]], on="run_id"
    )
    if values.empty:
        return pd.DataFrame(), pd.DataFrame()
    sign = np.where(values["lower_is_better"], 1.0, -1.0)
    values = values.assign(val_score=sign * values["val"])
    grid = values.groupby(["optimizer", "method", "lr"], as_index=False).agg(
        val=("val", "mean"), test=("test", "mean"), val_score=("val_score", "mean"), runs=("run_id", "nunique")
    )
    scored = grid.dropna(subset=["val_score"])  # grid points whose runs recorded no validation value are skipped
    best = scored.loc[scored.groupby(["optimizer", "method"])["val_score"].idxmin()]
    records = []
    for row in best.itertuples():
        chosen = values[
            (values["optimizer"] == row.optimizer) & (values["method"] == row.method) & (values["lr"] == row.lr)
        ]
        record: dict[str, Any] = {"optimizer": row.optimizer, "method": row.method, "lr": row.lr}
        for task, frame in chosen.groupby("task"):
            stats = _spread(frame["test"])
            record[f"{task}_test_{frame['metric'].iloc[0]}"] = stats["mean"]
            record[f"{task}_std"] = stats["std"]
        per_seed = chosen.groupby("seed")["test"].mean()
        record.update({"average": per_seed.mean(), "average_std": _spread(per_seed)["std"], "seeds": len(per_seed)})
        records.append(record)
    return pd.DataFrame.from_records(records), grid.drop(columns="val_score")


def loss_scale_table(
    manifest: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo, states: pd.Series
) -> pd.DataFrame:
    """Per (optimizer, scale, task): the test value at the validation-selected checkpoint (mean
    over the seeds whose runs are in ``rows``) and the number of the manifest's runs of that
    (optimizer, scale) that diverged (``states`` maps run id to its state).  Diverged runs have no
    rows here (analyses read finished runs only); an (optimizer, scale) whose runs all diverged
    gets one row with no task and no values."""
    values = selected_values(rows, task_info).merge(
        manifest[["run_id", "optimizer", "scale", "scaled_task"]], on="run_id"
    )
    diverged = (
        manifest.assign(diverged=manifest["run_id"].map(states).eq(RunState.DIVERGED))
        .groupby(["optimizer", "scale"], as_index=False)
        .agg(diverged=("diverged", "sum"), scaled_task=("scaled_task", "first"))
    )
    if values.empty and not diverged["diverged"].any():
        return pd.DataFrame()
    table = values.groupby(["optimizer", "scale", "task", "metric"], as_index=False).agg(
        test_mean=("test", "mean"), test_std=("test", "std"), runs=("run_id", "nunique")
    )
    table = table.merge(diverged, on=["optimizer", "scale"], how="outer")
    table = table[table["task"].notna() | (table["diverged"] > 0)]
    return table.sort_values(["optimizer", "task", "scale"]).reset_index(drop=True)


def alignment_table(manifest: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """Per (mode, quantity, task): mean, std and count over probe steps (> 0) and seeds."""
    probes = rows[
        rows["run_id"].isin(manifest["run_id"]) & rows["quantity"].isin(ALIGNMENT_QUANTITIES) & (rows["step"] > 0)
    ]
    if probes.empty:
        return pd.DataFrame()
    return probes.groupby(["mode", "quantity", "task"], as_index=False)["value"].agg(mean="mean", std="std", n="count")


def corruption_table(accuracy: pd.DataFrame) -> pd.DataFrame:
    """Per (task, mode, corruption): mean accuracy over seeds at each severity, its mean over
    severities 1..5 (``mean_corrupted``), and the drop from the clean accuracy."""
    per = accuracy.groupby(["task", "mode", "corruption", "severity"], as_index=False)["accuracy"].mean()
    clean = per[per["corruption"] == "none"].set_index(["task", "mode"])["accuracy"]
    wide = (
        per[per["corruption"] != "none"]
        .pivot_table(index=["task", "mode", "corruption"], columns="severity", values="accuracy")
        .rename(columns=lambda s: f"severity_{s}")
    )
    wide["mean_corrupted"] = wide.mean(axis=1)
    wide = wide.reset_index()
    wide["clean"] = [clean.get((t, m), np.nan) for t, m in zip(wide["task"], wide["mode"])]
    wide["drop"] = wide["clean"] - wide["mean_corrupted"]
    return wide


def corruption_tests(accuracy: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per (task, corruption): each encoder's drop (clean accuracy − its mean over severities 1..5) and
    the transfer table's test of MTL − STL drop (:func:`~mtlens.analysis.transfer.difference_test`: paired
    by seed where at least 2 seeds have both encoders, else Welch; one skewness bound for the table,
    :func:`~mtlens.analysis.transfer.family_bound`): ``delta`` > 0 means the MTL encoder loses more,
    with its ``1 − alpha`` interval; ``p_adjusted`` is Benjamini–Hochberg over the table at FDR ``alpha``
    (discrete-aware).  Columns ``task, corruption, n_stl, n_mtl, stl_drop, mtl_drop`` then the test's."""
    keys = ["run_id", "mode", "seed", "task"]
    clean = accuracy[accuracy["corruption"] == "none"].groupby(keys)["accuracy"].mean().rename("clean")
    corrupted = accuracy[accuracy["corruption"] != "none"].groupby([*keys, "corruption"])["accuracy"].mean()
    drops = corrupted.rename("corrupted").reset_index().join(clean, on=keys)
    drops["drop"] = drops["clean"] - drops["corrupted"]
    rows = []
    for (task, corruption), frame in drops.groupby(["task", "corruption"], sort=True):
        mtl, stl, paired = paired_or_unpaired(frame, "drop")
        if len(mtl) and len(stl):
            rows.append((task, corruption, mtl, stl, paired))
    if not rows:
        return pd.DataFrame()
    bound = family_bound([(mtl, stl, paired) for *_, mtl, stl, paired in rows])
    records = [
        {
            "task": task,
            "corruption": corruption,
            "n_stl": len(stl),
            "n_mtl": len(mtl),
            "stl_drop": stl.mean(),
            "mtl_drop": mtl.mean(),
            **difference_test(mtl, stl, paired, alpha, bound),
        }
        for task, corruption, mtl, stl, paired in rows
    ]
    table = pd.DataFrame.from_records(records)
    adjusted = bh_adjust(table["p_value"].to_numpy(float), table["min_p"].to_numpy(float), alpha)
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", adjusted)
    return table
