"""Report sections that explain transfer: the optimization effect and the correlations of
trajectory factors with transfer and the gap (probe trajectories and conflict over training
are drawn by :mod:`mtlens.report.probes`).

The report hands each section the analyses it shows, computed once per report
(:class:`mtlens.report.study_report.ReportData`); where the data a section needs is missing it
says so ("not available: ...") instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mtlens.analysis.inference import symmetry_diagnostic
from mtlens.analysis.optimization import loss_ratio_curves, optimization_tests, steps_to_loss
from mtlens.render import Figure, Section, not_available, per_setting, slug, table_html
from mtlens.render.charts import (
    FACET_COLUMNS,
    Rule,
    Spec,
    band_chart,
    inline_data,
    interactive,
    legend_toggle,
    mean_band,
    quantitative,
    tip,
    when,
)
from mtlens.render.tables import confidence, interval_confidences
from mtlens.report.oddities import early_window_notes, with_notes
from mtlens.report.verdicts import CORRELATION_KINDS, correlation_words

OPTIMIZATION_COLUMNS = (
    "setting",
    "task",
    "method",
    "n_seeds",
    "log_ratio_early",
    "log_ratio_early_p_adjusted",
    "log_ratio_final",
    "log_ratio_final_p_adjusted",
    "note",
)
"""The optimization table's columns a reader needs (the others are one click away)."""

LEVEL_FRACTIONS = (0.5, 0.9)
"""Loss levels of the steps-to-loss table: these fractions of the way (in log loss) from the
highest initial to the highest final training loss of the task's runs."""


def _loss_levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, task): the :data:`LEVEL_FRACTIONS` levels between initial and final loss."""
    loss = rows[(rows["quantity"] == "train/loss") & (rows["value"] > 0) & np.isfinite(rows["value"])]
    records = []
    for (setting, task), frame in loss.groupby(["setting", "task"]):
        per_run = frame.sort_values("step").groupby("run_id")["value"]
        start, end = per_run.first().max(), per_run.min().max()
        if not start > end > 0:
            continue
        records += [
            {"setting": setting, "task": task, "level": float(np.exp(np.log(start) + q * np.log(end / start)))}
            for q in LEVEL_FRACTIONS
        ]
    return pd.DataFrame.from_records(records, columns=["setting", "task", "level"])


def optimization_table(rows: pd.DataFrame, effect: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """The optimization table: :func:`~mtlens.analysis.optimization.optimization_tests` of ``effect`` at
    level ``alpha`` with a ``note`` where the early window holds only step 0
    (:func:`~mtlens.report.oddities.early_window_notes` of ``rows``); empty without an effect."""
    if not len(effect):
        return pd.DataFrame()
    return with_notes(optimization_tests(effect, alpha), [early_window_notes(rows)])


def optimization_section(rows: pd.DataFrame, summary: pd.DataFrame, out_dir: Path, alpha: float = 0.05) -> Section:
    """The optimization table ``summary`` of ``rows`` (:func:`optimization_table` at FDR ``alpha``), steps to
    two loss levels and the loss-ratio curves per (setting, method)."""
    title, anchor = "Did MTL help or harm optimization?", "optimization"
    if summary.empty:
        return Section(title, not_available("needs STL and MTL runs with the same seeds and train/loss"), anchor)
    body = table_html(
        summary,
        out_dir,
        "optimization_effect",
        "Optimization effect: log(L_MTL / L_STL) of the training loss at equal steps, each MTL run "
        f"paired with the STL run of the same seed; early = first 25% of the steps; mean, std, "
        f"{confidence(alpha)} interval and paired (skewness-corrected t) p-value over the n_seeds per-seed log-ratios, "
        f"p_adjusted: Benjamini–Hochberg over this table's rows at FDR {alpha:g}, early and final each its own "
        f"family; *_min_detectable: the log-ratio "
        f"detected with 80% power; min_p: the smallest p the test allows (docs/statistics.md). "
        f"Negative: MTL reached a lower training loss at the same step.",
        short=OPTIMIZATION_COLUMNS,
    )
    table = steps_to_loss_table(rows)
    if len(table):
        body += table_html(
            table,
            out_dir,
            "steps_to_loss",
            "Steps and epochs to first reach a training-loss level (levels 50% and 90% of the way, "
            "in log loss, from the highest initial to the highest final loss of the task's runs); "
            "means over the n_reached of n_runs runs that reached it.",
        )
    figures: dict[str, list[str]] = {}
    for figure in loss_ratio_figures(rows):
        figures.setdefault(figure.setting, []).append(figure.save(out_dir))
    return Section(title, body + per_setting(figures, "loss-ratio figures"), anchor)


def steps_to_loss_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, task, mode, method, level) of the :data:`LEVEL_FRACTIONS` levels: runs, runs that reached
    the level, and their mean step and epoch of first reaching it (STL runs' method ``-``); empty without
    training-loss rows that fall."""
    levels = _loss_levels(rows)
    reached = []
    loss_rows = dict(iter(rows[rows["quantity"] == "train/loss"].groupby(["setting", "task"])))
    for (setting, task), frame in levels.groupby(["setting", "task"]):
        reached.append(steps_to_loss(loss_rows[(setting, task)], frame["level"].tolist()))
    if not reached:
        return pd.DataFrame()
    table = (
        pd.concat(reached)
        .groupby(["setting", "task", "mode", "method", "level"])
        .agg(
            n_runs=("run_id", "nunique"),
            n_reached=("step", "count"),
            mean_step=("step", "mean"),
            mean_epoch=("epoch", "mean"),
        )
        .reset_index()
    )
    table.loc[table["mode"] == "stl", "method"] = "-"
    return table


def loss_ratio_figures(rows: pd.DataFrame) -> Iterator[Figure]:
    """Per (setting, method): the training-loss log-ratio MTL/STL at equal steps per task
    (:func:`~mtlens.analysis.optimization.loss_ratio_curves`), mean ± std over seed pairs and each pair."""
    curves = loss_ratio_curves(rows)
    curves = curves.assign(value=curves["log_ratio"], run_id="seed " + curves["seed"].astype(str))
    stats = dict(
        iter(mean_band(curves, ["setting", "method", "task"], "epoch", run="seed").groupby(["setting", "method"]))
    )
    for (setting, method), frame in curves.groupby(["setting", "method"]):
        chart = band_chart(
            stats[(setting, method)],
            "epoch",
            "task",
            runs=frame,
            x_title="epoch",
            y_title="log(L_MTL / L_STL) at equal steps",
            rules=[Rule(0.0)],
            width=520,
            height=240,
        )
        n_seeds = frame["seed"].nunique()
        caption = (
            f"{setting}, method {method}: training-loss log-ratio MTL/STL at equal steps per task, mean ± std over "
            f"{n_seeds} seed pairs (each MTL run against the same-seed STL run; thin lines: single seeds); below 0 "
            f"= MTL optimizes the task faster."
        )
        yield Figure(slug("loss_ratio", setting, method), setting, chart, caption, (setting, method))


def scatter_figures(
    rows: pd.DataFrame, units: pd.DataFrame, table: pd.DataFrame, alpha: float = 0.05
) -> Iterator[Figure]:
    """Per target ``y`` of the correlation ``table`` (of ``units``, from ``rows``): :func:`scatter_figure`."""
    for target, rows_of_target in table.groupby("y", sort=False):
        panels = "; ".join(
            f"{row['x']}: n = {row['n']} units ({row['n_groups']} clusters), "
            f"{', '.join(_coefficient_text(row, kind) for kind in CORRELATION_KINDS)} "
            f"(Pearson: {correlation_words(row, alpha)})"
            for row in rows_of_target.to_dict("records")
        )
        caption = (
            f"{target} against each factor over the units (from {rows['run_id'].nunique()} runs, "
            f"{units['seed'].nunique()} seeds), one colour per method, least-squares line; jackknife CIs in "
            f"brackets ({interval_confidences(table, alpha)}). {panels}."
        )
        yield Figure(slug("scatter", target), "", scatter_figure(units, rows_of_target), caption, (str(target),))


def _coefficient_text(row: Mapping[str, Any], kind: str) -> str:
    """``"Pearson r = 0.61 [0.20, 0.84]"``: one coefficient of a correlation row with its interval, saying so
    where there is no interval (too few clusters for the jackknife) or no coefficient (a value does not vary)."""
    name, column = CORRELATION_KINDS[kind]
    r, low, high = (float(row.get(c, math.nan)) for c in (column, f"{kind}_low", f"{kind}_high"))
    if not math.isfinite(r):
        return f"{name}: none (a value does not vary)"
    interval = f"[{low:.2f}, {high:.2f}]" if math.isfinite(low) and math.isfinite(high) else "(no interval)"
    return f"{name} = {r:.2f} {interval}"


def symmetry_paragraph(table: pd.DataFrame, alpha: float = 0.05) -> str:
    """One paragraph: the pooled check (:func:`~mtlens.analysis.inference.symmetry_diagnostic`) of the
    paired tests' symmetry assumption over the ``skewness`` and ``n_*`` (or ``n_seeds``) of a table's
    rows, judged at ``alpha``, the rows of one (setting, task) counted once (they share its STL runs);
    empty without paired rows."""
    if "skewness" not in table:
        return ""
    counts = table["n_seeds"] if "n_seeds" in table else table.get("n_mtl", pd.Series(np.nan, index=table.index))
    shared = [c for c in ("setting", "task") if c in table]  # the rows of a task share its STL runs
    groups = table[shared].astype(str).agg("/".join, axis=1).to_numpy() if "task" in shared else None
    check = symmetry_diagnostic(table["skewness"].to_numpy(float), counts.fillna(0).to_numpy(int), groups=groups)
    if not check["rows"]:
        return ""
    bounds = table["skewness_bound"].dropna() if "skewness_bound" in table else pd.Series(dtype=float)
    if bounds.nunique() > 1:
        bound = f"{bounds.min():g} to {bounds.max():g}, each setting's bound"
    else:
        bound = f"{bounds.max():g}, the table's bound" if len(bounds) else "their setting's bound"
    verdict = (
        "more skewed than symmetric noise makes them: the sign-flip band may be liberal, and so may the "
        "one-level paired tests of rows more skewed than the rest (docs/statistics.md §2)"
        if check["p_value"] <= alpha
        else "no sign of skew beyond symmetric noise"
    )
    return (
        f"<p>Symmetry check of the paired differences (the sign-flip band assumes them symmetric, the "
        f"one-level paired tests hold their level up to |skewness| {bound}): pooled over "
        f"{check['rows']} rows ({check['groups']} {'tasks' if groups is not None else 'rows'} sharing no runs, "
        f"each counted once), mean |skewness| {check['mean_abs_skewness']:.2f}, Q = {check['q']:.1f}, "
        f"p = {check['p_value']:.3g} against normal differences of the same sizes: {verdict}.</p>"
    )


def scatter_figure(units: pd.DataFrame, table: pd.DataFrame) -> Spec:
    """One panel per row of the correlation ``table``: ``y`` against ``x`` over the units, one
    colour per method, with the least-squares line (Vega-Lite's regression transform: ordinary
    least squares on the panel's finite points); r and rho in the panel title.  The units' data is
    embedded once for all panels; the legend toggle of the first panel applies to all."""
    columns = sorted({*table["x"], *table["y"]})
    keys = [c for c in ("setting", "task", "seed", "method") if c in units]
    legend = legend_toggle("method")
    panels: list[dict[str, Any]] = []
    for row in table.itertuples():
        x, y = quantitative(row.x), quantitative(row.y)
        valid = [{"filter": " && ".join(f"isValid(datum['{c}']) && isFinite(datum['{c}'])" for c in (row.x, row.y))}]
        points = {
            "transform": valid,
            "mark": {"type": "point", "filled": True, "size": 40},
            "encoding": {
                "x": x,
                "y": y,
                "color": {"field": "method", "type": "nominal"},
                "opacity": when(legend["name"], 0.85, 0.1),
                "tooltip": [*(tip(k, "nominal") for k in keys), tip(row.x), tip(row.y)],
            },
        }
        layers = [points]
        if np.isfinite(row.pearson_r):
            layers.append(
                {
                    "transform": [*valid, {"regression": row.y, "on": row.x}],
                    "mark": {"type": "line", "color": "black", "strokeWidth": 1},
                    "encoding": {"x": x, "y": y},
                }
            )
        params = [] if panels else [legend]
        panels.append(
            {
                "title": f"r={row.pearson_r:.2f}, rho={row.spearman_rho:.2f}, n={row.n}",
                **interactive(layers, *params, width=230, height=200),
            }
        )
    return {"data": inline_data(units.loc[:, [*keys, *columns]]), "concat": panels, "columns": FACET_COLUMNS}


def correlation_section(
    rows: pd.DataFrame,
    units: pd.DataFrame,
    differences: pd.DataFrame,
    table: pd.DataFrame,
    out_dir: Path,
    alpha: float = 0.05,
) -> Section:
    """The :func:`~mtlens.analysis.correlation.unit_table` ``units`` of ``rows``, the probe ``differences``
    (:func:`~mtlens.analysis.correlation.difference_tests`) and the correlations of the factors with transfer
    and the gap (``table``: :func:`~mtlens.analysis.correlation.correlation_table`), each table one family at
    FDR ``alpha``."""
    title, anchor = "What explains transfer?", "correlations"
    if units.empty:
        return Section(title, not_available("needs MTL runs with STL runs of the same setting"), anchor)
    body = table_html(
        units,
        out_dir,
        "units",
        f"Units of the correlation analysis: one row per (setting, task, seed, method) of an MTL run "
        f"({len(units)} units), compared with the same-seed STL run. transfer_pct > 0: MTL better; "
        f"gap_mean: mean MTL − STL validation loss at equal training loss; log_ratio_*: training-loss "
        f"log-ratio at equal steps; *_diff: MTL − STL probe means (Fisher: up to epoch 1); conflict: "
        f"the MTL run's mean over training.",
    )
    if len(differences):
        body += table_html(
            differences,
            out_dir,
            "probe_differences",
            f"Probe differences MTL − STL per seed (each MTL run against the same-seed STL run): mean "
            f"over seeds, {confidence(alpha)} interval, paired (skewness-corrected t) p-value, Benjamini–Hochberg over "
            f"this table at FDR {alpha:g}, the smallest p the test allows, the difference detected with 80% "
            f"power, Hedges' g_z and the skewness of the per-seed differences "
            f"(docs/statistics.md).",
        )
        body += symmetry_paragraph(differences, alpha)
    if table.empty:
        missing = [
            c
            for c in ("fisher_early_diff", "coherence_diff", "sharpness_diff", "conflict_cosine")
            if units[c].notna().sum() < 3
        ]
        return Section(
            title,
            body
            + not_available("fewer than 3 units with both values for every pair; needs probes " + ", ".join(missing)),
            anchor,
        )
    if not table["conclusive"].all():
        body += (
            f"<p>{int((~table['conclusive']).sum())} of {len(table)} correlations have too few clusters "
            f"for any p-value to reach {alpha:g} (min_p = 1 / number of cluster permutations): no conclusion "
            f"can be drawn from them.</p>"
        )
    body += table_html(
        table,
        out_dir,
        "correlations",
        "Pearson r and Spearman rho across units, both variables centred within (setting, task) so that "
        f"task-level means are not counted as a correlation; intervals ({interval_confidences(table, alpha)}): "
        "leave-one-seed-out jackknife on Fisher's z scale with t quantiles on (clusters − 1) degrees of freedom; "
        "two-sided p-values "
        "(H0: zero correlation) from a studentized permutation statistic (DiCiccio & Romano 2017) that "
        "moves a whole seed's values onto another seed of the same setting, unit (task, method) onto unit "
        "(task, method): the clusters are (setting, seed), everything one MTL or STL run shares "
        "(exact when at most 9,999 permutations, else 9,999 random ones); *_p_adjusted: Benjamini–Hochberg "
        f"over this table at FDR {alpha:g}, leaving out pairs whose min_p cannot reach it; conclusive: "
        f"min_p ≤ {alpha:g}. n units in n_groups clusters. See docs/statistics.md.",
    )
    for figure in scatter_figures(rows, units, table, alpha):
        body += figure.save(out_dir)
    return Section(title, body, anchor)
