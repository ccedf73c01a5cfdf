"""The alignment experiment (Elich et al. 2023): are task gradients less aligned than a task's own?

STL per task and MTL (``sum``) with the ``conflict`` and ``alignment`` probes: inter-task gradient
cosine and magnitude ratio (MTL) against intra-task sub-batch and class-group cosine (STL and MTL),
tabulated by :func:`mtlens.analysis.assumptions.alignment_table`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.analysis.assumptions import alignment_table  # noqa: E402
from mtlens.experiments.base import Experiment, ExperimentPlan, plan_runs, register_experiment, stl_and_mtl  # noqa: E402
from mtlens.render import save_figure, table_html  # noqa: E402
from mtlens.settings import Setting  # noqa: E402
from mtlens.store import RunStore  # noqa: E402
from mtlens.quantities import GRAD_NORM, UPDATE_COSINE  # noqa: E402

ALIGNMENT_PROBES = ["conflict", "alignment"]
"""Probes of the alignment experiment (quantities in :mod:`mtlens.quantities`)."""


def alignment_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int]) -> ExperimentPlan:
    """STL per task and MTL (``sum``) per seed, with the conflict and alignment probes on."""
    return plan_runs("alignment", base, setting, stl_and_mtl(setting, seeds, {"probes": list(ALIGNMENT_PROBES)}))


def alignment_section(store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame,
                      out_dir: Path, setting: str) -> str:
    table = alignment_table(manifest, rows)
    if table.empty:
        return "<p>No probe rows of the alignment experiment yet.</p>"
    body = table_html(table, out_dir, f"alignment_{setting}",
                      "Gradient alignment on the shared parameters, mean and std over probe steps (after step 0) and "
                      "seeds: inter-task cosine (MTL, pair 'a|b'), intra-task cosine between disjoint sub-batches "
                      "and between class groups (STL and MTL), the magnitude ratio ||g_a|| / ||g_b|| (MTL) and "
                      "the task gradient norms.")
    return body + save_figure(_alignment_figure(rows), out_dir, f"alignment_{setting}",
                              "Left: cosine between task gradients in MTL and between sub-batch / class-group "
                              "gradients of one task in STL, by epoch (mean over seeds). Right: gradient norms per "
                              "task, STL and MTL (log scale).")


def _alignment_figure(rows: pd.DataFrame) -> "plt.Figure":
    fig, (cos_ax, norm_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    for (mode, quantity, task), frame in rows[rows["quantity"].str.contains("cosine") & (rows["step"] > 0)
                                              & ~rows["quantity"].eq(UPDATE_COSINE)
                                              ].groupby(["mode", "quantity", "task"]):
        curve = frame.groupby("epoch")["value"].mean()
        cos_ax.plot(curve.index, curve.to_numpy(), marker="o", ms=3,
                    linestyle="-" if mode == "mtl" else "--", label=f"{mode} {quantity[6:]} {task}")
    for (mode, task), frame in rows[(rows["quantity"] == GRAD_NORM) & (rows["step"] > 0)].groupby(
            ["mode", "task"]):
        curve = frame.groupby("epoch")["value"].mean()
        norm_ax.plot(curve.index, curve.to_numpy(), marker="o", ms=3,
                     linestyle="-" if mode == "mtl" else "--", label=f"{mode} ||g_{task}||")
    cos_ax.axhline(0.0, color="grey", linewidth=0.8)
    cos_ax.set_ylabel("cosine")
    norm_ax.set_yscale("log")
    norm_ax.set_ylabel("gradient norm (shared parameters)")
    for ax in (cos_ax, norm_ax):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


register_experiment(Experiment("alignment", "Assumptions: gradient alignment, STL vs MTL", alignment_experiment,
                               alignment_section))
