"""The alignment experiment (Elich et al. 2023): are task gradients less aligned than a task's own?

STL per task and MTL (``sum``) with the ``conflict`` and ``alignment`` probes: inter-task gradient
cosine and magnitude ratio (MTL) against intra-task sub-batch and class-group cosine (STL and MTL),
tabulated by :func:`mtlens.analysis.assumptions.alignment_table`.  With the option ``like_for_like`` the MTL
runs also run the probe ``inter_alignment``: the inter-task cosine of half-batch gradients, at the noise of the
intra-task sub-batch cosine (off by default, so that the runs of earlier stores keep their ids and are reused).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.analysis.assumptions import alignment_table
from mtlens.experiments.base import Experiment, ExperimentPlan, plan_runs, register_experiment, stl_and_mtl
from mtlens.quantities import GRAD_NORM, UPDATE_COSINE
from mtlens.render import save_figure, table_html
from mtlens.render.charts import Spec, concat, inline_data, line_chart, tip
from mtlens.settings import Setting
from mtlens.store import RunStore

ALIGNMENT_PROBES = ["conflict", "alignment"]
"""Probes of the alignment experiment (quantities in :mod:`mtlens.quantities`)."""


def alignment_experiment(
    base: dict[str, Any], setting: Setting, seeds: Sequence[int], like_for_like: bool = False
) -> ExperimentPlan:
    """STL per task and MTL (``sum``) per seed, with the conflict and alignment probes on; ``like_for_like``: the
    MTL runs also with ``inter_alignment`` (one task has no pair: the STL runs are the same either way)."""
    runs = stl_and_mtl(setting, seeds, {"probes": list(ALIGNMENT_PROBES)})
    if like_for_like:  # stl_and_mtl names the task of each STL run, none of an MTL run
        mtl_probes = [*ALIGNMENT_PROBES, "inter_alignment"]
        runs = [(keys if "tasks" in keys else {**keys, "probes": mtl_probes}, labels) for keys, labels in runs]
    return plan_runs("alignment", base, setting, runs)


def alignment_section(
    store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path, setting: str
) -> str:
    table = alignment_table(manifest, rows)
    if table.empty:
        return "<p>No probe rows of the alignment experiment yet.</p>"
    body = table_html(
        table,
        out_dir,
        f"alignment_{setting}",
        "Gradient alignment on the shared parameters, mean and std over probe steps (after step 0) and "
        "seeds: inter-task cosine (MTL, pair 'a|b'), intra-task cosine between disjoint sub-batches "
        "and between class groups (STL and MTL), the magnitude ratio ||g_a|| / ||g_b|| (MTL) and "
        "the task gradient norms. Descriptive, no test. Sample sizes differ: the inter-task cosine "
        "(conflict_cosine) is of the mean-loss gradients over the whole probe sample (probe_sample_size examples "
        "per task), the intra-task cosines of halves or class groups of one training batch (a few examples each), "
        "whose gradient noise pulls a cosine towards 0, so the two are not comparable as printed; "
        "inter_cosine_subbatch (with --experiment-option like_for_like=true) is the inter-task cosine of half-batch "
        "gradients, comparable with intra_cosine_subbatch.",
    )
    return body + save_figure(
        _alignment_figure(rows),
        out_dir,
        f"alignment_{setting}",
        "Left: cosine between task gradients in MTL and between sub-batch / class-group "
        "gradients of one task in STL, by epoch (mean over seeds). Right: gradient norms per "
        "task, STL and MTL (log scale).",
    )


def _alignment_figure(rows: pd.DataFrame) -> Spec:
    """Left: cosine between task gradients in MTL and between sub-batch / class-group gradients of one
    task in STL, by epoch (mean over seeds; dashed: STL). Right: gradient norms per task (log scale)."""
    probed = rows[rows["step"] > 0]
    cosines = probed[probed["quantity"].str.contains("cosine") & ~probed["quantity"].eq(UPDATE_COSINE)]
    cosines = cosines.groupby(["mode", "quantity", "task", "epoch"], as_index=False).agg(
        value=("value", "mean"), n=("run_id", "nunique")
    )
    cosines["series"] = cosines["mode"] + " " + cosines["quantity"].str[6:] + " " + cosines["task"]
    norms = (
        probed[probed["quantity"] == GRAD_NORM]
        .groupby(["mode", "task", "epoch"], as_index=False)
        .agg(value=("value", "mean"), n=("run_id", "nunique"))
    )
    norms["series"] = norms["mode"] + " ||g_" + norms["task"] + "||"
    tooltip = [tip("series", "nominal"), tip("epoch"), tip("value"), tip("n")]
    color = {"field": "series", "type": "nominal"}
    left = line_chart("epoch", "value", color, y_title="cosine", tooltip=tooltip, dash="mode")
    right = line_chart(
        "epoch", "value", color, y_title="gradient norm (shared parameters)", tooltip=tooltip, dash="mode", y_log=True
    )
    return concat(
        "hconcat",
        [{"data": inline_data(cosines), **left}, {"data": inline_data(norms), **right}],
        independent=["color", "strokeDash"],
    )


register_experiment(
    Experiment(
        "alignment",
        "Assumptions: gradient alignment, STL vs MTL",
        alignment_experiment,
        alignment_section,
        rerun_keeps=(),  # a rerun with other seeds keeps the earlier seeds
    )
)
