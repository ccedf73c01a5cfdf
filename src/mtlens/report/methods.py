"""Report section: the task weights each multi-task optimizer applied over training.

Reads the trajectory rows ``quantity == "method/weight"`` that the trainer records from
the update method's diagnostics (the mean weight ``w_t`` over the steps since the previous
record).  Methods without task weights (``graddrop``) have no such rows and no figure.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.render import Section, by_configuration, save_figure, slug, table_html  # noqa: E402
from mtlens.store import RunStore  # noqa: E402

WEIGHT = "method/weight"


def task_weights_figure(rows: pd.DataFrame) -> "plt.Figure":
    """Mean +/- std over seeds of each task's weight against epoch (rows of one setting and method)."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for task, frame in rows.groupby("task"):
        stats = frame.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
        ax.plot(stats["epoch"], stats["mean"], label=f"{task} (n={frame['run_id'].nunique()})")
        ax.fill_between(stats["epoch"], stats["mean"] - stats["std"].fillna(0.0),
                        stats["mean"] + stats["std"].fillna(0.0), alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("task weight")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def method_weights_section(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """``SectionBuilder``: a table of the weights at the first and last record and a figure of
    the weights over training, per setting and method."""
    del store
    rows, _ = by_configuration(index, rows, {})
    weights = rows[(rows["mode"] == "mtl") & (rows["quantity"] == WEIGHT)]
    if weights.empty:
        return []
    summary, figures = [], []
    for (setting, method), frame in weights.groupby(["setting", "method"]):
        for task, task_rows in frame.groupby("task"):
            by_step = task_rows.groupby("step")["value"]
            first, last = by_step.mean().iloc[0], by_step.mean().iloc[-1]
            summary.append({"setting": setting, "method": method, "task": task,
                            "n_runs": task_rows["run_id"].nunique(), "first_weight": first, "last_weight": last,
                            "mean_weight": task_rows["value"].mean()})
        figures.append(save_figure(task_weights_figure(frame), out_dir, slug("weights", setting, method),
                                   f"{setting}, method {method}: task weights applied by the method, averaged "
                                   f"over the steps between records, mean ± std over seeds."))
    body = table_html(pd.DataFrame(summary), out_dir, "method_weights",
                      "Task weights of each multi-task optimizer (mean over seeds): at the first record after "
                      "training starts, at the last record, and over all records. Each recorded value is the "
                      "mean weight over the steps since the previous record. Formulas: docs/methods.md.")
    return [Section("Which task weights did the methods apply?", body + "".join(figures), "method-weights")]
