"""Figures of the STL-vs-MTL study (matplotlib, no display needed)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.analysis.gap import GapResult  # noqa: E402

MODE_STYLE = {"stl": {"color": "#1f77b4", "label": "STL"}, "mtl": {"color": "#d62728", "label": "MTL"}}


def _band(ax: "plt.Axes", x: np.ndarray, mean: np.ndarray, std: np.ndarray, mode: str, label: str = "") -> None:
    style = MODE_STYLE[mode]
    ax.plot(x, mean, color=style["color"], label=label or style["label"])
    if np.isfinite(std).any():
        ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.2, linewidth=0)


def gap_figure(results: list[GapResult]) -> "plt.Figure":
    """For one task: per measure, G vs training loss (STL and MTL, mean +/- std over seeds),
    and the gap MTL - STL with the simultaneous band of its test (``GapResult.gap``, at the
    result's ``alpha``) and the onset of a persistent gap marked where the test supports one."""
    fig, axes = plt.subplots(len(results), 2, figsize=(10, 3.4 * len(results)), squeeze=False)
    for row, result in zip(axes, results):
        curve_ax, gap_ax = row
        for mode, frame in result.curves.groupby("mode"):
            _band(curve_ax, frame["train_loss"].to_numpy(), frame["mean"].to_numpy(), frame["std"].to_numpy(),
                  mode, f"{MODE_STYLE[mode]['label']} (n={int(frame['n'].iloc[0])})")
        gap = result.gap
        x = gap["train_loss"].to_numpy()
        gap_ax.plot(x, gap["gap"], color="black", label="gap = MTL - STL")
        if gap["band_low"].notna().any():
            gap_ax.fill_between(x, gap["band_low"], gap["band_high"], color="grey", alpha=0.3, linewidth=0,
                                label=f"simultaneous band ({result.design}, level {result.alpha:.3g})")
        gap_ax.axhline(0.0, color="grey", linewidth=0.8)
        if result.onset is not None:
            for ax in (curve_ax, gap_ax):
                ax.axvline(result.onset["train_loss"], color="green", linestyle="--", linewidth=1,
                           label=f"onset (epoch {result.onset['epoch_mtl']:.2f})" if ax is gap_ax else None)
        for ax, ylabel in ((curve_ax, result.measure), (gap_ax, f"gap in {result.measure}")):
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.invert_xaxis()
            ax.set_xlabel("training loss (training runs left to right)")
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        curve_ax.set_title(f"task {result.task}: {result.measure} at comparable training loss")
        gap_ax.set_title(f"task {result.task}: generalization gap")
    fig.tight_layout()
    return fig


def training_curves_figure(runs: pd.DataFrame, tasks: list[str], quantities: list[str]) -> "plt.Figure":
    """Per task (columns) and quantity (rows): value vs epoch, STL and MTL mean +/- std over seeds."""
    fig, axes = plt.subplots(len(quantities), len(tasks), figsize=(4.2 * len(tasks), 3.0 * len(quantities)),
                             squeeze=False)
    for j, task in enumerate(tasks):
        for i, quantity in enumerate(quantities):
            ax = axes[i][j]
            rows = runs[(runs["task"] == task) & (runs["quantity"] == quantity)]
            for mode, frame in rows.groupby("mode"):
                agg = frame.groupby("epoch")["value"].agg(["mean", "std", "count"]).reset_index()
                n = int(frame["run_id"].nunique())
                _band(ax, agg["epoch"].to_numpy(), agg["mean"].to_numpy(), agg["std"].to_numpy(), mode,
                      f"{MODE_STYLE[mode]['label']} (n={n})")
            ax.set_title(f"task {task}")
            ax.set_xlabel("epoch")
            ax.set_ylabel(quantity)
            if quantity.endswith("loss"):
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if rows.empty:  # e.g. a metric that only some tasks have
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
            else:
                ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
