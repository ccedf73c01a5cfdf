"""Elich et al.: gradient alignment between and within tasks, magnitude ratios, Adam vs SGD.

- **Alignment distributions**: the inter-task cosine ``probe/conflict_cosine`` of every task
  pair in MTL runs next to the intra-task cosines of STL runs, between disjoint halves of a
  batch (``probe/intra_cosine_subbatch``) and between class groups
  (``probe/intra_cosine_classgroup``).  If inter-task cosines are no more negative than
  intra-task ones, angles alone do not single out MTL (Elich et al.'s finding).  The conflict
  cosine is of gradients over the whole probe sample, the sub-batch cosine of half-batch gradients,
  whose noise pulls it towards 0; where MTL runs ran the probe ``inter_alignment``, their
  ``probe/inter_cosine_subbatch`` (task pairs at the sub-batch cosine's noise) is the like-for-like
  inter-task kind.
- **Magnitude ratios**: ``probe/magnitude_ratio = ||g_a|| / ||g_b||`` of MTL runs, summarized
  per pair by the median of ``|log10 ratio|`` (orders of magnitude between the tasks).
- **Optimizers**: runs that differ in ``optimizer`` (and ``momentum``) in the run index,
  compared by the test selection metric at the validation-selected checkpoint.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlens.analysis.transfer import TaskInfo, selected_checkpoints, selection_info
from mtlens.quantities import (
    CONFLICT_COSINE,
    INTER_COSINE_SUBBATCH,
    INTRA_COSINE_CLASSGROUP,
    INTRA_COSINE_SUBBATCH,
    MAGNITUDE_RATIO,
)

ALIGNMENT_KINDS = {
    CONFLICT_COSINE: ("inter-task (MTL)", "mtl"),
    INTER_COSINE_SUBBATCH: ("inter-task, sub-batches (MTL)", "mtl"),
    INTRA_COSINE_SUBBATCH: ("intra-task, sub-batches (STL)", "stl"),
    INTRA_COSINE_CLASSGROUP: ("intra-task, class groups (STL)", "stl"),
}


def comparability_note(kinds: set[str]) -> str:
    """Which of the alignment ``kinds`` present (labels of :data:`ALIGNMENT_KINDS`) may be set side by side, in
    words, for the report's caption and answers; empty where there is only one side (inter- or intra-task).
    The whole-sample conflict cosine and the half-batch cosines differ in noise (a half-batch gradient's
    noise pulls a cosine towards 0), so only the sub-batch kinds are alike."""
    whole, sub = (ALIGNMENT_KINDS[q][0] in kinds for q in (CONFLICT_COSINE, INTER_COSINE_SUBBATCH))
    intra = bool(kinds & {ALIGNMENT_KINDS[q][0] for q in (INTRA_COSINE_SUBBATCH, INTRA_COSINE_CLASSGROUP)})
    if not intra or not (whole or sub):
        return ""
    if sub:
        return (
            "compare 'inter-task, sub-batches' (task pairs on halves of the same batches) with 'intra-task, "
            "sub-batches': the two differ only in the task of the second gradient"
            + ("; the whole-sample inter-task cosine has less noise than either" if whole else "")
        )
    return (
        "the inter-task cosine is of gradients over the whole probe sample, the intra-task ones of half-batches "
        "or class groups of one training batch, whose noise pulls a cosine towards 0, so the two are not "
        "comparable as printed; the probe inter_alignment (--set 'probes=[...,inter_alignment]') adds the "
        "inter-task cosine at the sub-batch noise"
    )


def alignment_distributions(rows: pd.DataFrame) -> pd.DataFrame:
    """Long table of cosines: ``setting, kind, run_id, method, seed, task, step, epoch, value``.

    ``kind`` names the comparison (see :data:`ALIGNMENT_KINDS`): inter-task cosines from MTL
    runs, intra-task cosines from STL runs.
    """
    parts = []
    for quantity, (kind, mode) in ALIGNMENT_KINDS.items():
        frame = rows[(rows["quantity"] == quantity) & (rows["mode"] == mode) & np.isfinite(rows["value"])]
        parts.append(frame.assign(kind=kind))
    columns = ["setting", "kind", "run_id", "method", "seed", "task", "step", "epoch", "value"]
    return pd.concat(parts, ignore_index=True)[columns]


def alignment_summary(distributions: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, kind): ``n`` cosines from ``n_runs`` runs, their mean, std, median and the
    fraction below zero."""
    grouped = distributions.groupby(["setting", "kind"])
    summary = grouped["value"].agg(n="count", mean="mean", std="std", median="median")
    summary["fraction_negative"] = grouped["value"].apply(lambda v: float((v < 0).mean()))
    summary["n_runs"] = grouped["run_id"].nunique()
    return summary.reset_index()


def magnitude_ratio_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method, task pair) of MTL runs: ``n`` values from ``n_runs`` runs, the median
    ratio ``||g_a||/||g_b||``, the median and 90th percentile of ``|log10 ratio|``."""
    frame = rows[
        (rows["quantity"] == MAGNITUDE_RATIO)
        & (rows["mode"] == "mtl")
        & np.isfinite(rows["value"])
        & (rows["value"] > 0)
    ]
    frame = frame.assign(abs_log10=np.abs(np.log10(frame["value"])))
    grouped = frame.groupby(["setting", "method", "task"])
    summary = grouped.agg(
        n=("value", "count"),
        n_runs=("run_id", "nunique"),
        median_ratio=("value", "median"),
        median_abs_log10=("abs_log10", "median"),
        p90_abs_log10=("abs_log10", lambda v: float(np.quantile(v, 0.9))),
    )
    return summary.reset_index().rename(columns={"task": "pair"})


def optimizer_comparison(index: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo) -> pd.DataFrame:
    """Per (setting, task, mode, method, optimizer, momentum, lr): the test selection metric at the
    selected checkpoint, ``mean, std, n`` over runs (seeds): runs of one optimizer at several learning rates
    (the optimizers experiment's grid) are not pooled.

    ``index`` is the run index (:meth:`mtlens.store.RunStore.runs`), which holds each run's
    ``optimizer`` and ``momentum``; a run that did not record one of them (a user's loop whose
    ``hyperparameters`` left it out) has NaN there, grouped as its own value.  The table compares
    optimizers only where the index holds more than one (:func:`optimizers_compared`).
    """
    selected = selected_checkpoints(rows, task_info)
    if selected.empty:
        return pd.DataFrame()
    selected = selected.merge(index.reindex(columns=["run_id", "optimizer", "momentum", "lr"]), on="run_id")
    records = []
    keys = ["setting", "task", "mode", "method", "optimizer", "momentum", "lr"]
    for key, frame in selected.groupby(keys, dropna=False):
        info = selection_info(task_info, key[0], key[1])
        metric = f"test/{info['selection_metric']}"
        values = frame[metric].dropna().to_numpy(float) if metric in frame else np.array([])
        if len(values) == 0:
            continue
        records.append(
            dict(zip(keys, key))
            | {
                "metric": metric,
                "mean": values.mean(),
                "std": values.std(ddof=1) if len(values) > 1 else np.nan,
                "n": len(values),
            }
        )
    return pd.DataFrame.from_records(records)


def optimizers_compared(index: pd.DataFrame) -> bool:
    """Whether the runs use more than one recorded optimizer, or (optimizer, momentum) combination
    (a run index without a ``momentum`` column, e.g. of recorded runs, compares optimizers alone)."""
    if "optimizer" not in index or index["optimizer"].isna().all():
        return False
    return index.reindex(columns=["optimizer", "momentum"]).drop_duplicates().shape[0] > 1
