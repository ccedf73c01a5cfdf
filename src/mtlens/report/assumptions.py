"""Report sections of the assumptions study (Elich et al. 2023).

:func:`assumptions_sections` has the ``SectionBuilder`` signature of
:mod:`mtlens.report.study_report` and renders one section per experiment whose manifest
(``experiment-<name>-<setting>``, written by :func:`mtlens.sweep.experiments.run_experiment`)
is in the store and whose runs are in the report; nothing when there is none.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtlens.analysis.adam_invariance import invariance_summary
from mtlens.analysis.assumptions import alignment_table, corruption_table, loss_scale_table, optimizer_table
from mtlens.report.base import Section, save_figure, table_html
from mtlens.report.charts import Spec, concat, facet, inline_data, interactive, legend_toggle, quantitative, tip, when
from mtlens.store import RunStore

TITLES = {"optimizers": "Assumptions: optimizers in MTL", "loss-scale": "Assumptions: loss-scale invariance",
          "alignment": "Assumptions: gradient alignment, STL vs MTL",
          "corruptions": "Assumptions: feature transfer under corruptions"}


def assumptions_sections(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """One section per stored experiment manifest whose runs are in ``index``."""
    sections = []
    for name in store.table_names("experiment-"):
        manifest = store.table(name)
        manifest = manifest[manifest["run_id"].isin(index["run_id"])]
        if manifest.empty:
            continue
        experiment, setting = manifest["experiment"].iloc[0], manifest["setting"].iloc[0]
        run_rows = rows[rows["run_id"].isin(manifest["run_id"])]
        build = {"optimizers": _optimizers, "loss-scale": _loss_scale, "alignment": _alignment,
                 "corruptions": _corruptions}[experiment]
        body = build(store, index, manifest, run_rows, Path(out_dir), setting)
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


def _loss_scale(store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path,
                setting: str) -> str:
    states = index.set_index("run_id")["state"]
    table = loss_scale_table(manifest, rows, store.task_info(), states)
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


def _lines(x: str, y: str, color: Spec, *, y_title: str, tooltip: list[Spec], dash: str | None = None,
           y_log: bool = False) -> Spec:
    """Lines with points of ``y`` against ``x`` coloured by the encoding ``color`` (and dashed by the
    field ``dash``), legend toggling on the colour field and zoom."""
    legend = legend_toggle(color["field"])
    encoding: Spec = {"x": quantitative(x), "y": quantitative(y, y_title, log=y_log), "color": color,
                      "opacity": when(legend["name"], 1.0, 0.1), "tooltip": tooltip}
    if dash:
        encoding["strokeDash"] = {"field": dash, "type": "nominal"}
    return interactive([{"mark": {"type": "line", "point": {"size": 14}}, "encoding": encoding}], legend)


def _loss_scale_figure(manifest: pd.DataFrame, rows: pd.DataFrame) -> Spec:
    """Validation error by epoch per optimizer (panel rows) and task (panel columns), one line per
    scale c (mean over seeds), coloured by c."""
    labelled = rows[rows["quantity"] == "val/error"].merge(manifest[["run_id", "optimizer", "scale"]], on="run_id")
    curves = (labelled.groupby(["optimizer", "task", "scale", "epoch"], as_index=False)
              .agg(value=("value", "mean"), n=("run_id", "nunique")))
    chart = _lines("epoch", "value", {"field": "scale", "type": "ordinal", "title": "c",
                                      "scale": {"scheme": "viridis"}},
                   y_title="val/error", tooltip=[tip("optimizer", "nominal"), tip("task", "nominal"), tip("scale"),
                                                 tip("epoch"), tip("value"), tip("n")])
    return {"data": inline_data(curves), "facet": {"row": {"field": "optimizer", "type": "nominal"},
                                                   "column": {"field": "task", "type": "nominal"}}, "spec": chart}


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


def _alignment_figure(rows: pd.DataFrame) -> Spec:
    """Left: cosine between task gradients in MTL and between sub-batch / class-group gradients of one
    task in STL, by epoch (mean over seeds; dashed: STL). Right: gradient norms per task (log scale)."""
    probed = rows[rows["step"] > 0]
    cosines = probed[probed["quantity"].str.contains("cosine") & ~probed["quantity"].eq("probe/update_cosine")]
    cosines = (cosines.groupby(["mode", "quantity", "task", "epoch"], as_index=False)
               .agg(value=("value", "mean"), n=("run_id", "nunique")))
    cosines["series"] = cosines["mode"] + " " + cosines["quantity"].str[6:] + " " + cosines["task"]
    norms = (probed[probed["quantity"] == "probe/grad_norm"].groupby(["mode", "task", "epoch"], as_index=False)
             .agg(value=("value", "mean"), n=("run_id", "nunique")))
    norms["series"] = norms["mode"] + " ||g_" + norms["task"] + "||"
    tooltip = [tip("series", "nominal"), tip("epoch"), tip("value"), tip("n")]
    color = {"field": "series", "type": "nominal"}
    left = _lines("epoch", "value", color, y_title="cosine", tooltip=tooltip, dash="mode")
    right = _lines("epoch", "value", color, y_title="gradient norm (shared parameters)", tooltip=tooltip,
                   dash="mode", y_log=True)
    return concat("hconcat", [{"data": inline_data(cosines), **left}, {"data": inline_data(norms), **right}],
                  independent=["color", "strokeDash"])


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


def _corruption_figure(accuracy: pd.DataFrame) -> Spec:
    """Linear-probe accuracy against severity (0 = clean) per corruption and task (panels), STL
    (dashed) vs MTL encoder (mean over seeds)."""
    clean = accuracy[accuracy["corruption"] == "none"]
    frames = [pd.concat([clean, accuracy[accuracy["corruption"] == c]]).assign(corruption=c)
              for c in accuracy["corruption"].unique() if c != "none"]
    curves = (pd.concat(frames).groupby(["corruption", "task", "mode", "severity"], as_index=False)
              .agg(accuracy=("accuracy", "mean"), n=("accuracy", "size")))
    curves["panel"] = curves["corruption"] + ", task " + curves["task"].astype(str)
    curves["mode"] = curves["mode"].str.upper()
    chart = _lines("severity", "accuracy", {"field": "mode", "type": "nominal",
                                            "scale": {"domain": ["STL", "MTL"], "range": ["#1f77b4", "#d62728"]}},
                   y_title="probe accuracy", dash="mode",
                   tooltip=[tip("panel", "nominal"), tip("mode", "nominal"), tip("severity"), tip("accuracy"),
                            tip("n")])
    return facet(chart, curves, "panel", independent_y=False)
