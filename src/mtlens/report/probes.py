"""Report section of the trajectory probes: every probe over training, STL vs MTL, per task.

Per setting and MTL method, one figure of the per-task probes (rows: probes, columns: tasks;
STL and MTL mean ± std over seeds by epoch) and, where the MTL runs have pair rows, one figure of
inter-task conflict: per pair the cosine of the task gradients beside each task's intra-task
sub-batch and class-group cosines (Elich et al.: inter- vs intra-task alignment on one scale),
the magnitude similarity, and per run the fraction of conflicting pairs and the update norm.
Every probe quantity the runs recorded is drawn, registered in this process or not (a user's probe
whose module the report does not import): per-task ones in the first figure, per-run and per-pair
ones without a figure of their own in a third (:func:`recorded_probe_quantities`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mtlens.probes import per_task_quantities
from mtlens.quantities import (
    CONFLICT_FRACTION,
    MAGNITUDE_RATIO,
    MAGNITUDE_SIMILARITY,
    PROBE_PREFIX,
    RUN_ROW,
    TASK_PAIR,
    UPDATE_NORM,
)
from mtlens.render import Figure, Section, by_configuration, per_setting, slug
from mtlens.render.charts import Rule, Spec, band_chart, concat, mean_band, tip
from mtlens.report.figures import training_curves_figure
from mtlens.store import RunStore

MAX_PAIR_PANELS = 12
"""At most this many task pairs get panels in a conflict figure (with more, the most conflicting
pairs: lowest mean inter-task cosine); the alignment section's table pools all pairs."""


def probes_section(store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path) -> list[Section]:
    """A :data:`~mtlens.report.study_report.SectionBuilder`: the :func:`probe_figures`, or nothing without
    probe rows."""
    del store
    rows, _ = by_configuration(index, rows, {})
    parts: dict[str, list[str]] = {}
    for figure in probe_figures(rows):
        parts.setdefault(figure.setting, []).append(figure.save(out_dir))
    if not parts:
        return []
    return [Section("What did the probes see?", per_setting(parts, "probe figures"), "probes")]


def probe_figures(rows: pd.DataFrame) -> Iterator[Figure]:
    """Per (setting, method) of the MTL runs with probe rows (``rows`` with :func:`by_configuration`'s
    setting names): the per-task probes of STL and MTL runs (``probes_<setting>_<method>``) and, where the
    MTL runs have pair rows, the :func:`conflict_figure` (``conflict_<setting>_<method>``), and where they
    have other per-run or per-pair probe quantities, those (``probes_other_<setting>_<method>``): every probe
    quantity recorded has a place (:func:`recorded_probe_quantities`).  Means over seeds are aggregated once
    for all figures (STL runs once per setting)."""
    probe_rows = rows[rows["quantity"].str.startswith(PROBE_PREFIX)]
    if probe_rows.empty:
        return
    task_quantities, other_quantities = recorded_probe_quantities(probe_rows)
    per_task = probe_rows[probe_rows["quantity"].isin(task_quantities)]
    stl, mtl = per_task[per_task["mode"] == "stl"], per_task[per_task["mode"] == "mtl"]
    stl_rows, stl_stats = (
        dict(iter(stl.groupby("setting"))),
        dict(iter(mean_band(stl, ["setting", "quantity", "task", "mode"], "epoch").groupby("setting"))),
    )
    mtl_stats = dict(
        iter(mean_band(mtl, ["setting", "method", "quantity", "task", "mode"], "epoch").groupby(["setting", "method"]))
    )
    for (setting, method), mtl_rows in probe_rows[probe_rows["mode"] == "mtl"].groupby(["setting", "method"]):
        task_rows = mtl_rows[mtl_rows["quantity"].isin(task_quantities)]
        pair = pd.concat([stl_rows.get(setting, task_rows.iloc[:0]), task_rows])
        tasks = [t for t in sorted(task_rows["task"].unique()) if TASK_PAIR not in t and t != RUN_ROW]
        quantities = [q for q in task_quantities if q in set(pair["quantity"])]
        if tasks and quantities:
            n_seeds = {mode: frame["seed"].nunique() for mode, frame in pair.groupby("mode")}
            stats = pd.concat([s for s in (stl_stats.get(setting), mtl_stats.get((setting, method))) if s is not None])
            fig = training_curves_figure(
                pair, tasks, quantities, stats.drop(columns=["setting", "method"], errors="ignore")
            )
            caption = (
                f"{setting}, method {method}: every per-task probe by epoch, STL (blue) vs MTL (red), mean ± std "
                f"over seeds ({n_seeds.get('stl', 0)} STL and {n_seeds.get('mtl', 0)} MTL seeds; runs per curve in "
                f"the tooltip; thin lines: single runs); rows: {', '.join(quantities)}. update_cosine: cosine of the "
                f"task's probe-sample gradient with the update direction the method applied to the shared "
                f"parameters at that step (for STL, the task's own batch gradient)."
            )
            yield Figure(slug("probes", setting, method), setting, fig, caption, (setting, method))
        conflict_rows = mtl_rows[mtl_rows["quantity"].isin(CONFLICT_SERIES)]
        pairs = sorted(t for t in conflict_rows["task"].unique() if TASK_PAIR in t)
        if pairs:
            shown = conflict_pairs(mtl_rows, pairs)
            more = (
                f" The {len(shown)} most conflicting of {len(pairs)} pairs (lowest mean inter-task cosine) are drawn."
                if len(shown) < len(pairs)
                else ""
            )
            caption = (
                f"{setting}, method {method} (MTL, {mtl_rows['seed'].nunique()} seeds, mean ± std): inter-task "
                f"gradient cosine on the shared parameters next to each task's intra-task cosines (two halves "
                f"of a batch; two class groups), magnitude similarity of the task gradients, and per run the "
                f"fraction of conflicting pairs and the norm of the applied update.{more}"
            )
            yield Figure(
                slug("conflict", setting, method), setting, conflict_figure(mtl_rows, shown), caption, (setting, method)
            )
        other = probe_rows[(probe_rows["setting"] == setting) & probe_rows["quantity"].isin(other_quantities)]
        other = other[(other["mode"] == "stl") | (other["method"] == method)]
        if len(other):
            keys = sorted(other["task"].unique(), key=lambda t: (t != RUN_ROW, t))
            shown = keys[:MAX_PAIR_PANELS]
            more = f" The first {len(shown)} of {len(keys)} task keys are drawn." if len(shown) < len(keys) else ""
            quantities = [q for q in other_quantities if q in set(other["quantity"])]
            caption = (
                f"{setting}, method {method}: the other probe quantities recorded per run (task *) or per task "
                f"pair (a|b), by epoch, STL (blue) vs MTL (red), mean ± std over seeds; rows: "
                f"{', '.join(quantities)}.{more}"
            )
            yield Figure(
                slug("probes_other", setting, method),
                setting,
                training_curves_figure(other, shown, quantities),
                caption,
                (setting, method),
            )


def conflict_pairs(rows: pd.DataFrame, pairs: list[str]) -> list[str]:
    """``pairs``, or the :data:`MAX_PAIR_PANELS` with the lowest mean ``probe/conflict_cosine`` if there are more."""
    if len(pairs) <= MAX_PAIR_PANELS:
        return pairs
    cosine = rows[rows["quantity"] == "probe/conflict_cosine"].groupby("task")["value"].mean()
    return sorted(cosine.reindex(pairs).sort_values(na_position="last").index[:MAX_PAIR_PANELS])


CONFLICT_SERIES = {
    "probe/conflict_cosine": "inter-task cosine",
    "probe/intra_cosine_subbatch": "{which} task: half vs half",
    "probe/intra_cosine_classgroup": "{which} task: class groups",
}


def conflict_figure(rows: pd.DataFrame, pairs: list[str]) -> Spec:
    """Per pair ``a|b`` (panels): conflict cosine with the intra-task cosines of ``a`` (first task)
    and ``b`` (second), and magnitude similarity; then conflict fraction and update norm (per run,
    task ``*``).  Mean ± std over the runs by epoch."""
    drawn = rows[rows["task"].isin({t for pair in pairs for t in (pair, *pair.split(TASK_PAIR))})]  # not all 780 pairs
    by_series = dict(iter(drawn.groupby(["task", "quantity"], sort=False)))
    frames, labels = [], []  # labels: (pair, series, of) per frame, added once after the concat
    for pair in pairs:
        a, b = pair.split(TASK_PAIR)
        for task, which in ((pair, ""), (a, "first"), (b, "second")):
            for quantity, label in CONFLICT_SERIES.items():
                if (quantity == "probe/conflict_cosine") == (task == pair):
                    if (task, quantity) in by_series:
                        frames.append(by_series[task, quantity])
                        labels.append((pair, label.format(which=which), task))
    if frames:
        sizes = [len(frame) for frame in frames]
        names = ("pair", "series", "of")
        cosines = pd.concat(frames).assign(
            **{name: np.repeat([label[i] for label in labels], sizes) for i, name in enumerate(names)}
        )
    else:
        cosines = rows.iloc[:0].assign(pair="", series="", of="")
    charts = []
    if len(cosines):
        stats = mean_band(cosines, ["pair", "series", "of"], "epoch")
        charts.append(
            band_chart(
                stats,
                "epoch",
                "series",
                facet_by="pair",
                x_title="epoch",
                y_title="cosine",
                tooltip=[tip("of", "nominal")],
                rules=[Rule(0.0)],
                title="per pair (first|second task): inter- vs intra-task cosine",
            )
        )
    magnitude = rows[rows["task"].isin(pairs) & (rows["quantity"] == "probe/magnitude_similarity")]
    if len(magnitude):
        stats = mean_band(
            magnitude.assign(pair=magnitude["task"], series="magnitude similarity"), ["pair", "series"], "epoch"
        )
        charts.append(
            band_chart(
                stats,
                "epoch",
                "series",
                facet_by="pair",
                x_title="epoch",
                y_title="magnitude similarity",
                color_scale={"range": ["black"]},
            )
        )
    per_run = []
    for quantity, label in (
        ("probe/conflict_fraction", "fraction of pairs with cosine < 0"),
        ("probe/update_norm", "norm of the applied update"),
    ):
        frame = rows[(rows["task"] == RUN_ROW) & (rows["quantity"] == quantity)]
        if len(frame):
            per_run.append(
                band_chart(
                    mean_band(frame.assign(series=label), ["series"], "epoch"),
                    "epoch",
                    "series",
                    x_title="epoch",
                    y_title=label,
                    color_scale={"range": ["#d62728"]},
                    title=label,
                )
            )
    if per_run:
        charts.append(concat("hconcat", per_run, independent=["color"]))
    return concat("vconcat", charts, independent=["color"])


DRAWN_ELSEWHERE = (
    *CONFLICT_SERIES,
    MAGNITUDE_SIMILARITY,
    CONFLICT_FRACTION,
    UPDATE_NORM,
    MAGNITUDE_RATIO,
)
"""Probe quantities of task pairs or whole runs that have figures of their own: the conflict figure
(:func:`conflict_figure`) and the alignment section's magnitude-ratio figure."""


def recorded_probe_quantities(probe_rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """``(per_task, other)``: every probe quantity of ``probe_rows`` once, whether or not its probe is
    registered in this process (a store may hold a user probe's rows that the report's process never
    imported).  ``per_task``: quantities with rows of single tasks, the registered probes' in their
    order (:func:`~mtlens.probes.per_task_quantities`) and then the others by name; ``other``: the
    remaining quantities (rows of task pairs ``a|b`` or of the run, ``*``) without a figure of their
    own (:data:`DRAWN_ELSEWHERE`), by name."""
    pair_or_run = probe_rows["task"].str.contains(TASK_PAIR, regex=False) | (probe_rows["task"] == RUN_ROW)
    single = set(probe_rows.loc[~pair_or_run, "quantity"])
    known = [q for q in per_task_quantities() if q in single]
    other = set(probe_rows.loc[pair_or_run, "quantity"]) - single - set(DRAWN_ELSEWHERE)
    return known + sorted(single - set(known)), sorted(other)
