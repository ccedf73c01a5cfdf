"""Report sections of the assumptions study (Elich et al. 2023).

:func:`assumptions_sections` has the ``SectionBuilder`` signature of
:mod:`mtlens.report.study_report` and renders one section per experiment whose manifest
(``experiment-<name>-<setting>``, written by :func:`mtlens.sweep.experiments.run_experiment`)
is in the store and whose runs are in the report; nothing when there is none.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.analysis.adam_invariance import invariance_summary  # noqa: E402
from mtlens.analysis.assumptions import (alignment_table, corruption_table, loss_scale_table,  # noqa: E402
                                         optimizer_table)
from mtlens.report.base import Section, save_figure, table_html  # noqa: E402
from mtlens.store import RunStore  # noqa: E402

TITLES = {"optimizers": "Assumptions: optimizers in MTL", "loss-scale": "Assumptions: loss-scale invariance",
          "alignment": "Assumptions: gradient alignment, STL vs MTL",
          "corruptions": "Assumptions: feature transfer under corruptions"}


def assumptions_sections(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """One section per stored experiment manifest whose runs are in ``index`` (the analysed runs)."""
    sections = []
    for name in store.table_names("experiment-"):
        stored = store.table(name)
        manifest = stored[stored["run_id"].isin(index["run_id"])]
        if manifest.empty:
            continue
        experiment, setting = manifest["experiment"].iloc[0], manifest["setting"].iloc[0]
        run_rows = rows[rows["run_id"].isin(manifest["run_id"])]
        build = {"optimizers": _optimizers, "loss-scale": _loss_scale, "alignment": _alignment,
                 "corruptions": _corruptions}[experiment]
        body = build(store, stored if experiment == "loss-scale" else index, manifest, run_rows, Path(out_dir), setting)
        sections.append(Section(f"{TITLES[experiment]} ({setting})", body, f"assumptions-{experiment}-{setting}"))
    return sections


def _optimizers(store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path,
                setting: str) -> str:
    selected, grid = optimizer_table(manifest, rows, store.task_info())
    if selected.empty:
        return "<p>No finished runs of the optimizer experiment yet.</p>"
    body = table_html(selected, out_dir, f"optimizers_{setting}",
                      "MTL test performance (selection metric, at each run's validation-selected checkpoint) per "
                      "optimizer and method, at the learning rate with the best mean validation value over tasks "
                      "and seeds; mean and std over seeds; average = mean over tasks.")
    body += table_html(grid, out_dir, f"optimizers_grid_{setting}",
                       "Every learning rate of the grid: mean validation and test value over tasks and seeds.")
    return body


def _loss_scale(store: RunStore, stored: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path,
                setting: str) -> str:
    """``stored``: the whole manifest, whose diverged runs are counted (they have no rows here)."""
    states = pd.Series({run_id: store.done_state(run_id) for run_id in stored["run_id"]}, dtype=object)
    stored = stored[stored["optimizer"].isin(manifest["optimizer"])]
    table = loss_scale_table(stored, rows, store.task_info(), states)
    parts = []
    if not table.empty:
        parts.append(table_html(table, out_dir, f"loss_scale_{setting}",
                                f"MTL (sum) with task {table['scaled_task'].iloc[0]!r}'s loss scaled by c: test value "
                                "at the validation-selected checkpoint per optimizer, c and task (mean, std over "
                                "seeds); diverged = runs stopped by a non-finite loss."))
        parts.append(save_figure(_loss_scale_figure(manifest, rows), out_dir, f"loss_scale_{setting}",
                                 "Validation error by epoch per optimizer (rows) and task (columns), one line per "
                                 "scale c (mean over seeds). Adam's curves stay together over many orders of "
                                 "magnitude of c; SGD's change with c (its effective lr for the scaled task is c*lr)."))
    if f"adam_invariance-{setting}" in store.table_names("adam_invariance-"):
        check = store.table(f"adam_invariance-{setting}")
        parts.append(table_html(
            invariance_summary(check), out_dir, f"adam_invariance_{setting}",
            f"Numerical check on the {setting} model at initialization: the largest relative difference "
            f"||delta_c - delta_1|| / ||delta_1|| over c in {sorted(check['scale'].unique())} of the parameter change "
            f"after 'steps' steps on L_{check['task_a'].iloc[0]} + c L_{check['task_b'].iloc[0]}. Adam: ~0 on both "
            "heads after one step with a negligible eps (1e-16; exact invariance), large on the shared encoder; with "
            "PyTorch's default eps = 1e-8 the head_b update at small c differs by the eps effect (eps is no longer "
            "small against |c g|); after several steps the heads drift too because the encoder moved differently. "
            "SGD: head_b's change scales with c."))
    return "".join(parts) or "<p>No finished runs of the loss-scale experiment yet.</p>"


def _loss_scale_figure(manifest: pd.DataFrame, rows: pd.DataFrame) -> "plt.Figure":
    labelled = rows[rows["quantity"] == "val/error"].merge(manifest[["run_id", "optimizer", "scale"]], on="run_id")
    optimizers, tasks = sorted(labelled["optimizer"].unique()), sorted(labelled["task"].unique())
    scales = sorted(manifest["scale"].unique())
    colors = plt.cm.viridis(np.linspace(0, 1, len(scales)))
    fig, axes = plt.subplots(len(optimizers), len(tasks), figsize=(4.2 * len(tasks), 3.0 * len(optimizers)),
                             squeeze=False)
    for i, optimizer in enumerate(optimizers):
        for j, task in enumerate(tasks):
            ax = axes[i][j]
            for scale, color in zip(scales, colors):
                frame = labelled[(labelled["optimizer"] == optimizer) & (labelled["task"] == task)
                                 & (labelled["scale"] == scale)]
                curve = frame.groupby("epoch")["value"].mean()
                ax.plot(curve.index, curve.to_numpy(), color=color, label=f"c={scale:g}")
            ax.set_title(f"{optimizer}, task {task}")
            ax.set_xlabel("epoch")
            ax.set_ylabel("val/error")
            ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def _alignment(store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path,
               setting: str) -> str:
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
                                              & ~rows["quantity"].eq("probe/update_cosine")
                                              ].groupby(["mode", "quantity", "task"]):
        curve = frame.groupby("epoch")["value"].mean()
        cos_ax.plot(curve.index, curve.to_numpy(), marker="o", ms=3,
                    linestyle="-" if mode == "mtl" else "--", label=f"{mode} {quantity[6:]} {task}")
    for (mode, task), frame in rows[(rows["quantity"] == "probe/grad_norm") & (rows["step"] > 0)].groupby(
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


def _corruptions(store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path,
                 setting: str) -> str:
    if f"corruptions-{setting}" not in store.table_names("corruptions-"):
        return "<p>The corruption analysis has not been computed for these runs.</p>"
    accuracy = store.table(f"corruptions-{setting}")
    accuracy = accuracy[accuracy["run_id"].isin(manifest["run_id"])]
    if accuracy.empty:
        return "<p>No finished runs of the corruption experiment yet.</p>"
    table = corruption_table(accuracy)
    body = table_html(table, out_dir, f"corruptions_{setting}",
                      "Linear-probe test accuracy on frozen encoders at each task's validation-selected checkpoint "
                      "(probe fitted on clean training "
                      "features), per task, encoder (STL or MTL) and corruption, at severities 1-5 and their mean; "
                      "drop = clean - mean_corrupted; mean over seeds.")
    return body + save_figure(_corruption_figure(accuracy), out_dir, f"corruptions_{setting}",
                              "Linear-probe accuracy against corruption severity (0 = clean), STL vs MTL encoder, "
                              "one panel per corruption and task (mean over seeds).")


def _corruption_figure(accuracy: pd.DataFrame) -> "plt.Figure":
    corruptions = [c for c in accuracy["corruption"].unique() if c != "none"]
    tasks = sorted(accuracy["task"].unique())
    fig, axes = plt.subplots(len(tasks), len(corruptions), figsize=(2.2 * len(corruptions), 2.3 * len(tasks)),
                             squeeze=False, sharey=True)
    clean = accuracy[accuracy["corruption"] == "none"]
    for i, task in enumerate(tasks):
        for j, corruption in enumerate(corruptions):
            ax = axes[i][j]
            for mode, style in (("stl", "--"), ("mtl", "-")):
                frame = pd.concat([clean, accuracy[accuracy["corruption"] == corruption]])
                frame = frame[(frame["task"] == task) & (frame["mode"] == mode)]
                curve = frame.groupby("severity")["accuracy"].mean()
                ax.plot(curve.index, curve.to_numpy(), style, marker="o", ms=3, label=mode.upper())
            ax.set_title(f"{corruption}\ntask {task}", fontsize=8)
            ax.set_xticks(range(6))
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("probe accuracy")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
