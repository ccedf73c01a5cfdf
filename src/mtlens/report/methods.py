"""Report section: the task weights each multi-task optimizer applied over training.

Reads the trajectory rows ``quantity == "method/weight"`` that the trainer records from
the update method's diagnostics (the mean weight ``w_t`` over the steps since the previous
record).  Methods without task weights (``graddrop``) have no such rows and no figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.render import Section, by_configuration, per_setting, save_figure, slug, table_html
from mtlens.render.charts import Spec, band_chart, mean_band
from mtlens.store import RunStore

WEIGHT = "method/weight"


def task_weights_figure(rows: pd.DataFrame, stats: pd.DataFrame | None = None) -> Spec:
    """Mean ± std over seeds of each task's weight against epoch (rows of one setting and method),
    one thin line per run; ``stats`` is :func:`~mtlens.render.charts.mean_band` of the rows by task."""
    if stats is None:
        stats = mean_band(rows, ["task"], "epoch")
    return band_chart(stats, "epoch", "task", runs=rows, x_title="epoch", y_title="task weight", width=520, height=240)


def method_weights_section(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """``SectionBuilder``: a table of the weights at the first and last record and a figure of
    the weights over training, per setting and method."""
    del store
    rows, _ = by_configuration(index, rows, {})
    weights = rows[(rows["mode"] == "mtl") & (rows["quantity"] == WEIGHT)]
    if weights.empty:
        return []
    summary: list[dict[str, Any]] = []
    figures: dict[str, list[str]] = {}
    stats = dict(iter(mean_band(weights, ["setting", "method", "task"], "epoch").groupby(["setting", "method"])))
    for (setting, method), frame in weights.groupby(["setting", "method"]):
        for task, task_rows in frame.groupby("task"):
            by_step = task_rows.groupby("step")["value"]
            first, last = by_step.mean().iloc[0], by_step.mean().iloc[-1]
            summary.append(
                {
                    "setting": setting,
                    "method": method,
                    "task": task,
                    "n_runs": task_rows["run_id"].nunique(),
                    "first_weight": first,
                    "last_weight": last,
                    "mean_weight": task_rows["value"].mean(),
                }
            )
        figures.setdefault(setting, []).append(
            save_figure(
                task_weights_figure(frame, stats[(setting, method)]),
                out_dir,
                slug("weights", setting, method),
                f"{setting}, method {method}: task weights applied by the method, averaged over the steps between "
                f"records, mean ± std over seeds ({frame['run_id'].nunique()} runs; thin lines: single runs).",
            )
        )
    body = table_html(
        pd.DataFrame(summary),
        out_dir,
        "method_weights",
        "Task weights of each multi-task optimizer (mean over seeds): at the first record after "
        "training starts, at the last record, and over all records. Each recorded value is the "
        "mean weight over the steps since the previous record. Formulas: docs/methods.md.",
    )
    return [
        Section("Which task weights did the methods apply?", body + per_setting(figures, "figures"), "method-weights")
    ]
