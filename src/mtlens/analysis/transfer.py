"""Transfer: final MTL vs STL test performance at the validation-selected checkpoint.

For every run and task, the selected checkpoint is the recorded step with the best
validation value of the task's selection metric (earliest step on ties).  At that step
the test metric ``M`` is read.  Over seeds, per task and MTL method:

    delta          = mean(M_MTL) - mean(M_STL)
    relative (%)   = 100 * sigma * delta / |mean(M_STL)|,   sigma = -1 if lower is better else +1

so ``relative > 0`` always means MTL is better (positive transfer); the per-method
``delta_m`` (Maninis et al.) is the mean of ``relative`` over tasks.

The test is **paired by seed** (STL and MTL of one seed share initialization and batch order):
with at least 2 seeds having both runs, ``delta`` is the mean of ``d_s = M_MTL,s − M_STL,s`` over
those seeds and ``p_value`` the paired test of the ``d_s`` (Hall's skewness-corrected t, ``df = n − 1``;
:attr:`~mtlens.analysis.inference.MaxTTest.pointwise_p`); otherwise the runs are compared unpaired
(Hall's correction of Welch's t, least favourable over skewed groups and variance ratios).  ``design`` says which;
``delta_low/high`` is the test's interval at ``1 − alpha``, ``effect_size`` Hedges' g_z (paired) or g
(bias-corrected Cohen's d_z / d), ``df`` the test's degrees of freedom, ``min_p`` the smallest
p-value the test allows (not bound to 2/2^n), ``min_detectable`` the difference the test detects with
80% power at ``alpha``, ``min_detectable_lone`` the one it detects at ``lone_level = alpha / m``, the level a
lone effect must reach after Benjamini–Hochberg over the ``m`` rows of the table's family (what the report's sentence
states; the rows :func:`~mtlens.analysis.inference.bh_adjust` counts: tested, with a ``min_p`` that can reach
``alpha``),
``skewness`` the sample skewness of the paired differences (the
symmetry check of :func:`~mtlens.analysis.inference.symmetry_diagnostic`)
(:mod:`mtlens.analysis.inference`).  ``p_adjusted`` is Benjamini–Hochberg over the table's rows
(one family, discrete-aware).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mtlens.analysis.inference import (
    FIXED_BOUND,
    MaxTTest,
    SkewnessBound,
    attainable,
    bh_adjust,
    bound_of_samples,
    grouped_bounds,
    paired_max_t,
    sample_skewness,
    scalar_test,
    unpaired_max_t,
)
from mtlens.tasks import selection_scores

TaskInfo = dict[tuple[str, str], dict[str, Any]]


def selection_info(task_info: TaskInfo, setting: str, task: str) -> dict[str, Any]:
    """The task's ``selection_metric`` and ``lower_is_better`` map; validation loss when the store has none."""
    return task_info.get((setting, task), {"selection_metric": "loss", "lower_is_better": {"loss": True}})


def selected_checkpoints(runs: pd.DataFrame, task_info: TaskInfo) -> pd.DataFrame:
    """One row per (run, task) with validation rows of its selection metric: ``setting, run_id, task,
    mode, method, seed``, the selected ``step`` and its ``epoch``, and every ``test/*`` value at that
    step; rows sorted by (setting, run_id, task).

    All (run, task) at once: each validation row of the task's selection metric gets its
    :func:`~mtlens.tasks.selection_scores` score, and the row of the smallest score (earliest step
    on ties) is the selected checkpoint."""
    keys = ["setting", "run_id", "task"]
    pairs = runs[["setting", "task"]].drop_duplicates()
    infos = [selection_info(task_info, setting, task) for setting, task in pairs.itertuples(index=False)]
    metrics = pairs.assign(
        quantity=["val/" + info["selection_metric"] for info in infos],
        lower=[bool(info["lower_is_better"].get(info["selection_metric"], False)) for info in infos],
    )
    val = runs.merge(metrics, on=["setting", "task", "quantity"]) if len(metrics) else metrics
    if val.empty:  # no validation rows of a selection metric (or no rows at all): no row, the same columns
        return pd.DataFrame(columns=[*keys, "mode", "method", "seed", "step", "epoch"])
    value = val["value"].to_numpy(float)
    val["score"] = np.where(val["lower"], selection_scores(value, True), selection_scores(value, False))
    best = val.sort_values([*keys, "score", "step"], kind="stable").drop_duplicates(keys)
    best = best[[*keys, "mode", "method", "seed", "step", "epoch"]].astype({"seed": int, "step": int, "epoch": float})
    test = runs[runs["quantity"].str.startswith("test/")].merge(best[[*keys, "step"]], on=[*keys, "step"])
    test = test.sort_values(keys, kind="stable")
    last = test.drop_duplicates([*keys, "quantity"], keep="last")  # a repeated row: its last value
    values = last.pivot(index=keys, columns="quantity", values="value")[list(pd.unique(test["quantity"]))]
    values.columns.name = None
    return best.merge(values.reset_index(), on=keys, how="left").sort_values(keys).reset_index(drop=True)


def paired_or_unpaired(values: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(mtl, stl, paired)`` from rows with ``mode, seed, column``: the same-seed values when at least
    2 seeds have one finite value in both modes (paired, in seed order), else all finite values per mode
    (unpaired, by seed, then row order)."""
    value = values[column].to_numpy(float)
    finite = np.isfinite(value)
    by_mode: dict[str, dict[Any, list[float]]] = {"mtl": {}, "stl": {}}
    for mode, seed, v in zip(values["mode"].to_numpy()[finite], values["seed"].to_numpy()[finite], value[finite]):
        if mode in by_mode:
            by_mode[mode].setdefault(seed, []).append(v)
    mtl, stl = (dict(sorted(by_mode[m].items())) for m in ("mtl", "stl"))
    common = [s for s in mtl if s in stl and len(mtl[s]) == 1 and len(stl[s]) == 1]
    if len(common) >= 2:
        return np.array([mtl[s][0] for s in common]), np.array([stl[s][0] for s in common]), True
    return (
        np.array([v for vs in mtl.values() for v in vs], float),
        np.array([v for vs in stl.values() for v in vs], float),
        False,
    )


def difference_test(
    mtl: np.ndarray,
    stl: np.ndarray,
    paired: bool,
    alpha: float,
    bound: SkewnessBound = FIXED_BOUND,
) -> dict[str, Any]:
    """``design, delta, delta_low, delta_high, effect_size, df, p_value, min_p, min_detectable, skewness,
    skewness_bound`` of MTL − STL: the paired test of the per-seed differences under the skewness ``bound``
    (paired; its setting's, :func:`family_bound`) or Hall's two-sample test (unpaired) of
    :func:`~mtlens.analysis.inference.scalar_test`, its ``1 − alpha`` interval and the difference it
    detects with 80% power at ``alpha``; NaN where a side has fewer than 2 values."""
    return _summary(_one_level_test(mtl, stl, paired, bound), mtl, stl, paired, alpha, bound)


def _summary(
    test: MaxTTest | None, mtl: np.ndarray, stl: np.ndarray, paired: bool, alpha: float, bound: SkewnessBound
) -> dict[str, Any]:
    """:func:`difference_test`'s columns from its one-level ``test`` (:func:`_one_level_test`)."""
    delta = float(mtl.mean() - stl.mean()) if len(mtl) and len(stl) else np.nan
    if test is None:
        names = ["delta_low", "delta_high", "effect_size", "df", "p_value", "min_p", "min_detectable"]
        return {"design": "none", "delta": delta} | dict.fromkeys([*names, "skewness", "skewness_bound"], np.nan)
    summary = scalar_test(test, alpha)
    return {
        "design": test.design,
        "delta": delta,
        "delta_low": summary["low"],
        "delta_high": summary["high"],
        "effect_size": summary["effect_size"],
        "df": summary["df"],
        "p_value": summary["p_value"],
        "min_p": summary["min_p"],
        "min_detectable": summary["min_detectable"],
        "skewness": sample_skewness(mtl - stl) if paired else np.nan,
        "skewness_bound": bound.value if paired else np.nan,
    }


def _one_level_test(mtl: np.ndarray, stl: np.ndarray, paired: bool, bound: SkewnessBound) -> MaxTTest | None:
    """The test of :func:`difference_test` (one level), ``None`` where a side has fewer than 2 values."""
    if paired:
        return paired_max_t(mtl - stl).with_bound(bound)
    if len(mtl) >= 2 and len(stl) >= 2:
        return unpaired_max_t(mtl, stl)
    return None


def family_bound(samples: Sequence[tuple[np.ndarray, np.ndarray, bool]]) -> SkewnessBound:
    """The skewness bound of a family of :func:`difference_test` rows ``(mtl, stl, paired)``:
    :func:`~mtlens.analysis.inference.bound_of_samples` of the paired rows' differences."""
    return bound_of_samples([mtl - stl for mtl, stl, is_paired in samples if is_paired])


def verdict(delta: float, p_adjusted: float, alpha: float, lower_is_better: bool) -> str:
    """``MTL better``/``MTL worse`` only where the adjusted p-value is at most ``alpha``."""
    if not (np.isfinite(p_adjusted) and p_adjusted <= alpha):
        return "no evidence"
    return "MTL better" if (delta < 0) == lower_is_better else "MTL worse"


def transfer_table(
    runs: pd.DataFrame, task_info: TaskInfo, metric: str | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """Per (setting, task, MTL method): STL and MTL test ``metric`` over seeds and the transfer test.

    ``metric`` defaults to each task's selection metric.  Means and stds are over the seeds used by
    the test (the common seeds when paired); ``p_adjusted`` is Benjamini–Hochberg over the whole
    table, and ``verdict`` is stated only where ``p_adjusted <= alpha``.
    """
    return transfer_tests(selected_checkpoints(runs, task_info), task_info, metric, alpha)


def transfer_tests(
    selected: pd.DataFrame, task_info: TaskInfo, metric: str | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """:func:`transfer_table` from the rows of :func:`selected_checkpoints`."""
    if selected.empty:
        return pd.DataFrame()
    rows = []
    for (setting, task), frame in selected.groupby(["setting", "task"], sort=False):
        info = selection_info(task_info, setting, task)
        name = metric or info["selection_metric"]
        column = f"test/{name}"
        if column not in frame:
            continue
        lower = info["lower_is_better"].get(name, False)
        for method, mtl_frame in frame[frame["mode"] == "mtl"].groupby("method"):
            mtl, stl, paired = paired_or_unpaired(pd.concat([frame[frame["mode"] == "stl"], mtl_frame]), column)
            if len(stl) == 0 or len(mtl) == 0:
                continue
            rows.append((setting, task, method, column, lower, mtl, stl, paired))
    samples = [(mtl, stl, paired) for *_, mtl, stl, paired in rows]
    bounds = grouped_bounds(family_bound, samples, [setting for setting, *_ in rows])
    one_level = [
        _one_level_test(mtl, stl, paired, bound) for (*_, mtl, stl, paired), bound in zip(rows, bounds, strict=True)
    ]
    tests = [
        _summary(test, mtl, stl, paired, alpha, bound)
        for (*_, mtl, stl, paired), bound, test in zip(rows, bounds, one_level, strict=True)
    ]
    min_p, p_values = (np.array([test[name] for test in tests], float) for name in ("min_p", "p_value"))
    lone_level = alpha / max(1, int((np.isfinite(p_values) & attainable(min_p, alpha, len(tests))).sum()))
    records = []
    for (setting, task, method, column, lower, mtl, stl, _), test, one in zip(rows, tests, one_level, strict=True):
        lone = float(one.min_detectable(lone_level)[0]) if one is not None else np.nan
        records.append(
            {
                "setting": setting,
                "task": task,
                "method": method,
                "metric": column,
                "stl_mean": stl.mean(),
                "stl_std": stl.std(ddof=1) if len(stl) > 1 else np.nan,
                "n_stl": len(stl),
                "mtl_mean": mtl.mean(),
                "mtl_std": mtl.std(ddof=1) if len(mtl) > 1 else np.nan,
                "n_mtl": len(mtl),
                **test,
                "min_detectable_lone": lone,
                "lone_level": lone_level,
                "relative_pct": 100.0 * (-1 if lower else 1) * test["delta"] / abs(stl.mean())
                if stl.mean() != 0
                else np.nan,
                "lower_is_better": lower,
            }
        )
    table = pd.DataFrame.from_records(records)
    if table.empty:
        return table
    adjusted = bh_adjust(table["p_value"].to_numpy(float), table["min_p"].to_numpy(float), alpha)
    table.insert(table.columns.get_loc("p_value") + 1, "p_adjusted", adjusted)
    table["verdict"] = [
        verdict(d, p, alpha, lower)
        for d, p, lower in zip(table["delta"], table["p_adjusted"], table.pop("lower_is_better"))
    ]
    return table


def delta_m(table: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method): the mean relative improvement over tasks (``delta_m``, %)."""
    return (
        table.groupby(["setting", "method"], as_index=False)["relative_pct"]
        .mean()
        .rename(columns={"relative_pct": "delta_m_pct"})
    )
