"""Report section: what a sweep selected, when the report reads a sweep's selection (``mtlens report --sweep``).

Mueller et al.'s protocol tunes every STL task and every MTL method on its own (a grid at the first seed,
the best point by validation) and then compares the selected configurations over seeds.  The report of a
sweep therefore pairs each MTL method's selected runs with each task's selected STL runs by seed, although
their grid values (``lr``, ``batch_size``, ...) may differ; this section lists, per group, the values the
sweep chose and how many of its seed runs the report analyses.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from mtlens.orchestration.sweep import SweepSelection
from mtlens.render import Section, table_html


def sweep_table(sweep: SweepSelection, analysed_ids: set[str]) -> pd.DataFrame:
    """Per group of ``sweep``: its mode, task and method, the grid values it selected, its score and
    ``seeds_analysed`` (``k/n``: of the selected point's ``n`` seed runs, the ``k`` in ``analysed_ids``;
    ``-`` for a group without a selected point)."""
    table = sweep.table[["group", "mode", "task", "method", *sweep.tuned, "score"]].copy()
    table["seeds_analysed"] = [
        f"{sum(r in analysed_ids for r in sweep.runs_of[g])}/{len(sweep.runs_of[g])}" if g in sweep.runs_of else "-"
        for g in table["group"]
    ]
    return table


def sweep_section(sweep: SweepSelection, analysed_ids: set[str], absent: tuple[str, ...], out_dir: Path) -> Section:
    """The sweep's selection (:func:`sweep_table`) and what of it the report could not analyse: groups
    without a selected point and selected runs the store does not hold."""
    tuned = ", ".join(f"<code>{html.escape(k)}</code>" for k in sweep.tuned)
    criterion = html.escape(str(sweep.table["criterion"].iloc[0])) if len(sweep.table) else ""
    body = (
        f"<p>These runs are the selection of sweep <code>{html.escape(sweep.sweep_id)}</code>: every STL task and "
        f"every MTL method was trained at the grid point of {tuned} that its own validation score selected "
        f"({criterion}), then on every seed. Each comparison below pairs an MTL method's selected runs with its "
        "tasks' selected STL runs by seed, whatever their values of the swept keys (Mueller et al.'s protocol: "
        "each model tuned on its own).</p>"
    )
    body += table_html(
        sweep_table(sweep, analysed_ids),
        out_dir,
        "sweep_selection",
        f"Per group: the swept values selected, the validation score (lower wins) and the selected point's seed "
        f"runs this report analyses (unfinished, diverged and damaged runs are left out; {sweep.path}).",
    )
    if sweep.unselected:
        body += (
            f"<p><strong>No grid point was selected for {html.escape(', '.join(sweep.unselected))}</strong> (every "
            "grid run failed, diverged or has no finite score): these groups have no runs here.</p>"
        )
    if absent:
        body += (
            f"<p><strong>{len(absent)} selected runs are not in the store</strong> (rerun the sweep's command to "
            f"train them): {html.escape(', '.join(absent))}.</p>"
        )
    return Section("Which hyperparameters did the sweep select?", body, "sweep")
