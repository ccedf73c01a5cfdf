"""Report section: the task weights each multi-task optimizer applied over training.

Reads the trajectory rows ``quantity == "method/weight"`` that the trainer records from
the update method's diagnostics (the mean weight ``w_t`` over the steps since the previous
record).  Methods without task weights (``graddrop``) have no such rows and no figure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.render import Figure, Section, by_configuration, per_setting, slug, table_html
from mtlens.render.charts import Spec, band_chart, mean_band
from mtlens.store import RunStore

WEIGHT = "method/weight"


def task_weights_figure(rows: pd.DataFrame, stats: pd.DataFrame | None = None) -> Spec:
    """Mean ± std over seeds of each task's weight against epoch (rows of one setting and method),
    one thin line per run; ``stats`` is :func:`~mtlens.render.charts.mean_band` of the rows by task."""
    if stats is None:
        stats = mean_band(rows, ["task"], "epoch")
    return band_chart(stats, "epoch", "task", runs=rows, x_title="epoch", y_title="task weight", width=520, height=240)


def method_weights_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, method, task) of the MTL runs' ``method/weight`` rows: ``n_runs`` and the weight (mean over
    seeds) at the first and the last record and over all records; empty without weight rows."""
    weights = rows[(rows["mode"] == "mtl") & (rows["quantity"] == WEIGHT)]
    summary: list[dict[str, Any]] = []
    for (setting, method, task), task_rows in weights.groupby(["setting", "method", "task"]):
        by_step = task_rows.groupby("step")["value"].mean()
        summary.append(
            {
                "setting": setting,
                "method": method,
                "task": task,
                "n_runs": task_rows["run_id"].nunique(),
                "first_weight": by_step.iloc[0],
                "last_weight": by_step.iloc[-1],
                "mean_weight": task_rows["value"].mean(),
            }
        )
    return pd.DataFrame(summary)


def weights_figures(rows: pd.DataFrame) -> Iterator[Figure]:
    """Per (setting, method) with ``method/weight`` rows: :func:`task_weights_figure`."""
    weights = rows[(rows["mode"] == "mtl") & (rows["quantity"] == WEIGHT)]
    stats = dict(iter(mean_band(weights, ["setting", "method", "task"], "epoch").groupby(["setting", "method"])))
    for (setting, method), frame in weights.groupby(["setting", "method"]):
        caption = (
            f"{setting}, method {method}: task weights applied by the method, averaged over the steps between "
            f"records, mean ± std over seeds ({frame['run_id'].nunique()} runs; thin lines: single runs)."
        )
        chart = task_weights_figure(frame, stats[(setting, method)])
        yield Figure(slug("weights", setting, method), setting, chart, caption, (setting, method))


def method_weights_section(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """``SectionBuilder``: :func:`method_weights_table` and :func:`weights_figures`."""
    del store
    rows, _ = by_configuration(index, rows, {})
    table = method_weights_table(rows)
    if table.empty:
        return []
    figures: dict[str, list[str]] = {}
    for figure in weights_figures(rows):
        figures.setdefault(figure.setting, []).append(figure.save(out_dir))
    body = table_html(
        table,
        out_dir,
        "method_weights",
        "Task weights of each multi-task optimizer (mean over seeds): at the first record after "
        "training starts, at the last record, and over all records. Each recorded value is the "
        "mean weight over the steps since the previous record. Formulas: docs/methods.md.",
    )
    return [
        Section("Which task weights did the methods apply?", body + per_setting(figures, "figures"), "method-weights")
    ]
