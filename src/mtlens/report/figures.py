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


def _thin(frame: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Every k-th row (and the last) of each ``by`` group so that a group keeps <= GAP_DISPLAY_LEVELS rows."""
    groups = [g for _, g in frame.groupby(by, sort=False)] if by else [frame]
    kept = []
    for group in groups:
        step = max(1, int(np.ceil(len(group) / GAP_DISPLAY_LEVELS)))
        kept.append(group.iloc[np.unique(np.r_[np.arange(0, len(group), step), len(group) - 1])] if len(group)
                    else group)
    return pd.concat(kept, ignore_index=True)


def gap_band(gap: pd.DataFrame, noise_multiplier: float) -> tuple[np.ndarray, np.ndarray, str]:
    """The band drawn around zero in the gap panel: the analysis's own ``band_low``/``band_high``
    columns where it provides them, else -/+ ``noise_multiplier`` x the seed noise (standard error)."""
    if {"band_low", "band_high"} <= set(gap.columns):
        return gap["band_low"].to_numpy(float), gap["band_high"].to_numpy(float), "band of the gap analysis"
    band = noise_multiplier * gap["noise"].to_numpy(float)
    return -band, band, f"seed noise, ±{noise_multiplier:g} SE"


def gap_figure(results: list[GapResult], noise_multiplier: float) -> Spec:
    """For one task, per measure (rows): G vs training loss (STL and MTL, mean ± std over seeds),
    and the gap MTL − STL with its band around zero (:func:`gap_band`) and the onset marked (green,
    dashed).  The x axis is the training loss on a log scale, reversed so that training runs left
    to right."""
    x_title = "training loss (training runs left to right)"
    rows = []
    for result in results:
        onset = [Rule(result.onset["train_loss"], "x", "green", (5, 3))] if result.onset is not None else []
        curves = _thin(result.curves, "mode")
        curve_chart = band_chart(curves, "train_loss", "mode", color_scale=MODE_COLORS, x_log=True, x_reverse=True,
                                 x_title=x_title, y_title=result.measure, tooltip=[tip("epoch")], rules=onset,
                                 width=380, height=200,
                                 title=f"task {result.task}: {result.measure} at comparable training loss")
        low, high, band_label = gap_band(result.gap, noise_multiplier)
        gap = result.gap.assign(series="gap = MTL − STL", mean=result.gap["gap"], std=result.gap["noise"],
                                n=int(result.curves["n"].min()), low=low, high=high)
        gap_chart = band_chart(_thin(gap), "train_loss",
                               "series", x_log=True, x_reverse=True, x_title=x_title,
                               y_title=f"gap in {result.measure}", titles={"mean": "gap", "std": "noise (SE)"},
                               color_scale={"range": ["black"]}, rules=[Rule(0.0), *onset], width=380, height=200,
                               title=f"task {result.task}: generalization gap (band: {band_label})")
        rows.append(concat("hconcat", [curve_chart, gap_chart], independent=["color"]))
    return concat("vconcat", rows)


def training_curves_figure(runs: pd.DataFrame, tasks: list[str], quantities: list[str],
                           stats: pd.DataFrame | None = None) -> Spec:
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
    return concat("vconcat", [
        band_chart(stats_by[q], "epoch", "mode", runs=runs_by[q], facet_by="task",
                   color_scale=MODE_COLORS, x_title="epoch", y_title=q,
                   y_log=q.endswith("loss") and bool((runs_by[q]["value"] > 0).all()), title=q)
        for q in quantities if q in stats_by])
