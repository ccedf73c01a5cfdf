"""Report sections after Elich et al.: inter- vs intra-task gradient alignment, magnitude
ratios between tasks, and the Adam vs SGD comparison."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.analysis.alignment import (  # noqa: E402
    alignment_distributions, alignment_summary, magnitude_ratio_summary, optimizer_comparison, optimizers_compared)
from mtlens.render import Section, by_configuration, not_available, save_figure, slug, table_html  # noqa: E402
from mtlens.store import RunStore  # noqa: E402
from mtlens.quantities import MAGNITUDE_RATIO  # noqa: E402


def alignment_figure(distributions: pd.DataFrame) -> "plt.Figure":
    """Histograms (densities) of the cosines of each kind, side by side, sharing the x axis."""
    kinds = sorted(distributions["kind"].unique())
    fig, axes = plt.subplots(1, len(kinds), figsize=(4 * len(kinds), 3.2), sharex=True, squeeze=False)
    bins = np.linspace(-1, 1, 41)
    for ax, kind in zip(axes[0], kinds):
        values = distributions.loc[distributions["kind"] == kind, "value"]
        ax.hist(values, bins=bins, density=True, color="#1f77b4" if "intra" in kind else "#d62728", alpha=0.8)
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.axvline(values.median(), color="black", linestyle="--", linewidth=1, label=f"median {values.median():.2f}")
        ax.set(title=f"{kind} (n={len(values)})", xlabel="cosine", ylabel="density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def alignment_section(rows: pd.DataFrame, out_dir: Path) -> Section:
    title, anchor = "Gradient alignment between and within tasks (Elich et al.)", "alignment"
    distributions = alignment_distributions(rows)
    if distributions.empty:
        return Section(title, not_available("needs probe/conflict_cosine (MTL runs) and probe/intra_cosine_subbatch "
                                            "or probe/intra_cosine_classgroup (STL runs); enable probes"), anchor)
    body = table_html(alignment_summary(distributions), out_dir, "alignment",
                      "Cosines between task gradients in MTL runs and between gradients of one task's sub-batches or "
                      "class groups in STL runs, pooled over probe steps: n values from n_runs runs.")
    for setting, frame in distributions.groupby("setting"):
        body += save_figure(alignment_figure(frame), out_dir, slug("alignment", setting),
                            f"{setting}: distributions of inter-task (MTL) and intra-task (STL) gradient cosines "
                            f"over training, from {frame['run_id'].nunique()} runs ({frame['seed'].nunique()} seeds); "
                            f"n cosines per panel in its title.")
    ratios = magnitude_ratio_summary(rows)
    if ratios.empty:
        body += not_available("magnitude ratios: needs probe/magnitude_ratio in MTL runs")
    else:
        body += table_html(ratios, out_dir, "magnitude_ratio",
                           "Gradient magnitude ratio ||g_a|| / ||g_b|| per task pair of MTL runs over training: the "
                           "median ratio, and the median and 90th percentile of |log10 ratio| (orders of magnitude).")
        magnitude = rows[(rows["quantity"] == MAGNITUDE_RATIO) & (rows["mode"] == "mtl") & (rows["value"] > 0)]
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for (setting, method, pair), frame in magnitude.groupby(["setting", "method", "task"]):
            agg = frame.groupby("epoch")["value"].apply(lambda v: np.log10(v).mean()).reset_index()
            ax.plot(agg["epoch"], agg["value"], label=f"{setting} {method} {pair} (n={frame['run_id'].nunique()})")
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(xlabel="epoch", ylabel="log10(||g_a|| / ||g_b||)")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        body += save_figure(fig, out_dir, "magnitude_ratio",
                            f"Gradient magnitude ratio between tasks by epoch, mean of log10 over "
                            f"{magnitude['run_id'].nunique()} MTL runs ({magnitude['seed'].nunique()} seeds); n runs "
                            f"per curve in the legend.")
    return Section(title, body, anchor)


def optimizer_section(index: pd.DataFrame, rows: pd.DataFrame, store: RunStore, out_dir: Path) -> Section:
    title, anchor = "Adam vs SGD", "optimizers"
    if not optimizers_compared(index):
        used = ", ".join(sorted(index["optimizer"].astype(str).unique())) if "optimizer" in index else "unknown"
        return Section(title, not_available(f"needs runs that differ in optimizer (e.g. runs with optimizer sgd); "
                                            f"these runs all use {used}"), anchor)
    table = optimizer_comparison(index, rows, store.task_info())
    if table.empty:
        return Section(title, not_available("no run has a validation-selected checkpoint"), anchor)
    table["optimizer"] = [f"{o} (momentum {m:g})" if o == "sgd" else str(o)
                          for o, m in zip(table["optimizer"], table["momentum"].astype(float))]
    table["value"] = [f"{m:.4g}{f' ± {s:.2g}' if n > 1 else ''} (n={n})"
                      for m, s, n in zip(table["mean"], table["std"], table["n"])]
    wide = table.pivot_table(index=["setting", "task", "mode", "method", "metric"], columns="optimizer",
                             values="value", aggfunc="first").reset_index()
    wide.columns.name = None
    wide.loc[wide["mode"] == "stl", "method"] = "-"
    body = table_html(wide, out_dir, "optimizers",
                      "Test selection metric at the validation-selected checkpoint by optimizer: mean ± std over n "
                      "runs (seeds) per setting, task, mode and method.")
    return Section(title, body, anchor)


def elich_sections(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """SectionBuilder: gradient alignment and magnitudes, Adam vs SGD."""
    configured, _ = by_configuration(index, rows, {})
    return [alignment_section(configured, out_dir), optimizer_section(index, rows, store, out_dir)]
