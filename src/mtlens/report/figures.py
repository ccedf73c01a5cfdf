"""Figures of the STL-vs-MTL study: the gap at comparable training loss and the training curves
(interactive Vega-Lite charts, see :mod:`mtlens.render.charts`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mtlens.analysis.gap import GapResult
from mtlens.render.charts import MODE_COLORS, Rule, Spec, band_chart, concat, mean_band, tip

GAP_DISPLAY_LEVELS = 50
"""At most this many of the gap analysis's training-loss levels are drawn per curve (every k-th,
plus the last); the onset and the tables use all levels."""
PERSISTENT_SERIES = "persistent (fixed sequence)"
"""The gap panel's series of the levels the fixed-sequence test rejected (from the onset to the end)."""


def _thin(frame: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Every k-th row (and the last) of each ``by`` group so that a group keeps <= GAP_DISPLAY_LEVELS rows
    (groups in order of appearance)."""
    codes = pd.factorize(frame[by])[0] if by else np.zeros(len(frame), dtype=int)
    kept = []
    for code in range(codes.max() + 1 if len(codes) else 0):
        rows = np.flatnonzero(codes == code)
        step = max(1, int(np.ceil(len(rows) / GAP_DISPLAY_LEVELS)))
        kept.append(rows[np.unique(np.r_[np.arange(0, len(rows), step), len(rows) - 1])])
    return frame.iloc[np.concatenate(kept)].reset_index(drop=True) if kept else frame.iloc[:0].reset_index(drop=True)


def gap_band_label(result: GapResult) -> str:
    """What the gap panel's band is: the simultaneous band of the result's max-|t| test at its level
    (:attr:`GapResult.gap`), or none when too few runs could be tested."""
    if result.test is None:
        return "no band: too few runs for a test"
    return f"simultaneous {result.design} band at level {result.alpha:.3g}"


def gap_figure(results: list[GapResult]) -> Spec:
    """For one task, per measure (rows): G vs training loss (STL and MTL, mean ± std over seeds),
    and the gap MTL − STL with the simultaneous max-|t| band of its test ("a gap somewhere";
    ``GapResult.gap`` at the result's ``alpha``), the levels the fixed-sequence test rejected drawn in
    green over the gap, and the onset of a persistent gap marked (green, dashed) where there is one.
    The x axis is the training loss on a log scale, reversed so that training runs left to right."""
    x_title = "training loss (training runs left to right)"
    rows = []
    for result in results:
        onset = [Rule(result.onset["train_loss"], "x", "green", (5, 3))] if result.onset is not None else []
        curves = _thin(result.curves, "mode")
        curve_chart = band_chart(
            curves,
            "train_loss",
            "mode",
            color_scale=MODE_COLORS,
            x_log=True,
            x_reverse=True,
            x_title=x_title,
            y_title=result.measure,
            tooltip=[tip("epoch")],
            rules=onset,
            width=380,
            height=200,
            title=f"task {result.task}: {result.measure} at comparable training loss",
        )
        table = result.gap
        gap = table.assign(
            series="gap = MTL − STL",
            mean=table["gap"].to_numpy(),
            std=table["se"].to_numpy(),
            n=int(result.curves["n"].min()),
            low=table["band_low"].to_numpy(),
            high=table["band_high"].to_numpy(),
        )
        # the levels the fixed sequence rejected (onset to end) drawn over the gap, without a band
        rejected = gap[table["persistent"].to_numpy()].assign(series=PERSISTENT_SERIES, low=np.nan, high=np.nan)
        gap_chart = band_chart(
            pd.concat([_thin(gap), _thin(rejected)], ignore_index=True),
            "train_loss",
            "series",
            x_log=True,
            x_reverse=True,
            x_title=x_title,
            y_title=f"gap in {result.measure}",
            tooltip=[tip("p_level"), tip("p_sequence")],
            titles={"mean": "gap", "std": "SE"},
            color_scale={"domain": ["gap = MTL − STL", PERSISTENT_SERIES], "range": ["black", "green"]},
            rules=[Rule(0.0), *onset],
            width=380,
            height=200,
            title=f"task {result.task}: generalization gap ({gap_band_label(result)})",
        )
        rows.append(concat("hconcat", [curve_chart, gap_chart], independent=["color"]))
    return concat("vconcat", rows)


def training_curves_figure(
    runs: pd.DataFrame, tasks: list[str], quantities: list[str], stats: pd.DataFrame | None = None
) -> Spec:
    """Per quantity (rows of panels) and task (panels, wrapped): value vs epoch, STL and MTL mean ±
    std over seeds, with one thin line per run (hover: run, seed, value).  ``stats`` is
    :func:`~mtlens.render.charts.mean_band` of ``runs`` by (quantity, task, mode) over epoch where
    the caller has it already.  A task without rows of a quantity has no panel."""
    runs = runs[runs["task"].isin(tasks) & runs["quantity"].isin(quantities)]
    if stats is None:
        stats = mean_band(runs, ["quantity", "task", "mode"], "epoch")
    stats = stats[stats["task"].isin(tasks)]
    stats_by = dict(iter(stats.groupby("quantity", sort=False)))
    runs_by = dict(iter(runs.groupby("quantity", sort=False)))
    return concat(
        "vconcat",
        [
            band_chart(
                stats_by[q],
                "epoch",
                "mode",
                runs=runs_by[q],
                facet_by="task",
                color_scale=MODE_COLORS,
                x_title="epoch",
                y_title=q,
                y_log=q.endswith("loss") and bool((runs_by[q]["value"] > 0).all()),
                title=q,
            )
            for q in quantities
            if q in stats_by
        ],
    )
