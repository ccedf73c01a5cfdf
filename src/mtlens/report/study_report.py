"""The study report: one self-contained HTML file plus figures (PNG, PDF) and tables (CSV).

It answers, per setting and MTL method: did MTL help each task (transfer table), when did
the generalization gap open (gap curves and onset), and how did optimization differ
(training curves).  Other analyses add :class:`Section` objects to :func:`write_report`.

Only finished runs are analysed (:func:`analysed_runs`, the one place the report chooses its
runs): runs still running, interrupted, failed or pending are left out of every section unless
``include_unfinished`` is set, and diverged and damaged runs always are (a diverged run's
rows end before training went wrong, so its "selected" checkpoint would be the untrained one;
a damaged run's rows cannot be read).  The overview names every run left out.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.analysis.correlation import unit_table
from mtlens.analysis.gap import gap_family, gap_from_checkpoints
from mtlens.analysis.optimization import optimization_effect
from mtlens.analysis.transfer import TaskInfo, delta_m, selected_checkpoints, transfer_tests
from mtlens.errors import ConfigError, MtlensError
from mtlens.experiments import experiment_sections
from mtlens.render import RUN_KEYS, Section, by_configuration, per_setting, save_figure, slug, table_html
from mtlens.render.charts import STATIC_FORMATS, export_static, mean_band, vega_bundle
from mtlens.report.alignment import elich_sections
from mtlens.report.correlations import correlation_section, optimization_section, symmetry_paragraph
from mtlens.report.figures import gap_figure, training_curves_figure
from mtlens.report.methods import method_weights_section
from mtlens.report.probes import probes_section
from mtlens.store import RunStore

GAP_MEASURES = ("val/loss", "val/error")

SectionBuilder = Callable[[RunStore, pd.DataFrame, pd.DataFrame, Path], list[Section]]
"""``(store, runs index, trajectory rows, out_dir) -> sections`` for extra analyses."""

DEFAULT_SECTIONS: list[SectionBuilder] = [elich_sections, experiment_sections]
"""Builders whose sections every report has after the built-in ones (each renders only what its data allows)."""


@dataclass
class ReportData:
    """What the report's built-in sections read, each analysis computed at most once per report (on
    first use) and handed to every section that shows it: the selected checkpoints feed the transfer
    table and the unit table, the optimization effect the summary, its section and the unit table.

    ``rows``: trajectory rows of the analysed runs, with :func:`by_configuration`'s setting names;
    ``task_info``: the store's task info under those names; ``alpha``: FDR of each family of tests."""

    rows: pd.DataFrame
    task_info: TaskInfo
    alpha: float

    @cached_property
    def selected(self) -> pd.DataFrame:
        """:func:`~mtlens.analysis.transfer.selected_checkpoints` of every (run, task)."""
        return selected_checkpoints(self.rows, self.task_info)

    @cached_property
    def transfer(self) -> pd.DataFrame:
        """The transfer table (:func:`~mtlens.analysis.transfer.transfer_table` at FDR ``alpha``)."""
        return transfer_tests(self.selected, self.task_info, alpha=self.alpha)

    @cached_property
    def optimization(self) -> pd.DataFrame:
        """:func:`~mtlens.analysis.optimization.optimization_effect` per (setting, task, method, seed)."""
        return optimization_effect(self.rows)

    @cached_property
    def units(self) -> pd.DataFrame:
        """The correlation analysis's :func:`~mtlens.analysis.correlation.unit_table`."""
        return unit_table(self.rows, self.task_info, selected=self.selected, optimization=self.optimization)


def select_runs(
    store: RunStore,
    settings: Sequence[str] = (),
    methods: Sequence[str] = (),
    where: dict[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """The store's index restricted to ``settings`` and MTL ``methods`` (STL runs always kept), and to
    runs whose index column ``key`` holds one of the values ``where[key]`` (compared as text)."""
    index = store.runs()
    if index.empty:
        return index
    for key, values in (where or {}).items():
        if key not in index:
            raise ConfigError(f"--where: unknown run-index column {key!r}; valid: {', '.join(sorted(index.columns))}")
        matched = _matches(index[key], key, values)
        if not matched.any():
            present = sorted(index[key].astype(str).unique())
            raise ConfigError(
                f"--where {key}: no runs have {' or '.join(map(str, values))}; values present: "
                f"{', '.join(present[:20])}{' ...' if len(present) > 20 else ''}"
            )
        index = index[matched]
    if settings:
        index = index[index["setting"].isin(settings)]
    if methods:
        index = index[(index["mode"] == "stl") | index["method"].isin(methods)]
    return index


UNFINISHED_STATES = ("running", "interrupted", "failed", "pending")
"""States whose runs' recorded rows enter the analyses only with ``include_unfinished``."""


def analysed_runs(index: pd.DataFrame, include_unfinished: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(analysed, left_out)``: the finished runs of ``index`` (and, with ``include_unfinished``, those in
    :data:`UNFINISHED_STATES`), and the others, which no analysis may read."""
    keep = ("finished", *UNFINISHED_STATES) if include_unfinished else ("finished",)
    analysed = index["state"].isin(keep)
    return index[analysed], index[~analysed]


def _matches(column: pd.Series, key: str, values: Sequence[Any]) -> pd.Series:
    """Rows of ``column`` equal to one of ``values``: numerically for numeric columns (``1e-3`` matches
    ``0.001``), as text otherwise."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            raise ConfigError(f"--where {key}: expected a number, got {list(values)}") from None
        return column.astype(float).apply(lambda x: any(math.isclose(x, v, rel_tol=1e-9) for v in numbers))
    return column.astype(str).isin([str(v) for v in values])


def overview_section(
    index: pd.DataFrame, configured: pd.DataFrame, out_dir: Path, analysed_ids: Sequence[str] | None = None
) -> Section:
    """Run counts per configuration and the runs left out of the analyses (all runs of ``index`` but
    ``analysed_ids``, default: none left out); ``configured`` holds the rows with :func:`by_configuration`'s
    setting names."""
    if analysed_ids is None:
        analysed_ids = index["run_id"].tolist()
    names = configured.groupby("run_id")["setting"].first()
    counts = (
        index.assign(setting=index["run_id"].map(names).fillna(index["setting"]))
        .groupby(["setting", "mode", "method", "state"])
        .size()
        .rename("runs")
        .reset_index()
    )
    body = table_html(counts, out_dir, "runs", "Runs in this report by setting, mode, method and state.")
    if counts["setting"].str.contains(" [", regex=False).any():
        body += (
            "<p>The runs differ in their training configuration, so every comparison below is made "
            "within one configuration (shown as <code>setting [key=value ...]</code>): an MTL run is "
            "compared only with STL runs trained the same way, and runs of different configurations "
            "are never pooled as seeds. Use <code>mtlens report --where KEY=VALUE</code> to restrict "
            "the report to some of them.</p>"
        )
    mismatched = mismatched_recorded_runs(index)
    if len(mismatched):
        body += table_html(
            mismatched,
            out_dir,
            "mismatched_recorded_runs",
            "Recorded runs (your own training loop) of one setting whose configurations differ in more "
            "than the task set: STL and MTL runs are paired only when init, data order, steps and "
            "optimizer agree, so these are compared only within their own configuration, shown as "
            "<code>setting [key=value ...]</code> below.",
        )
    left_out = index[~index["run_id"].isin(analysed_ids)]
    if len(left_out):
        body += table_html(
            left_out[["run_id", "state", "last_step", "message"]],
            out_dir,
            "left_out_runs",
            "Runs left out of every analysis below: only finished runs are analysed (rerun the "
            "study to finish interrupted, failed and damaged runs; `mtlens report "
            "--include-unfinished` analyses the rows that running, interrupted and failed runs have "
            "recorded so far). Diverged runs are never analysed.",
        )
    unfinished = index[index["run_id"].isin(analysed_ids) & (index["state"] != "finished")]
    if len(unfinished):
        body += table_html(
            unfinished[["run_id", "state", "last_step"]],
            out_dir,
            "unfinished_runs",
            "Unfinished runs analysed at the user's request (--include-unfinished): every "
            "number below includes the rows they recorded so far.",
        )
    return Section("Overview", body, "overview")


def mismatched_recorded_runs(index: pd.DataFrame) -> pd.DataFrame:
    """Recorded runs (config ``source: recorder``) of settings whose recorded runs differ in a
    configuration key other than the run keys (:data:`~mtlens.report.base.RUN_KEYS`: tasks, mode, method,
    seed, ...): one row per run with ``setting, run_id, mode, differs`` (``key=value ...``)."""
    if "source" not in index:
        return pd.DataFrame()
    recorded = index[index["source"] == "recorder"]
    records = []
    for setting, runs in recorded.groupby("setting"):
        keys = [c for c in runs.columns if c not in RUN_KEYS | {"source"} and runs[c].astype(str).nunique() > 1]
        records += [
            {
                "setting": setting,
                "run_id": row["run_id"],
                "mode": row["mode"],
                "differs": " ".join(f"{k}={row[k]}" for k in keys),
            }
            for _, row in runs.iterrows()
            if keys
        ]
    return pd.DataFrame.from_records(records)


def transfer_section(table: pd.DataFrame, out_dir: Path, alpha: float) -> Section:
    """The transfer table (:func:`~mtlens.analysis.transfer.transfer_table` at FDR ``alpha``) and delta_m."""
    if table.empty:
        return Section("Transfer", "<p>No task has both STL and MTL runs yet.</p>", "transfer")
    body = table_html(
        table,
        out_dir,
        "transfer",
        f"Test performance at the validation-selected checkpoint, mean and std over the seeds the test used. "
        f"delta = MTL − STL (mean of the per-seed differences when design = paired: STL and MTL of one seed "
        f"share initialization and batch order; unpaired, Welch's t test, only where seeds do "
        f"not match); delta_low/high: {1 - alpha:.0%} t interval; effect_size: Hedges' g_z (paired) "
        f"or g (bias-corrected d); p_value: paired t test on df = n − 1 (Welch's df unpaired); p_adjusted: "
        f"Benjamini–Hochberg over this table; min_p: the smallest p-value the test allows (0 for a t test); "
        f"min_detectable: the difference detected with 80% power (noncentral t); skewness: of the per-seed "
        f"differences; verdict only where p_adjusted ≤ {alpha:g}. "
        f"relative_pct > 0 means MTL is better. See docs/statistics.md.",
    )
    body += symmetry_paragraph(table)
    body += table_html(
        delta_m(table), out_dir, "delta_m", "delta_m: mean relative improvement of MTL over STL across tasks (%)."
    )
    return Section("Did MTL help each task?", body, "transfer")


def gap_section(rows: pd.DataFrame, out_dir: Path, alpha: float) -> tuple[Section, pd.DataFrame]:
    """Gap figures per (setting, method, task), grouped by setting, and the gap table (also returned):
    one :func:`~mtlens.analysis.gap.gap_family` row per (setting, method, task, measure), BH at FDR ``alpha``."""
    keys, results = [], []
    checkpoints = gap_checkpoints(rows)
    stl_by_task = dict(iter(checkpoints[checkpoints["mode"] == "stl"].groupby(["setting", "task"], sort=False)))
    for (setting, method), mtl_rows in checkpoints[checkpoints["mode"] == "mtl"].groupby(["setting", "method"]):
        for task, task_rows in mtl_rows.groupby("task", sort=True):
            pair = pd.concat([stl_by_task.get((setting, task), checkpoints.iloc[:0]), task_rows])
            for measure in GAP_MEASURES:
                if (result := gap_from_checkpoints(pair, task, measure)) is not None:
                    keys.append((setting, method))
                    results.append(result)
    title = "When did the gap open?"
    if not results:
        return Section(title, "<p>No task has both STL and MTL trajectories.</p>", "gap"), pd.DataFrame()
    results, table = gap_family(results, alpha)
    table.insert(0, "setting", [k[0] for k in keys])
    table.insert(1, "method", [k[1] for k in keys])
    level = float(table["band_level"].iloc[0])
    figures: dict[str, list[str]] = {}
    for (setting, method, task), frame in table.groupby(["setting", "method", "task"], sort=False):
        task_results = [results[i] for i in frame.index]
        first = frame.iloc[0]
        caption = (
            f"{setting}, method {method}, task {task}: validation measures against training loss "
            f"(mean ± std over {first['n_stl']} STL and {first['n_mtl']} MTL runs) and the gap MTL − STL "
            f"({first['design']}) with its simultaneous band over all training-loss levels at per-test "
            f"level {level:.3g}; dashed: onset of a persistent gap (only where the test supports one)."
        )
        figures.setdefault(setting, []).append(
            save_figure(gap_figure(task_results), out_dir, slug("gap", setting, method, task), caption)
        )
    note = ""
    if (table["min_p"] > level).any():
        note = (
            f"<p>{int((table['min_p'] > level).sum())} of {len(table)} comparisons have too few seeds for any "
            f"p-value to reach the level {level:.3g} (min_p: 2/2^n for n paired seeds; 6 pairs are the fewest "
            f"that can reach 5%): no onset can be shown there, whatever the curves look like.</p>"
        )
    body = note + table_html(
        table,
        out_dir,
        "gap_onset",
        f"The generalization gap MTL − STL at equal training loss. design: paired (per-seed differences, exact "
        f"sign-flip max-|t| test over all {len(results[0].levels)} loss levels) or unpaired (label permutation); "
        f"p_any: a gap at some level; p_persistent: a gap from some level to the lowest common training loss; "
        f"*_adjusted: Benjamini–Hochberg over this table (FDR {alpha:g}); band_level: the per-test level of the "
        f"bands and onsets (BH's rejection level, so an onset is shown iff its persistent gap is a discovery); "
        f"onset: first level from which the simultaneous band excludes 0 to the end; final_*: the gap at the "
        f"lowest common training loss with its band, Cohen's d_z and the gap detectable with 80% power. "
        f"Negative gaps in loss/error mean MTL generalizes better. See docs/statistics.md.",
    )
    return Section(title, body + per_setting(figures, "gap figures"), "gap"), table


def gap_checkpoints(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows the gap analysis reads (``train/loss`` and :data:`GAP_MEASURES`) pivoted once for every
    run and task: one row per (run, task, step, epoch) with a column per quantity (mean of duplicate
    rows, as in :func:`~mtlens.analysis.gap.generalization_gap`) and the run's ``setting, mode, method,
    seed``."""
    rows = rows[rows["quantity"].isin(["train/loss", *GAP_MEASURES])]
    wide = rows.pivot_table(index=["run_id", "task", "step", "epoch"], columns="quantity", values="value")
    runs = rows.drop_duplicates("run_id").set_index("run_id")[["setting", "mode", "method", "seed"]]
    return wide.reset_index().join(runs, on="run_id")


TRAINING_QUANTITIES = ("train/loss", "val/loss", "val/error")


def training_section(rows: pd.DataFrame, out_dir: Path) -> Section:
    """Training curves per (setting, method): STL and MTL mean ± std over seeds and each run, by epoch.
    Means are aggregated once for the whole section (STL runs once per setting, shared by its methods)."""
    rows = rows[
        rows["quantity"].isin(TRAINING_QUANTITIES)
        & ~rows["task"].str.contains("|", regex=False)
        & (rows["task"] != "*")
    ]
    stl, mtl = rows[rows["mode"] == "stl"], rows[rows["mode"] == "mtl"]
    stl_stats = dict(iter(mean_band(stl, ["setting", "quantity", "task", "mode"], "epoch").groupby("setting")))
    mtl_stats = dict(
        iter(mean_band(mtl, ["setting", "method", "quantity", "task", "mode"], "epoch").groupby(["setting", "method"]))
    )
    stl_rows = dict(iter(stl.groupby("setting")))
    figures: dict[str, list[str]] = {}
    unpaired = []
    for (setting, method), mtl_rows in mtl.groupby(["setting", "method"]):
        if setting not in stl_rows:
            unpaired.append(f"{setting}, method {method}")
            continue
        pair = pd.concat([stl_rows[setting], mtl_rows])
        stats = pd.concat([stl_stats[setting], mtl_stats[(setting, method)]]).drop(
            columns=["setting", "method"], errors="ignore"
        )
        tasks = sorted(mtl_rows["task"].unique())
        fig = training_curves_figure(pair, tasks, list(TRAINING_QUANTITIES), stats)
        figures.setdefault(setting, []).append(
            save_figure(
                fig,
                out_dir,
                slug("training", setting, method),
                f"{setting}, method {method}: training loss (fixed training subset), validation loss and error by "
                f"epoch, mean ± std over seeds ({pair['run_id'].nunique()} runs, {pair['seed'].nunique()} seeds; n per "
                f"curve in the tooltip; thin lines: single runs).",
            )
        )
    body = per_setting(figures, "training-curve figures")
    if unpaired:
        body += (
            f"<p>MTL runs without STL runs of the same configuration (not drawn here): "
            f"{html.escape('; '.join(unpaired))}.</p>"
        )
    return Section("How did optimization differ?", body or "<p>No MTL runs.</p>", "training")


def summary_section(
    transfer: pd.DataFrame, onsets: pd.DataFrame, rows: pd.DataFrame, effect: pd.DataFrame, out_dir: Path
) -> Section:
    """Per setting and method, the answers of the sections below in one row (:func:`study_summary`)."""
    table = study_summary(transfer, onsets, rows, effect)
    if table.empty:
        return Section("Summary", "<p>No setting has both STL and MTL runs yet: see the overview.</p>", "summary")
    body = table_html(
        table,
        out_dir,
        "summary",
        "Per setting and MTL method: delta_m (mean relative improvement over tasks, %), tasks where "
        "MTL is better / worse (the transfer table's verdict: Benjamini–Hochberg adjusted p within "
        "the FDR) out of the tasks compared, the gap verdict (tasks by the direction of their "
        "persistent validation-loss gap, shown only where the test supports one, see 'When did the "
        "gap open?'), and two factors: the mean training-loss log-ratio MTL/STL at equal steps "
        "(< 0: MTL optimized faster) and the mean inter-task gradient cosine (< 0: conflict). "
        "Details per setting follow in the sections below.",
    )
    return Section("Summary", body, "summary")


def study_summary(
    transfer: pd.DataFrame, onsets: pd.DataFrame, rows: pd.DataFrame, effect: pd.DataFrame
) -> pd.DataFrame:
    """One row per (setting, method) of ``transfer``: ``tasks``, ``delta_m_pct``, ``better``/``worse``
    (tasks whose transfer ``verdict`` is MTL better / worse), ``gap_verdict`` (counts of the
    val/loss persistent-gap directions of the gap table ``onsets``), ``log_ratio_mean`` (mean over tasks
    and seeds of the mean log(L_MTL / L_STL) at equal steps of the
    :func:`~mtlens.analysis.optimization.optimization_effect` ``effect`` of ``rows``) and ``conflict_cosine``
    (mean of probe/conflict_cosine)."""
    if transfer.empty:
        return pd.DataFrame()
    table = (
        transfer.assign(better=transfer["verdict"] == "MTL better", worse=transfer["verdict"] == "MTL worse")
        .groupby(["setting", "method"], as_index=False)
        .agg(
            tasks=("task", "nunique"),
            delta_m_pct=("relative_pct", "mean"),
            better=("better", "sum"),
            worse=("worse", "sum"),
        )
    )
    if not onsets.empty:
        loss = onsets[onsets["measure"] == GAP_MEASURES[0]]
        verdict = (
            loss.groupby(["setting", "method"])["direction"]
            .agg(lambda d: ", ".join(f"{n} {k}" for k, n in d.value_counts().sort_index().items()))
            .rename("gap_verdict")
            .reset_index()
        )
        table = table.merge(verdict, on=["setting", "method"], how="left")
    if not effect.empty:
        table = table.merge(
            effect.groupby(["setting", "method"], as_index=False)["log_ratio_mean"].mean(),
            on=["setting", "method"],
            how="left",
        )
    conflict = rows[(rows["mode"] == "mtl") & (rows["quantity"] == "probe/conflict_cosine")]
    if len(conflict):
        table = table.merge(
            conflict.groupby(["setting", "method"], as_index=False)["value"]
            .mean()
            .rename(columns={"value": "conflict_cosine"}),
            on=["setting", "method"],
            how="left",
        )
    return table


def write_report(
    store: RunStore,
    out_dir: str | Path,
    settings: Sequence[str] = (),
    methods: Sequence[str] = (),
    alpha: float = 0.05,
    extra_sections: Sequence[SectionBuilder] = (),
    where: dict[str, Sequence[Any]] | None = None,
    include_unfinished: bool = False,
    formats: Sequence[str] = (),
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write ``out_dir/report.html`` (self-contained, interactive figures), ``tables/`` (CSV) and
    ``figures/`` (each figure's Vega-Lite spec, plus static copies in ``formats``, e.g. ``("png",
    "pdf")``); return the HTML path.

    Only the runs :func:`analysed_runs` keeps enter any section; the overview names the others, and so
    does a line to ``log`` (e.g. stderr), as well as the unfinished runs analysed with ``include_unfinished``.
    ``alpha`` is the false discovery rate of each family of tests (docs/statistics.md)."""
    unknown = sorted(set(formats) - set(STATIC_FORMATS))
    if unknown:
        raise ConfigError(
            f"--formats: unknown figure format(s) {', '.join(unknown)}; valid: {', '.join(STATIC_FORMATS)}"
        )
    out_dir = Path(out_dir)
    selection = f"settings={list(settings)} methods={list(methods)}{f' where={where}' if where else ''}"
    index = select_runs(store, settings, methods, where)
    if index.empty:
        raise MtlensError(f"no runs in {store.root} match {selection}")
    analysed, left_out = analysed_runs(index, include_unfinished)
    if analysed.empty:
        raise MtlensError(
            f"no finished runs in {store.root} match {selection}; left out: "
            + ", ".join(f"{r.run_id} ({r.state})" for r in left_out.itertuples())
        )
    unfinished = analysed[analysed["state"] != "finished"]
    if log and len(left_out):
        log(
            f"report: left out {len(left_out)} runs that are not finished: "
            + ", ".join(f"{r.run_id} ({r.state})" for r in left_out.itertuples())
        )
    if log and len(unfinished):
        log(
            f"report: includes {len(unfinished)} unfinished runs (--include-unfinished): "
            + ", ".join(f"{r.run_id} ({r.state})" for r in unfinished.itertuples())
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = store.trajectories(analysed["run_id"].tolist())
    rows = rows.astype({c: object for c in rows.columns if pd.api.types.is_string_dtype(rows[c])})
    data = ReportData(*by_configuration(analysed, rows, store.task_info()), alpha=alpha)
    gap, gaps = gap_section(data.rows, out_dir, alpha)
    sections = [
        summary_section(data.transfer, gaps, data.rows, data.optimization, out_dir),
        overview_section(index, data.rows, out_dir, analysed["run_id"].tolist()),
        transfer_section(data.transfer, out_dir, alpha),
        gap,
        training_section(data.rows, out_dir),
    ]
    sections += probes_section(store, analysed, rows, out_dir) + method_weights_section(store, analysed, rows, out_dir)
    sections += [
        optimization_section(data.rows, data.optimization, out_dir, alpha),
        correlation_section(data.rows, data.units, out_dir, alpha),
    ]
    for build in (*DEFAULT_SECTIONS, *extra_sections):
        sections += build(store, analysed, rows, out_dir)
    path = out_dir / "report.html"
    path.write_text(
        render_html(sections, f"mtlens report — {', '.join(sorted(index['setting'].unique()))}"), encoding="utf-8"
    )
    if formats:
        export_figures(out_dir, sections, formats)
    return path


def export_figures(out_dir: Path, sections: Sequence[Section], formats: Sequence[str]) -> None:
    """Static copies (``formats``, e.g. png, pdf) of every figure of ``sections``, rendered from the
    Vega-Lite specs that :func:`~mtlens.render.save_figure` wrote to ``out_dir/figures``."""
    figures = Path(out_dir) / "figures"
    for section in sections:
        for name in re.findall(r'<figure id="fig-([^"]+)">', section.body):
            spec = json.loads((figures / f"{html.unescape(name)}.vl.json").read_text(encoding="utf-8"))
            export_static(spec, figures / html.unescape(name), formats)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.table td,table.table th{border:1px solid #ddd;padding:.25em .5em;text-align:right;max-width:24em;
overflow-wrap:anywhere}
.table-wrap{overflow-x:auto;max-width:100%;max-height:32em;overflow-y:auto}
.table-wrap thead th{position:sticky;top:0;background:#f6f6f6}
figure{margin:1.5em 0;max-width:100%}.chart{overflow-x:auto;max-width:100%}
figcaption,.caption{font-size:.85em;color:#555}
details.setting{border:1px solid #ddd;border-radius:4px;padding:.3em .8em;margin:.6em 0}
details.setting>summary{cursor:pointer;font-weight:600}
nav a{margin-right:1em;white-space:nowrap}nav{line-height:1.8}
"""


PAGE_SCRIPT = """(function(){
var body=document.body,charts=Array.prototype.slice.call(document.querySelectorAll('figure>.chart'));
var all=/[?&]render=all\\b/.test(location.search),pending=charts.length,errors=0;
body.setAttribute('data-charts',charts.length);
function finish(){var d=document.documentElement;body.setAttribute('data-charts-done',charts.length);
body.setAttribute('data-chart-errors',errors);body.setAttribute('data-js-errors',window.mtlensErrors);
body.setAttribute('data-overflow',d.scrollWidth>d.clientWidth?'yes':'no');}
function settle(){pending--;if(pending===0){finish();}}
function render(el){if(el.getAttribute('data-state')){return;}el.setAttribute('data-state','rendering');
var spec=JSON.parse(el.nextElementSibling.textContent);
vegaEmbed(el,spec,{renderer:'svg',actions:{export:true,source:false,compiled:false,editor:false}})
.then(function(){el.setAttribute('data-state','rendered');settle();})
.catch(function(e){el.setAttribute('data-state','error');errors++;console.error(e);settle();});}
if(all){document.querySelectorAll('details').forEach(function(d){d.open=true;});
if(!charts.length){finish();}charts.forEach(render);return;}
if(!('IntersectionObserver' in window)){charts.forEach(render);return;}
var seen=new IntersectionObserver(function(entries){entries.forEach(function(e){
if(e.isIntersecting){seen.unobserve(e.target);render(e.target);}});},{rootMargin:'800px'});
charts.forEach(function(c){seen.observe(c);});})();"""
"""Renders each figure's spec with Vega-Embed when it comes near the viewport (figures in closed
``<details>`` wait until opened), so that a report of many figures opens at once.  With
``?render=all`` in the URL (browser checks) it opens every ``<details>``, renders every figure and
then marks ``<body>`` with ``data-charts``, ``data-chart-errors``, ``data-js-errors`` (uncaught errors and
``console.error`` calls, counted by :data:`ERROR_COUNTER`) and ``data-overflow`` (whether the page is
wider than the window)."""

ERROR_COUNTER = """window.mtlensErrors=0;window.addEventListener('error',function(){window.mtlensErrors++;});
window.addEventListener('unhandledrejection',function(){window.mtlensErrors++;});
(function(){var log=console.error;
console.error=function(){window.mtlensErrors++;return log.apply(console,arguments);};})();"""
"""Counts the page's JavaScript errors from the start (it runs before the Vega bundle)."""


def render_html(sections: Sequence[Section], title: str) -> str:
    """A standalone HTML page: a table of contents, the sections in order, and the Vega-Embed
    JavaScript inlined once (no network needed) with :data:`PAGE_SCRIPT`."""
    nav = "".join(
        f'<a href="#{html.escape(s.anchor or str(i))}">{html.escape(s.title)}</a>' for i, s in enumerate(sections)
    )
    body = "".join(
        f'<section id="{html.escape(s.anchor or str(i))}"><h2>{html.escape(s.title)}</h2>{s.body}</section>'
        for i, s in enumerate(sections)
    )
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style><script>{ERROR_COUNTER}</script><script>{vega_bundle()}</script></head>"
        f"<body><h1>{html.escape(title)}</h1>"
        f"<p>Generated {generated}. Figures: hover for values, click a legend entry to show only that series "
        f"(shift-click for several), scroll to zoom, drag to pan, double-click to reset.</p>"
        f"<nav>{nav}</nav>{body}<script>{PAGE_SCRIPT}</script></body></html>"
    )
