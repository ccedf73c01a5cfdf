"""Report section of the trajectory probes: every probe over training, STL vs MTL, per task.

Per setting and MTL method, one figure of the per-task probes (rows: probes, columns: tasks;
STL and MTL mean ± std over seeds by epoch) and, where the MTL runs have pair rows, one figure of
inter-task conflict: per pair the cosine of the task gradients beside each task's intra-task
sub-batch and class-group cosines (Elich et al.: inter- vs intra-task alignment on one scale),
the magnitude similarity, and per run the fraction of conflicting pairs and the update norm.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtlens.probes import per_task_quantities  # noqa: E402
from mtlens.render import Section, by_configuration, save_figure, slug  # noqa: E402
from mtlens.report.figures import training_curves_figure  # noqa: E402
from mtlens.store import RunStore  # noqa: E402
from mtlens.quantities import (  # noqa: E402
    PROBE_PREFIX, CONFLICT_COSINE, CONFLICT_FRACTION, INTRA_COSINE_CLASSGROUP, INTRA_COSINE_SUBBATCH,
    MAGNITUDE_SIMILARITY, UPDATE_NORM)



def probes_section(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """A :data:`~mtlens.report.study_report.SectionBuilder`: the probe figures, or nothing without probe rows."""
    del store
    rows, _ = by_configuration(index, rows, {})
    probe_rows = rows[rows["quantity"].str.startswith(PROBE_PREFIX)]
    if probe_rows.empty:
        return []
    parts = []
    for (setting, method), mtl_rows in probe_rows[probe_rows["mode"] == "mtl"].groupby(["setting", "method"]):
        pair = pd.concat([probe_rows[(probe_rows["setting"] == setting) & (probe_rows["mode"] == "stl")], mtl_rows])
        tasks = [t for t in sorted(mtl_rows["task"].unique()) if "|" not in t and t != "*"]
        quantities = [q for q in per_task_quantities() if q in set(pair["quantity"])]
        if tasks and quantities:
            n_seeds = {mode: frame["seed"].nunique() for mode, frame in pair.groupby("mode")}
            fig = training_curves_figure(pair, tasks, quantities)
            parts.append(save_figure(
                fig, out_dir, slug("probes", setting, method),
                f"{setting}, method {method}: every per-task probe by epoch, STL (blue) vs MTL (red), mean ± std "
                f"over seeds ({n_seeds.get('stl', 0)} STL and {n_seeds.get('mtl', 0)} MTL seeds; runs per curve in "
                f"the legend); rows: {', '.join(quantities)}. update_cosine: cosine of the task's probe-sample "
                f"gradient with the update direction "
                f"the method applied to the shared parameters at that step (for STL, the task's own batch "
                f"gradient)."))
        pairs = sorted(t for t in mtl_rows["task"].unique() if "|" in t)
        if pairs:
            parts.append(save_figure(
                conflict_figure(mtl_rows, pairs), out_dir, slug("conflict", setting, method),
                f"{setting}, method {method} (MTL, {mtl_rows['seed'].nunique()} seeds, mean ± std): inter-task "
                f"gradient cosine on the shared parameters next to each task's intra-task cosines (two halves "
                f"of a batch; two class groups), magnitude similarity of the task gradients, and per run the "
                f"fraction of conflicting pairs and the norm of the applied update."))
    if not parts:
        return []
    return [Section("What did the probes see?", "".join(parts), "probes")]


def conflict_figure(rows: pd.DataFrame, pairs: list[str]) -> "plt.Figure":
    """Per pair ``a|b`` (first columns): conflict cosine with the intra-task cosines of ``a`` and ``b``,
    and magnitude similarity; last column: conflict fraction and update norm (per run)."""
    fig, axes = plt.subplots(2, len(pairs) + 1, figsize=(4.2 * (len(pairs) + 1), 6.0), squeeze=False)
    for j, pair in enumerate(pairs):
        a, b = pair.split("|")
        cosine_ax, magnitude_ax = axes[0][j], axes[1][j]
        _mean_band(cosine_ax, rows, pair, CONFLICT_COSINE, f"cos(g_{a}, g_{b})", "black")
        for task, color in ((a, "#1f77b4"), (b, "#2ca02c")):
            _mean_band(cosine_ax, rows, task, INTRA_COSINE_SUBBATCH, f"{task}: half vs half", color)
            _mean_band(cosine_ax, rows, task, INTRA_COSINE_CLASSGROUP, f"{task}: class groups", color, "--")
        cosine_ax.axhline(0.0, color="grey", linewidth=0.8)
        cosine_ax.set_title(f"pair {pair}: inter- vs intra-task cosine")
        _mean_band(magnitude_ax, rows, pair, MAGNITUDE_SIMILARITY, "magnitude similarity", "black")
        magnitude_ax.set_title(f"pair {pair}")
    _mean_band(axes[0][-1], rows, "*", CONFLICT_FRACTION, "conflicting pairs", "#d62728")
    axes[0][-1].set_title("fraction of pairs with cosine < 0")
    _mean_band(axes[1][-1], rows, "*", UPDATE_NORM, "||update||", "#d62728")
    axes[1][-1].set_title("norm of the applied update")
    for ax in axes.flat:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _mean_band(ax: "plt.Axes", rows: pd.DataFrame, task: str, quantity: str, label: str, color: str,
               linestyle: str = "-") -> None:
    frame = rows[(rows["task"] == task) & (rows["quantity"] == quantity)]
    if frame.empty:
        return
    agg = frame.groupby("epoch")["value"].agg(["mean", "std"]).reset_index()
    x, mean, std = (agg[c].to_numpy() for c in ("epoch", "mean", "std"))
    ax.plot(x, mean, color=color, linestyle=linestyle, label=f"{label} (n={frame['run_id'].nunique()})")
    if np.isfinite(std).any():
        ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.15, linewidth=0)
