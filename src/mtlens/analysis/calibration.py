"""Null calibration: every inference of the report on A/A splits of STL runs (docs/statistics.md).

STL runs of ``2h`` or more seeds per task carry no MTL effect at all.  A split draws two disjoint
groups of ``h`` seeds; the first is relabelled as the "MTL" side (method ``aa``) and compared with
the second exactly as the report compares MTL with STL:

- *paired*: the ``i``-th seed of the first group is given the ``i``-th seed of the second group, so
  the report's same-seed pairing applies (the pairs do not share an initialization, which only
  makes their differences noisier);
- *unpaired*: the first group gets seeds no STL run has, so the report's unpaired tests apply.

Per split, task and (gap) measure or (transfer) metric the tests are: ``gap exists``
(``p_any``), ``persistent gap`` (``p_persistent``: an onset is reported iff it is ``<= alpha``) and
``transfer``; and, on the paired units of :func:`mtlens.analysis.correlation.unit_table` whose
factor ``log_ratio_mean`` is randomly permuted (so it is independent of everything),
``correlation`` (Pearson and Spearman against ``transfer_pct`` and ``gap_mean``).  Every
rejection is a false positive; :func:`false_positive_rates` gives each test's rate with its
Clopper–Pearson interval.  Splits share seeds, so comparisons of different splits are not
independent and the interval is somewhat optimistic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from mtlens.analysis.correlation import correlate, unit_table
from mtlens.analysis.gap import generalization_gap
from mtlens.analysis.inference import clopper_pearson
from mtlens.analysis.transfer import TaskInfo, transfer_table

GAP_MEASURES = ("val/loss", "val/error")
TRANSFER_METRICS = (None, "loss")
"""Transfer is tested on each task's selection metric (``None``) and on the test loss."""
UNPAIRED_OFFSET = 1_000_000
"""Added to the "MTL" group's seeds in the unpaired design, so that no seed matches an STL run."""


def aa_splits(seeds: Sequence[int], n_splits: int, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Up to ``n_splits`` distinct splits of ``seeds`` into two disjoint groups of ``len(seeds) // 2``."""
    seeds = sorted(int(s) for s in seeds)
    half = len(seeds) // 2
    if half < 2:
        raise ValueError(f"A/A splits need at least 4 seeds, got {len(seeds)}")
    rng = np.random.default_rng(seed)
    splits, seen = [], set()
    for _ in range(50 * n_splits):
        order = rng.permutation(seeds)
        first, second = sorted(order[:half].tolist()), sorted(order[half:2 * half].tolist())
        key = (tuple(first), tuple(second))
        if key not in seen:
            seen.add(key)
            splits.append((first, second))
        if len(splits) == n_splits:
            break
    return splits


def aa_rows(stl_rows: pd.DataFrame, first: Sequence[int], second: Sequence[int], paired: bool) -> pd.DataFrame:
    """The rows of the two groups, the first relabelled ``mode=mtl, method=aa`` with seeds matching the
    second group's (paired) or matching none (unpaired)."""
    new_seed = dict(zip(first, second)) if paired else {s: s + UNPAIRED_OFFSET for s in first}
    mtl = stl_rows[stl_rows["seed"].isin(first)].copy()
    mtl["mode"], mtl["method"] = "mtl", "aa"
    mtl["seed"] = mtl["seed"].map(new_seed)
    return pd.concat([stl_rows[stl_rows["seed"].isin(second)], mtl], ignore_index=True)


def _split_comparisons(rows: pd.DataFrame, task_info: TaskInfo, design: str, alpha: float) -> list[dict]:
    records = []
    for task in sorted(rows["task"].unique()):
        for measure in GAP_MEASURES:
            result = generalization_gap(rows, task, measure)
            if result is None or result.test is None:
                continue
            records += [{"test": "gap exists", "task": task, "measure": measure, "design": result.design,
                         "p_value": result.test.p_any, "min_p": result.test.min_p},
                        {"test": "persistent gap (onset)", "task": task, "measure": measure,
                         "design": result.design, "p_value": result.test.p_persistent, "min_p": result.test.min_p}]
    for metric in TRANSFER_METRICS:
        table = transfer_table(rows, task_info, metric, alpha)
        records += [{"test": "transfer", "task": r.task, "measure": r.metric, "design": r.design,
                     "p_value": r.p_value, "min_p": r.min_p} for r in table.itertuples()]
    return [r for r in records if r["design"] == design]


def _correlation_comparisons(rows: pd.DataFrame, task_info: TaskInfo, rng: np.random.Generator) -> list[dict]:
    units = unit_table(rows, task_info)
    factor = rng.permutation(units["log_ratio_mean"].to_numpy(float))
    groups = units[["setting", "task", "seed"]].astype(str).agg("/".join, axis=1).to_numpy()
    records = []
    for target in ("transfer_pct", "gap_mean"):
        result = correlate(factor, units[target], groups, n_boot=200, seed=int(rng.integers(1 << 31)))
        records += [{"test": "correlation", "task": "*", "measure": f"{kind} permuted factor ~ {target}",
                     "design": "cluster permutation", "p_value": result[f"{kind}_p"], "min_p": result["min_p"]}
                    for kind in ("pearson", "spearman")]
    return records


def calibrate(stl_rows: pd.DataFrame, task_info: TaskInfo, n_splits: int = 25, alpha: float = 0.05,
              seed: int = 0) -> pd.DataFrame:
    """One row per A/A comparison: ``split, test, task, measure, design, p_value, min_p, rejected``.

    ``stl_rows`` are trajectory rows of STL runs of one setting and configuration (every task, at
    least 4 seeds); ``rejected`` is ``p_value <= alpha`` (a false positive).
    """
    seeds = sorted(int(s) for s in stl_rows["seed"].unique())
    rng = np.random.default_rng(seed)
    records = []
    for i, (first, second) in enumerate(aa_splits(seeds, n_splits, seed)):
        paired = aa_rows(stl_rows, first, second, paired=True)
        split = _split_comparisons(paired, task_info, "paired", alpha)
        split += _split_comparisons(aa_rows(stl_rows, first, second, paired=False), task_info, "unpaired", alpha)
        split += _correlation_comparisons(paired, task_info, rng)
        records += [{"split": i, **r} for r in split]
    table = pd.DataFrame.from_records(records, columns=["split", "test", "task", "measure", "design", "p_value",
                                                        "min_p"])
    table["rejected"] = table["p_value"] <= alpha
    return table


def false_positive_rates(comparisons: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (test, design): ``comparisons, false_positives, rate, ci_low, ci_high`` (Clopper–Pearson at
    ``confidence``) and ``min_p`` (the largest smallest-attainable p: above alpha, no rejection is possible)."""
    records = []
    for (test, design), frame in comparisons.groupby(["test", "design"], sort=False):
        k, n = int(frame["rejected"].sum()), len(frame)
        low, high = clopper_pearson(k, n, confidence)
        records.append({"test": test, "design": design, "comparisons": n, "false_positives": k, "rate": k / n,
                        "ci_low": low, "ci_high": high, "min_p": float(frame["min_p"].max())})
    return pd.DataFrame.from_records(records)
