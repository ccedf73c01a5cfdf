"""Report sections after Elich et al.: inter- vs intra-task gradient alignment, magnitude
ratios between tasks, and the Adam vs SGD comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlens.analysis.alignment import (
    alignment_distributions,
    alignment_summary,
    comparability_note,
    magnitude_ratio_summary,
    optimizer_comparison,
    optimizers_compared,
)
from mtlens.quantities import MAGNITUDE_RATIO
from mtlens.render import Section, by_configuration, not_available, per_setting, save_figure, slug, table_html
from mtlens.render.charts import Rule, Spec, facet, interactive, legend_toggle, quantitative, reference_line, tip, when
from mtlens.store import RunStore

HISTOGRAM_BINS = np.linspace(-1, 1, 41)
"""Bins of the cosine histograms (width 0.05 on [-1, 1])."""

MAX_LEGEND_ENTRIES = 20
"""A figure with more series than this hides its legend (the tooltip names the series)."""


def alignment_figure(distributions: pd.DataFrame) -> Spec:
    """Histograms (densities, :data:`HISTOGRAM_BINS`) of the cosines of each kind, one panel per kind
    sharing the x axis, with the median dashed; intra-task kinds blue, inter-task red."""
    bars = []
    for kind, values in distributions.groupby("kind", sort=True)["value"]:
        counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
        bars.append(
            pd.DataFrame(
                {
                    "kind": f"{kind} (n={len(values)})",
                    "start": edges[:-1],
                    "end": edges[1:],
                    "density": counts / (len(values) * np.diff(edges)),
                    "count": counts,
                    "median": float(values.median()),
                    "group": "intra-task" if "intra" in kind else "inter-task",
                }
            )
        )
    frame = pd.concat(bars, ignore_index=True)
    x = {**quantitative("start", "cosine"), "scale": {"domain": [-1, 1]}}
    histogram = {
        "mark": {"type": "bar", "opacity": 0.8},
        "encoding": {
            "x": x,
            "x2": {"field": "end"},
            "y": quantitative("density", zero=True),
            "y2": {"datum": 0},
            "color": {
                "field": "group",
                "type": "nominal",
                "scale": {"domain": ["intra-task", "inter-task"], "range": ["#1f77b4", "#d62728"]},
            },
            "tooltip": [
                tip("kind", "nominal"),
                tip("start", title="from"),
                tip("end", title="to"),
                tip("count"),
                tip("density"),
            ],
        },
    }
    median = {
        "transform": [{"aggregate": [{"op": "min", "field": "median", "as": "median"}]}],
        "mark": {"type": "rule", "color": "black", "strokeDash": [4, 3]},
        "encoding": {"x": {"field": "median", "type": "quantitative"}, "tooltip": [tip("median")]},
    }
    return facet(interactive([histogram, reference_line(Rule(0.0, "x")), median]), frame, "kind", independent_y=False)


def magnitude_ratio_figure(magnitude: pd.DataFrame) -> Spec:
    """Mean over runs of log10(||g_a|| / ||g_b||) by epoch, one line per task pair, one panel per
    setting and method (the legend is hidden beyond :data:`MAX_LEGEND_ENTRIES` pairs)."""
    curves = (
        magnitude.assign(log10_ratio=np.log10(magnitude["value"]))
        .groupby(["setting", "method", "task", "epoch"], as_index=False)
        .agg(log10_ratio=("log10_ratio", "mean"), n=("run_id", "nunique"))
    )
    curves["panel"] = curves["setting"] + " · " + curves["method"]
    curves = curves.rename(columns={"task": "pair"}).drop(columns=["setting", "method"])
    legend = legend_toggle("pair")
    color: Spec = {"field": "pair", "type": "nominal"}
    if curves["pair"].nunique() > MAX_LEGEND_ENTRIES:
        color["legend"] = None
    line = {
        "mark": {"type": "line", "point": {"size": 12}},
        "encoding": {
            "x": quantitative("epoch"),
            "y": quantitative("log10_ratio", "log10(||g_a|| / ||g_b||)"),
            "color": color,
            "opacity": when(legend["name"], 1.0, 0.1),
            "tooltip": [tip("panel", "nominal"), tip("pair", "nominal"), tip("epoch"), tip("log10_ratio"), tip("n")],
        },
    }
    return facet(interactive([line, reference_line(Rule(0.0))], legend), curves, "panel")


def alignment_section(rows: pd.DataFrame, out_dir: Path) -> Section:
    title, anchor = "Gradient alignment between and within tasks (Elich et al.)", "alignment"
    distributions = alignment_distributions(rows)
    if distributions.empty:
        return Section(
            title,
            not_available(
                "needs probe/conflict_cosine (MTL runs) and probe/intra_cosine_subbatch "
                "or probe/intra_cosine_classgroup (STL runs); enable probes"
            ),
            anchor,
        )
    note = comparability_note(set(distributions["kind"]))
    body = table_html(
        alignment_summary(distributions),
        out_dir,
        "alignment",
        "Cosines between task gradients in MTL runs and between gradients of one task's sub-batches or "
        "class groups in STL runs, pooled over probe steps: n values from n_runs runs. Descriptive, no test."
        + (f" {note[0].upper()}{note[1:]}." if note else ""),
    )
    figures = {
        setting: [
            save_figure(
                alignment_figure(frame),
                out_dir,
                slug("alignment", setting),
                f"{setting}: distributions of the {' and '.join(map(repr, pd.unique(frame['kind'])))} gradient "
                "cosines over training, from "
                f"{frame['run_id'].nunique()} runs ({frame['seed'].nunique()} seeds); n cosines per panel in its "
                "title; "
                f"dashed: median.",
            )
        ]
        for setting, frame in distributions.groupby("setting")
    }
    body += per_setting(figures, "figure")
    ratios = magnitude_ratio_summary(rows)
    if ratios.empty:
        body += not_available("magnitude ratios: needs probe/magnitude_ratio in MTL runs")
    else:
        body += table_html(
            ratios,
            out_dir,
            "magnitude_ratio",
            "Gradient magnitude ratio ||g_a|| / ||g_b|| per task pair of MTL runs over training: the "
            "median ratio, and the median and 90th percentile of |log10 ratio| (orders of magnitude).",
        )
        magnitude = rows[(rows["quantity"] == MAGNITUDE_RATIO) & (rows["mode"] == "mtl") & (rows["value"] > 0)]
        body += save_figure(
            magnitude_ratio_figure(magnitude),
            out_dir,
            "magnitude_ratio",
            f"Gradient magnitude ratio between tasks by epoch, mean of log10 over "
            f"{magnitude['run_id'].nunique()} MTL runs ({magnitude['seed'].nunique()} seeds); n runs "
            f"per point in the tooltip; one panel per setting and method.",
        )
    return Section(title, body, anchor)


def optimizer_section(index: pd.DataFrame, rows: pd.DataFrame, store: RunStore, out_dir: Path) -> Section:
    title, anchor = "Adam vs SGD", "optimizers"
    if not optimizers_compared(index):
        recorded = index["optimizer"].dropna() if "optimizer" in index else pd.Series(dtype=object)
        used = (
            f"these runs all use {', '.join(sorted(recorded.astype(str).unique()))}"
            if len(recorded)
            else "these runs do not record their optimizer (a loop of your own: the hyperparameter 'optimizer')"
        )
        return Section(
            title, not_available(f"needs runs that differ in optimizer (e.g. runs with optimizer sgd); {used}"), anchor
        )
    # runs that differ in more than the optimizer, its momentum and learning rate (e.g. a loss-scale store's
    # task_loss_scales) are different configurations, never pooled as seeds: each its own setting label
    compared = index.drop(columns=["optimizer", "momentum", "lr"], errors="ignore")
    configured, info = by_configuration(compared, rows, store.task_info())
    table = optimizer_comparison(index, configured, info)
    if table.empty:
        return Section(title, not_available("no run has a validation-selected checkpoint"), anchor)
    # an optimizer run at several learning rates (the optimizers experiment's grid): each its own column
    several_lr = table.groupby(["optimizer", "momentum"], dropna=False)["lr"].nunique(dropna=False).max() > 1
    table["optimizer"] = [
        optimizer_label(o, m) + (f", lr {lr:g}" if several_lr and pd.notna(lr) else "")
        for o, m, lr in zip(table["optimizer"], table["momentum"], table["lr"])
    ]
    table["value"] = [
        f"{m:.4g}{f' ± {s:.2g}' if n > 1 else ''} (n={n})" for m, s, n in zip(table["mean"], table["std"], table["n"])
    ]
    wide = table.pivot_table(
        index=["setting", "task", "mode", "method", "metric"], columns="optimizer", values="value", aggfunc="first"
    ).reset_index()
    wide.columns.name = None
    wide.loc[wide["mode"] == "stl", "method"] = "-"
    body = table_html(
        wide,
        out_dir,
        "optimizers",
        "Test selection metric at the validation-selected checkpoint by optimizer (and learning rate where the "
        "runs use several): mean ± std over n runs (seeds) per setting, task, mode and method; runs that differ "
        "in anything else (the setting's [label]) are never pooled. Descriptive, no test.",
    )
    return Section(title, body, anchor)


def optimizer_label(optimizer: Any, momentum: Any) -> str:
    """``sgd (momentum 0.9)``; ``not recorded`` for a missing optimizer or SGD momentum (NaN: a recorded
    run whose hyperparameters left it out)."""
    if pd.isna(optimizer):
        return "optimizer not recorded"
    if optimizer != "sgd":
        return str(optimizer)
    return f"sgd (momentum {'not recorded' if pd.isna(momentum) else format(float(momentum), 'g')})"


def elich_sections(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """SectionBuilder: gradient alignment and magnitudes, Adam vs SGD."""
    configured, _ = by_configuration(index, rows, {})
    return [alignment_section(configured, out_dir), optimizer_section(index, rows, store, out_dir)]
