"""The optimization effect of MTL: training loss of MTL vs STL at equal steps (Mueller et al.).

Every MTL run of a setting is paired, per task, with the STL run of that task with the
**same seed** (STL and MTL are trained for the same number of steps with the same
optimizer).  At the common steps ``s`` (the MTL run's recorded steps inside the STL run's
recorded range; the STL curve is linearly interpolated in the step) the log-ratio is

    r(s) = log( L_MTL(s) / L_STL(s) )        (training loss on the fixed training subset)

so ``r < 0`` means MTL reached a lower training loss at the same step (optimization helped)
and ``r > 0`` that MTL slowed the task's optimization down.  Summaries per (setting, task,
method, seed), each over **one common grid per (setting, task)**, the common steps that every
(method, seed) of the task has (runs of one configuration share their steps, so this is every
common step; a run recorded over a shorter range does not average its units over another stage
of training than the rest, which would tie the summaries to the run's length):

    log_ratio_early = mean of r(s) over the common steps with s <= s_min + early_fraction * (s_max - s_min)
    log_ratio_mean  = mean of r(s) over all common steps
    log_ratio_final = r(s_max)
    ratio_final     = exp(log_ratio_final)

Runs are paired by (setting, task, seed) only: pass rows of runs trained with one configuration
per setting (the report relabels settings by configuration where the runs differ).

:func:`steps_to_loss` gives, per run and task, the first recorded step (and its epoch) at
which the training loss is at or below each of a list of levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from mtlens.analysis.inference import bh_adjust, bound_of_samples, grouped_bounds, paired_max_t, scalar_test

TRAIN_LOSS = "train/loss"


def _curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Training-loss rows with finite positive values, sorted by run, task and step."""
    frame = rows[(rows["quantity"] == TRAIN_LOSS) & np.isfinite(rows["value"]) & (rows["value"] > 0)]
    return frame.sort_values(["run_id", "task", "step"])


def loss_ratio_curves(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, task, method, seed, common step): ``log_ratio = log(L_MTL / L_STL)``.

    Columns ``setting, task, method, seed, step, epoch, log_ratio`` (``epoch`` of the MTL run).
    A seed is paired as the transfer table pairs it (:func:`~mtlens.analysis.transfer.paired_or_unpaired`):
    only where it has exactly one MTL run of the method and one STL run of the task, so two runs of one
    method and seed (e.g. other ``method_options`` of a sweep) are never merged into one unit.  MTL runs
    without such a same-seed STL run contribute nothing.
    """
    curves = _curves(rows)
    stl_runs = curves[curves["mode"] == "stl"].groupby(["setting", "task", "seed"])
    stl = {(s, t, int(seed)): frame for (s, t, seed), frame in stl_runs if frame["run_id"].nunique() == 1}
    keys, parts = [], []  # per MTL run and task with a reference: its key and the positions and ratios inside
    mtl = curves[curves["mode"] == "mtl"]
    runs_per_unit = mtl.groupby(["setting", "task", "method", "seed"])["run_id"].nunique()
    groups = mtl.groupby(["setting", "task", "method", "seed", "run_id"]).indices
    mtl_steps, mtl_loss = mtl["step"].to_numpy(float), mtl["value"].to_numpy(float)
    for (setting, task, method, seed, _), rows in sorted(groups.items(), key=lambda group: group[0]):
        reference = stl.get((setting, task, int(seed)))
        if reference is None or runs_per_unit[(setting, task, method, seed)] > 1:
            continue
        ref_steps, ref_loss = reference["step"].to_numpy(float), reference["value"].to_numpy(float)
        steps = mtl_steps[rows]
        inside = (steps >= ref_steps.min()) & (steps <= ref_steps.max())
        if not inside.any():
            continue
        stl_loss = np.interp(steps[inside], ref_steps, ref_loss)
        keys.append((setting, task, method, int(seed), int(inside.sum())))
        parts.append((rows[inside], np.log(mtl_loss[rows[inside]] / stl_loss)))
    columns = ["setting", "task", "method", "seed", "step", "epoch", "log_ratio"]
    if not parts:
        return pd.DataFrame(columns=columns)
    at = np.concatenate([rows for rows, _ in parts])
    counts = [k[4] for k in keys]
    return pd.DataFrame(
        {
            name: np.repeat(np.array([k[i] for k in keys], dtype=object if name != "seed" else int), counts)
            for i, name in enumerate(columns[:4])
        }
        | {
            "step": mtl["step"].to_numpy()[at],
            "epoch": mtl["epoch"].to_numpy()[at],
            "log_ratio": np.concatenate([ratio for _, ratio in parts]),
        }
    )


def optimization_effect(rows: pd.DataFrame, early_fraction: float = 0.25) -> pd.DataFrame:
    """Per (setting, task, method, seed): ``log_ratio_early, log_ratio_mean, log_ratio_final,
    ratio_final, n_steps`` (see the module docstring for the formulas)."""
    if not 0 < early_fraction <= 1:
        raise ValueError(f"early_fraction must be in (0, 1], got {early_fraction}")
    curves = loss_ratio_curves(rows)
    unit = curves["method"].astype(str) + "/" + curves["seed"].astype(str)
    having = unit.groupby([curves["setting"], curves["task"], curves["step"]]).transform("nunique")
    everyone = unit.groupby([curves["setting"], curves["task"]]).transform("nunique")
    curves = curves[having == everyone]  # the steps every (method, seed) of the (setting, task) has
    records = []
    for key, frame in curves.groupby(["setting", "task", "method", "seed"]):
        frame = frame.sort_values("step")
        steps, ratio = frame["step"].to_numpy(float), frame["log_ratio"].to_numpy(float)
        early = steps <= steps.min() + early_fraction * (steps.max() - steps.min())
        records.append(
            dict(zip(["setting", "task", "method", "seed"], key))
            | {
                "log_ratio_early": float(ratio[early].mean()),
                "log_ratio_mean": float(ratio.mean()),
                "log_ratio_final": float(ratio[-1]),
                "ratio_final": float(np.exp(ratio[-1])),
                "n_steps": len(steps),
            }
        )
    columns = [
        "setting",
        "task",
        "method",
        "seed",
        "log_ratio_early",
        "log_ratio_mean",
        "log_ratio_final",
        "ratio_final",
        "n_steps",
    ]
    return pd.DataFrame.from_records(records, columns=columns)


def optimization_tests(effect: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """Per (setting, task, method): the paired test of the per-seed log-ratios of :func:`optimization_effect`.

    Each seed's ``log_ratio_early`` and ``log_ratio_final`` is already an MTL-vs-same-seed-STL
    difference, tested with the paired test of :func:`~mtlens.analysis.inference.scalar_test` (H0:
    the per-seed log-ratios are centred at 0; the level holds for symmetric ones, which H0 "MTL and STL
    are exchangeable within a seed" implies, and for shifted-gamma ones and their sums with normal noise up to
    the column's skewness bound, :func:`~mtlens.analysis.inference.bound_of_samples` over the column's rows of
    one setting: each column is one family, with one bound per setting,
    :func:`~mtlens.analysis.inference.grouped_bounds`).
    Columns per summary ``X``: ``X`` (mean over seeds), ``X_std``, ``X_low``, ``X_high`` (``1 − alpha``
    interval), ``X_p``, ``X_p_adjusted`` (Benjamini–Hochberg over the table's rows at FDR ``alpha``, each
    ``X`` its own family), ``X_min_detectable`` (the log-ratio detected with 80% power at level ``alpha``),
    ``X_skewness_bound`` (the bound of the column's rows of the setting), and ``n_seeds``, ``min_p`` (the
    paired test's floor, not bound to the seeds: :attr:`~mtlens.analysis.inference.MaxTTest.pointwise_min_p`).
    """
    groups = [
        (dict(zip(["setting", "task", "method"], key)), frame)
        for key, frame in effect.groupby(["setting", "task", "method"])
    ]
    records = [key | {"n_seeds": len(frame)} for key, frame in groups]
    settings = [key["setting"] for key, _ in groups]
    for column in ("log_ratio_early", "log_ratio_final"):
        values = [frame[column].to_numpy(float) for _, frame in groups]
        bounds = grouped_bounds(bound_of_samples, values, settings)
        for record, v, bound in zip(records, values, bounds, strict=True):
            record[column], record[f"{column}_std"] = v.mean(), v.std(ddof=1) if len(v) > 1 else np.nan
            if len(v) >= 2:
                summary = scalar_test(paired_max_t(v).with_bound(bound), alpha)
                record |= {
                    f"{column}_low": summary["low"],
                    f"{column}_high": summary["high"],
                    f"{column}_p": summary["p_value"],
                    f"{column}_min_detectable": summary["min_detectable"],
                    f"{column}_skewness_bound": bound.value,
                    "min_p": summary["min_p"],
                }
    table = pd.DataFrame.from_records(records)
    for column in ("log_ratio_early", "log_ratio_final"):
        if f"{column}_p" in table:
            table.insert(
                table.columns.get_loc(f"{column}_p") + 1,
                f"{column}_p_adjusted",
                bh_adjust(table[f"{column}_p"].to_numpy(float), table["min_p"].to_numpy(float), alpha),
            )
    return table


def steps_to_loss(rows: pd.DataFrame, levels: Sequence[float]) -> pd.DataFrame:
    """Per (run, task, level): the first recorded step and epoch with training loss <= level.

    Columns ``setting, run_id, mode, method, seed, task, level, step, epoch``; ``step`` and
    ``epoch`` are NaN where the run never reached the level.
    """
    records = []
    for (setting, run_id, task), frame in _curves(rows).groupby(["setting", "run_id", "task"]):
        first = frame.iloc[0]
        loss, steps, epochs = (frame[c].to_numpy(float) for c in ("value", "step", "epoch"))
        for level in levels:
            reached = np.flatnonzero(loss <= level)
            records.append(
                {
                    "setting": setting,
                    "run_id": run_id,
                    "mode": first["mode"],
                    "method": first["method"],
                    "seed": int(first["seed"]),
                    "task": task,
                    "level": float(level),
                    "step": steps[reached[0]] if len(reached) else np.nan,
                    "epoch": epochs[reached[0]] if len(reached) else np.nan,
                }
            )
    columns = ["setting", "run_id", "mode", "method", "seed", "task", "level", "step", "epoch"]
    return pd.DataFrame.from_records(records, columns=columns)
