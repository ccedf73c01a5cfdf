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
import itertools
import json
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.analysis.correlation import correlation_table, difference_tests, unit_table
from mtlens.analysis.gap import GAP_DIRECTIONS, GapResult, gap_family, gap_from_checkpoints
from mtlens.analysis.optimization import optimization_effect
from mtlens.analysis.planning import spread_table
from mtlens.analysis.transfer import TaskInfo, delta_m, selected_checkpoints, transfer_tests
from mtlens.errors import ConfigError, MtlensError
from mtlens.experiments import experiment_sections
from mtlens.orchestration.sweep import SweepSelection, read_sweep_selection
from mtlens.quantities import RUN_ROW, TASK_PAIR
from mtlens.registry import did_you_mean
from mtlens.render import (
    RUN_KEYS,
    Figure,
    Section,
    by_configuration,
    config_text,
    per_setting,
    report_options,
    slug,
    table_html,
)
from mtlens.render.charts import STATIC_FORMATS, export_static, mean_band, vega_bundle
from mtlens.render.pdf import find_chromium, print_pdf
from mtlens.render.tables import confidence
from mtlens.report.alignment import elich_sections
from mtlens.report.correlations import (
    correlation_section,
    optimization_section,
    optimization_table,
    symmetry_paragraph,
)
from mtlens.report.figures import gap_figure, training_curves_figure
from mtlens.report.methods import method_weights_section
from mtlens.report.oddities import collapse_notes, loss_range_notes, step_zero_notes, tie_notes, with_notes
from mtlens.report.planning import family_sizes, seed_planning_section
from mtlens.report.probes import probes_section
from mtlens.report.recorded import note_unrecorded, read_rows
from mtlens.report.sweep import sweep_section
from mtlens.report.verdicts import QUESTIONS, TABLES, answers
from mtlens.store import RunState, RunStore, atomic_write_text

GAP_MEASURES = ("val/loss", "val/error")

SectionBuilder = Callable[..., list[Section]]
"""``(store, runs index, trajectory rows, out_dir) -> sections`` for extra analyses; a builder with an
``alpha`` parameter also gets the report's FDR (:func:`~mtlens.render.report_options`)."""

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

    @cached_property
    def optimization_tests(self) -> pd.DataFrame:
        """The optimization table (:func:`~mtlens.report.correlations.optimization_table` at FDR ``alpha``)."""
        return optimization_table(self.rows, self.optimization, self.alpha)

    @cached_property
    def probe_differences(self) -> pd.DataFrame:
        """The probe-difference table (:func:`~mtlens.analysis.correlation.difference_tests` of the units at FDR
        ``alpha``; empty without units)."""
        return difference_tests(self.units, alpha=self.alpha) if len(self.units) else pd.DataFrame()

    @cached_property
    def correlations(self) -> pd.DataFrame:
        """The correlation table (:func:`~mtlens.analysis.correlation.correlation_table` of the units at FDR
        ``alpha``; empty without units)."""
        return correlation_table(self.units, alpha=self.alpha) if len(self.units) else pd.DataFrame()

    @cached_property
    def gap(self) -> GapAnalysis:
        """:func:`gap_analysis` of the rows at FDR ``alpha``: the gap table and its results."""
        return gap_analysis(self.rows, self.alpha)


def report_families(data: ReportData) -> dict[str, pd.DataFrame]:
    """The tables the report tests as one Benjamini–Hochberg family each (every row a comparison, with its
    ``min_p``): ``transfer``, ``gap`` (the persistent gap, ``p_persistent``: one row per setting × method ×
    task × measure), ``gap band`` (the same curves' "a gap somewhere", ``p_any``, whose max test has the
    floor ``min_p_any``, paired its sign flips' ``2 / 2^n``), ``optimization``
    (:func:`~mtlens.report.correlations.optimization_table`), ``probe differences`` and ``correlations``
    (the factor pairs; Pearson's and Spearman's p-values are each adjusted over the same rows).  Seed planning
    counts these (:mod:`mtlens.report.planning`, :mod:`mtlens.report.study_plan`)."""
    gap = data.gap.table
    return {
        "transfer": data.transfer,
        "gap": gap,
        "gap band": gap.assign(min_p=gap["min_p_any"]) if "min_p_any" in gap else gap.iloc[:0],
        "optimization": data.optimization_tests,
        "probe differences": data.probe_differences,
        "correlations": data.correlations,
    }


@dataclass(frozen=True)
class RunSelection:
    """The runs a report (or :class:`~mtlens.report.results.StudyResults`) reads: ``index``, the store's runs
    that match the selection; ``analysed``, those :func:`analysed_runs` keeps; ``left_out``, the others;
    ``rows``, the trajectory rows of the analysed runs (setting names as stored).  Of a sweep's selection
    (``sweep``): ``analysed`` without the sweep's grid keys (each group was tuned on its own, so runs that
    differ in them are one configuration) and ``absent``, the selected runs the store does not hold."""

    index: pd.DataFrame
    analysed: pd.DataFrame
    left_out: pd.DataFrame
    rows: pd.DataFrame
    sweep: SweepSelection | None = None
    absent: tuple[str, ...] = ()

    @property
    def unfinished(self) -> pd.DataFrame:
        """Analysed runs that are not finished (only with ``include_unfinished``)."""
        return self.analysed[self.analysed["state"] != RunState.FINISHED]


def selected_runs(
    store: RunStore,
    settings: Sequence[str] = (),
    methods: Sequence[str] = (),
    where: dict[str, Sequence[Any]] | None = None,
    include_unfinished: bool = False,
    sweep: str | None = None,
) -> RunSelection:
    """The runs of ``store`` selected by :func:`select_runs` and :func:`analysed_runs`, and the rows of the
    analysed ones; :class:`MtlensError` when no run matches or none of those may be analysed.  A run whose
    trajectory cannot be read (:func:`~mtlens.report.recorded.read_rows`) is left out as ``damaged``, its
    ``message`` naming the file and the problem.  With ``sweep`` (a sweep id of the store), only the seed
    runs of the points that sweep selected (:func:`~mtlens.orchestration.sweep.read_sweep_selection`), every
    MTL run compared with the STL runs selected for its tasks whatever their grid values."""
    chosen = read_sweep_selection(store, sweep) if sweep is not None else None
    selection = (
        f"settings={list(settings)} methods={list(methods)}{f' where={where}' if where else ''}"
        f"{f' sweep={sweep}' if sweep is not None else ''}"
    )
    index = select_runs(store, settings, methods, where)
    absent: tuple[str, ...] = ()
    if chosen is not None:
        stored = set(store.run_ids())
        absent = tuple(r for r in chosen.run_ids if r not in stored)
        index = index[index["run_id"].isin(chosen.run_ids)] if len(index) else index
    if index.empty:
        raise MtlensError(f"no runs in {store.root} match {selection}")
    analysed, left_out = analysed_runs(index, include_unfinished)
    rows, unreadable = read_rows(store, analysed["run_id"].tolist())
    if unreadable:  # damage the index's cheap checks did not see: left out like any damaged run
        damaged = index["run_id"].isin(unreadable)
        index = index.assign(
            state=index["state"].where(~damaged, RunState.DAMAGED),
            message=index["message"].where(~damaged, index["run_id"].map(unreadable)),
        )
        analysed, left_out = analysed_runs(index, include_unfinished)
    if analysed.empty:
        raise MtlensError(
            f"no finished runs in {store.root} match {selection}; left out: "
            + ", ".join(f"{r.run_id} ({r.state})" for r in left_out.itertuples())
        )
    rows = rows.astype({c: object for c in rows.columns if pd.api.types.is_string_dtype(rows[c])})
    if chosen is not None:
        analysed = analysed.drop(columns=list(chosen.tuned), errors="ignore")
    return RunSelection(index, analysed, left_out, rows, chosen, absent)


def report_data(store: RunStore, selection: RunSelection, alpha: float) -> ReportData:
    """The :class:`ReportData` of ``selection``'s runs: rows and task info under :func:`by_configuration`'s names."""
    return ReportData(*by_configuration(selection.analysed, selection.rows, store.task_info()), alpha=alpha)


def select_runs(
    store: RunStore,
    settings: Sequence[str] = (),
    methods: Sequence[str] = (),
    where: dict[str, Sequence[Any]] | None = None,
) -> pd.DataFrame:
    """The store's index restricted to ``settings`` and MTL ``methods`` (STL runs always kept), and to
    runs whose index column ``key`` holds one of the values ``where[key]`` (compared as text).  Runs whose
    config cannot be trusted (``damaged``, no setting in the index) are kept whatever the selection: no
    filter can tell whether they belong to it, so they are left out of the analyses and named."""
    index = store.runs()
    if index.empty:
        return index
    unknown = index["setting"].isna()
    for key, values in (where or {}).items():
        if key not in index:
            raise ConfigError(
                f"--where: unknown run-index column {key!r}{did_you_mean(key, index.columns)}; "
                f"valid: {', '.join(sorted(index.columns))}"
            )
        matched = _matches(index[key], key, values)
        if not (matched & ~unknown).any():
            present = sorted(index.loc[~unknown, key].astype(str).unique())
            raise ConfigError(
                f"--where {key}: no runs have {' or '.join(map(str, values))}; values present: "
                f"{', '.join(present[:20])}{' ...' if len(present) > 20 else ''}"
            )
        index, unknown = index[matched | unknown], unknown[matched | unknown]
    for flag, column, wanted, present in (
        ("--setting", "setting", settings, index.loc[~unknown, "setting"]),
        ("--methods", "method", methods, index.loc[~unknown & (index["mode"] != "stl"), "method"]),
    ):
        absent = [name for name in wanted if name not in set(present)]
        if absent:
            names = sorted(present.astype(str).unique())
            hint = "".join(did_you_mean(name, names) for name in absent)
            raise ConfigError(
                f"{flag}: no {'MTL ' if column == 'method' else ''}runs of {column} {', '.join(map(repr, absent))} "
                f"in the store{hint}; present: {', '.join(names) or 'none'}"
            )
    if settings:
        keep = unknown | index["setting"].isin(settings)
        index, unknown = index[keep], unknown[keep]
    if methods:
        index = index[unknown | (index["mode"] == "stl") | index["method"].isin(methods)]
    return index


UNFINISHED_STATES = (RunState.RUNNING, RunState.INTERRUPTED, RunState.FAILED, RunState.PENDING)
"""States whose runs' recorded rows enter the analyses only with ``include_unfinished``."""


def analysed_runs(index: pd.DataFrame, include_unfinished: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(analysed, left_out)``: the finished runs of ``index`` (and, with ``include_unfinished``, those in
    :data:`UNFINISHED_STATES`), and the others, which no analysis may read."""
    keep = (RunState.FINISHED, *UNFINISHED_STATES) if include_unfinished else (RunState.FINISHED,)
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
    counts = run_counts(index, configured)
    caption = "Runs in this report by setting, mode, method and state."
    if counts["runs"].sum() > len(index):
        caption += (
            f" {len(index)} runs in all: an STL run compared with the MTL runs of several task sets is counted "
            "under each of them."
        )
    body = table_html(counts, out_dir, "runs", caption)
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
            "'setting [key=value ...]' below.",
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
    unfinished = index[index["run_id"].isin(analysed_ids) & (index["state"] != RunState.FINISHED)]
    if len(unfinished):
        body += table_html(
            unfinished[["run_id", "state", "last_step"]],
            out_dir,
            "unfinished_runs",
            "Unfinished runs analysed at the user's request (--include-unfinished): every "
            "number below includes the rows they recorded so far.",
        )
    return Section("Overview", body, "overview")


def run_counts(index: pd.DataFrame, configured: pd.DataFrame) -> pd.DataFrame:
    """Runs of ``index`` per ``setting, mode, method, state`` (column ``runs``), settings named as in the rows
    ``configured`` (:func:`by_configuration`'s names; runs without rows keep their stored setting).

    A run whose rows appear under several names (an STL run compared with the MTL runs of every task set
    holding its task, in a grouping study) is counted under each of them, as each comparison uses it."""
    names = configured.groupby("run_id")["setting"].unique().map(list)
    named = index.assign(setting=[names.get(r, [s]) for r, s in zip(index["run_id"], index["setting"])])
    return named.explode("setting").groupby(["setting", "mode", "method", "state"]).size().rename("runs").reset_index()


def mismatched_recorded_runs(index: pd.DataFrame) -> pd.DataFrame:
    """Recorded runs (config ``source: recorder``) of settings whose recorded runs differ in a
    configuration key other than the run keys (:data:`~mtlens.report.base.RUN_KEYS`: tasks, mode, method,
    seed, ...): one row per run with ``setting, run_id, mode, differs`` (``key=value ...``)."""
    if "source" not in index:
        return pd.DataFrame()
    recorded = index[index["source"] == "recorder"]
    records = []
    for setting, runs in recorded.groupby("setting"):
        keys = [c for c in runs.columns if c not in RUN_KEYS | {"source"} and config_text(runs[c]).nunique() > 1]
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


TRANSFER_COLUMNS = ("setting", "task", "method", "stl_mean", "mtl_mean", "delta", "p_adjusted", "verdict", "note")
"""The transfer table's columns a reader needs (the others are one click away)."""

GAP_COLUMNS = (
    "setting",
    "method",
    "task",
    "measure",
    "direction",
    "onset_epoch_mtl",
    "final_gap",
    "p_persistent_adjusted",
    "note",
)
"""The gap table's columns a reader needs (the others are one click away)."""


def noted_transfer(data: ReportData) -> pd.DataFrame:
    """The transfer table of ``data`` with a ``note`` per row where the data is odd
    (:mod:`mtlens.report.oddities`: checkpoint selected at step 0, a selection tie, collapsed weights)."""
    return with_notes(
        data.transfer,
        [
            step_zero_notes(data.selected),
            tie_notes(data.rows, data.selected, data.task_info),
            collapse_notes(data.rows),
        ],
    )


def transfer_section(data: ReportData, out_dir: Path, alpha: float) -> Section:
    """The transfer table (:func:`~mtlens.analysis.transfer.transfer_table` at FDR ``alpha``) with a note
    per row where the data is odd (:func:`noted_transfer`), and delta_m."""
    table = data.transfer
    if table.empty:
        return Section("Transfer", "<p>No task has both STL and MTL runs yet.</p>", "transfer")
    shown = noted_transfer(data)
    body = table_html(
        shown,
        out_dir,
        "transfer",
        f"Test performance at the validation-selected checkpoint, mean and std over the seeds the test used. "
        f"delta = MTL − STL (mean of the per-seed differences when design = paired: STL and MTL of one seed "
        f"share initialization and batch order; unpaired, Welch's t, only where seeds do "
        f"not match); delta_low/high: {confidence(alpha)} interval; effect_size: Hedges' g_z (paired) "
        f"or g (bias-corrected d); p_value: paired skewness-corrected t (Hall) on df = n − 1, holding its level "
        f"up to the table's skewness_bound (unpaired: Hall's correction of Welch's t, holding its level up to "
        f"skewness 2 in each group at any variance ratio); p_adjusted: "
        f"Benjamini–Hochberg over this table; min_p: the smallest p-value the test allows (not bound to 2/2^n); "
        f"min_detectable: the difference detected with 80% power; skewness: of the per-seed "
        f"differences; verdict only where p_adjusted ≤ {alpha:g}. "
        f"relative_pct > 0 means MTL is better; note: oddities in the data behind the row. See docs/statistics.md.",
        short=TRANSFER_COLUMNS,
    )
    body += symmetry_paragraph(table, alpha)
    body += table_html(
        delta_m(table), out_dir, "delta_m", "delta_m: mean relative improvement of MTL over STL across tasks (%)."
    )
    return Section("Did MTL help each task?", body, "transfer")


@dataclass(frozen=True)
class GapAnalysis:
    """The gap table (one :func:`~mtlens.analysis.gap.gap_family` row per (setting, method, task, measure),
    BH at the report's FDR; empty when no task has both STL and MTL trajectories) and the
    :class:`~mtlens.analysis.gap.GapResult` of each row (``results[i]`` is row ``i``), and the notes on
    runs that limit a comparison's common training-loss range (:func:`~mtlens.report.oddities.loss_range_notes`)."""

    table: pd.DataFrame
    results: list[GapResult]
    notes: pd.DataFrame

    def noted_table(self) -> pd.DataFrame:
        """:attr:`table` with a ``note`` per row naming the runs that limit its common training-loss range."""
        return with_notes(self.table, [self.notes])


def gap_analysis(rows: pd.DataFrame, alpha: float) -> GapAnalysis:
    """The gap of every (setting, method, task) with STL and MTL trajectories and each of :data:`GAP_MEASURES`,
    tested as one family at FDR ``alpha`` (:func:`~mtlens.analysis.gap.gap_family`)."""
    keys, results = [], []
    checkpoints = gap_checkpoints(rows)
    stl_by_task = dict(iter(checkpoints[checkpoints["mode"] == "stl"].groupby(["setting", "task"], sort=False)))
    for (setting, method), mtl_rows in checkpoints[checkpoints["mode"] == "mtl"].groupby(["setting", "method"]):
        for task, task_rows in mtl_rows.groupby("task", sort=True):
            pair = pd.concat([stl_by_task.get((setting, task), checkpoints.iloc[:0]), task_rows])
            for measure in GAP_MEASURES:
                if (result := gap_from_checkpoints(pair, task, measure, alpha=alpha)) is not None:
                    keys.append((setting, method))
                    results.append(result)
    if not results:
        return GapAnalysis(pd.DataFrame(), [], pd.DataFrame())
    results, table = gap_family(results, alpha, [setting for setting, _ in keys])
    table.insert(0, "setting", [k[0] for k in keys])
    table.insert(1, "method", [k[1] for k in keys])
    return GapAnalysis(table, results, loss_range_notes(checkpoints))


def gap_figures(gap: GapAnalysis) -> Iterator[Figure]:
    """One :func:`~mtlens.report.figures.gap_figure` per (setting, method, task) of the gap table."""
    table = gap.table
    if table.empty:
        return
    level = float(table["band_level"].iloc[0])
    for (setting, method, task), frame in table.groupby(["setting", "method", "task"], sort=False):
        task_results = [gap.results[i] for i in frame.index]
        first = frame.iloc[0]
        caption = (
            f"{setting}, method {method}, task {task}: validation measures against training loss "
            f"(mean ± std over {first['n_stl']} STL and {first['n_mtl']} MTL runs) and the gap MTL − STL "
            f"({first['design']}) with its simultaneous band over all training-loss levels at per-test "
            f"level {level:.3g}; green: the levels the fixed-sequence test rejected at that level, dashed: "
            f"their onset (only where the test supports a persistent gap)."
        )
        yield Figure(
            slug("gap", setting, method, task), setting, gap_figure(task_results), caption, (setting, method, task)
        )


def gap_section(
    rows: pd.DataFrame, out_dir: Path, alpha: float, gap: GapAnalysis | None = None
) -> tuple[Section, pd.DataFrame]:
    """Gap figures per (setting, method, task), grouped by setting, and the gap table (also returned):
    :func:`gap_analysis` of ``rows`` at FDR ``alpha`` (``gap`` where the caller has it already)."""
    gap = gap_analysis(rows, alpha) if gap is None else gap
    title = "When did the gap open?"
    if gap.table.empty:
        both = len(rows) and (rows.groupby(["setting", "task"])["mode"].nunique() == 2).any()
        reason = (
            "No task's STL and MTL runs share a range of training loss (the gap is compared at equal training "
            "loss, over the losses every run passed on its way down; here the training loss did not fall below "
            "where another run started, e.g. runs that did not train)."
            if both
            else "No task has both STL and MTL trajectories."
        )
        return Section(title, f"<p>{reason}</p>", "gap"), pd.DataFrame()
    table = gap.table
    shown = gap.noted_table()
    level = float(table["band_level"].iloc[0])
    figures: dict[str, list[str]] = {}
    for figure in gap_figures(gap):
        figures.setdefault(figure.setting, []).append(figure.save(out_dir))
    note = ""
    if (table["min_p_any"] > level).any():
        note = (
            f"<p>{int((table['min_p_any'] > level).sum())} of {len(table)} comparisons have too few seeds for "
            f"the simultaneous band (p_any) to reach the level {level:.3g} (min_p_any: 2/2^n for n paired "
            f"seeds): it cannot exclude 0 there, whatever the curves look like. Onsets are tested by per-level "
            f"one-level tests, whose p-values are not bound to 2/2^n.</p>"
        )
    unpaired = table[table["design"] == "unpaired"]
    if len(unpaired):
        note += (
            f"<p>{len(unpaired)} of {len(table)} comparisons are unpaired (their MTL and STL seeds do not match). "
            f"Their p_any takes the larger of a label permutation and Bonferroni's bound over the levels of Hsu's "
            f"t, so it holds its level where the two kinds of runs differ in spread (the permutation alone gave "
            f"27–83% at 5% with 3 MTL runs of 3–10× the spread of the STL runs), at a large price in power: a gap "
            f"of 1.8 run sds is found in 1% of studies at 4 vs 8 runs and 15% at 6 vs 6 (the permutation: 71%, "
            f"78%), in 86% at 12 vs 12 (docs/statistics.md §3). Runs with the same seeds for STL and MTL are "
            f"compared paired, with far more power.</p>"
        )
    body = note + table_html(
        shown,
        out_dir,
        "gap_onset",
        f"The generalization gap MTL − STL at equal training loss. design: paired (per-seed differences) or "
        f"unpaired (two groups of runs); p_any: a gap at some level (the largest |t| over all n_levels loss "
        f"levels; paired: Hall's skewness-corrected t against sign flips and simulated skewed seed shifts; "
        f"unpaired: Welch's t against label permutations and Bonferroni's bound of Hsu's t); "
        f"p_persistent: the end level's own test's p-value (a gap that lasts to the end; paired: Hall's "
        f"skewness-corrected t; unpaired: the larger of Hall's two-sample test's and the label permutation's); "
        f"skewness: of the "
        f"end level's per-seed differences (paired); *_adjusted: "
        f"Benjamini–Hochberg over this table (FDR {alpha:g}); band_level: the per-test level of the bands and "
        f"onsets (BH's rejection level on p_persistent, Benjamini–Bogomolov, so an onset is shown iff its "
        f"persistent gap is a discovery); onset: testing the end, then each earlier level, in that order "
        f"until the first non-significant one (fixed sequence), the earliest level of that run; end_train_loss: "
        f"the end, the lowest training loss every run reached, set by the runs end_limited_by; "
        f"loo_p_persistent_max: the largest p_persistent with one seed left out; final_*: the gap at the end "
        f"with its interval, Hedges' bias-corrected effect size and the gap detectable with 80% power. Negative "
        f"gaps in loss/error mean MTL generalizes better. See docs/statistics.md.",
        short=GAP_COLUMNS,
    )
    loss = table[table["measure"] == "val/loss"]  # one measure per curve: loss and error of a run move together
    body += symmetry_paragraph(loss if len(loss) else table, alpha)
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


def training_figures(rows: pd.DataFrame) -> Iterator[Figure]:
    """Per (setting, method) with STL runs of the setting: :func:`~mtlens.report.figures.training_curves_figure`
    of the STL and MTL runs (means aggregated once for all figures, STL runs once per setting)."""
    rows = rows[
        rows["quantity"].isin(TRAINING_QUANTITIES)
        & ~rows["task"].str.contains(TASK_PAIR, regex=False)
        & (rows["task"] != RUN_ROW)
    ]
    stl, mtl = rows[rows["mode"] == "stl"], rows[rows["mode"] == "mtl"]
    stl_stats = dict(iter(mean_band(stl, ["setting", "quantity", "task", "mode"], "epoch").groupby("setting")))
    mtl_stats = dict(
        iter(mean_band(mtl, ["setting", "method", "quantity", "task", "mode"], "epoch").groupby(["setting", "method"]))
    )
    stl_rows = dict(iter(stl.groupby("setting")))
    for (setting, method), mtl_rows in mtl.groupby(["setting", "method"]):
        if setting not in stl_rows:
            continue
        pair = pd.concat([stl_rows[setting], mtl_rows])
        stats = pd.concat([stl_stats[setting], mtl_stats[(setting, method)]]).drop(
            columns=["setting", "method"], errors="ignore"
        )
        tasks = sorted(mtl_rows["task"].unique())
        fig = training_curves_figure(pair, tasks, list(TRAINING_QUANTITIES), stats)
        caption = (
            f"{setting}, method {method}: training loss (fixed training subset), validation loss and error by "
            f"epoch, mean ± std over seeds ({pair['run_id'].nunique()} runs, {pair['seed'].nunique()} seeds; n per "
            f"curve in the tooltip; thin lines: single runs)."
        )
        yield Figure(slug("training", setting, method), setting, fig, caption, (setting, method))


def training_section(rows: pd.DataFrame, out_dir: Path) -> Section:
    """Training curves per (setting, method): STL and MTL mean ± std over seeds and each run, by epoch
    (:func:`training_figures`)."""
    figures: dict[str, list[str]] = {}
    for figure in training_figures(rows):
        figures.setdefault(figure.setting, []).append(figure.save(out_dir))
    curves = rows[rows["quantity"].isin(TRAINING_QUANTITIES)]
    stl_settings = set(curves.loc[curves["mode"] == "stl", "setting"])
    unpaired = [
        f"{setting}, method {method}"
        for (setting, method), _ in curves[curves["mode"] == "mtl"].groupby(["setting", "method"])
        if setting not in stl_settings
    ]
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
        "persistent gap in validation loss or error: a task has the direction any of its measures "
        "shows, 'mixed' where they disagree; only where the test supports one, see 'When did the "
        "gap open?'), and two factors: the mean training-loss log-ratio MTL/STL at equal steps "
        "(< 0: MTL optimized faster) and the mean inter-task gradient cosine (< 0: conflict). "
        "Details per setting follow in the sections below.",
    )
    return Section("Summary", body, "summary")


def study_summary(
    transfer: pd.DataFrame, onsets: pd.DataFrame, rows: pd.DataFrame, effect: pd.DataFrame
) -> pd.DataFrame:
    """One row per (setting, method) of ``transfer``: ``tasks``, ``delta_m_pct``, ``better``/``worse``
    (tasks whose transfer ``verdict`` is MTL better / worse), ``gap_verdict`` (counts of the tasks by
    the direction of their persistent gaps in the gap table ``onsets``, over its measures, as the answers
    state them: a task with a gap in one measure has that gap, ``mixed`` where measures disagree),
    ``log_ratio_mean`` (mean over tasks and seeds of the mean log(L_MTL / L_STL) at equal steps of the
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
        found = onsets["direction"].where(onsets["direction"].isin(list(GAP_DIRECTIONS.values())))

        def of_task(directions: pd.Series) -> str:
            """A task's gap over its measures: the one direction found, ``mixed``, or none."""
            seen = directions.dropna().unique()
            return "mixed" if len(seen) > 1 else str(seen[0]) if len(seen) else "no persistent gap"

        by_task = (
            found.groupby([onsets["setting"], onsets["method"], onsets["task"]])
            .agg(of_task)
            .rename("direction")
            .reset_index()
        )
        verdict = (
            by_task.groupby(["setting", "method"])["direction"]
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


def report_tables(sections: Sequence[Section], out_dir: Path) -> dict[str, pd.DataFrame]:
    """The tables of :data:`~mtlens.report.verdicts.TABLES` that ``sections`` show (``data-table`` names of
    :func:`~mtlens.render.table_html`), read back from ``out_dir/tables``: what the report's sentences are
    written from (never a stale table of an earlier report in the same folder)."""
    shown = {html.unescape(name) for s in sections for name in re.findall(r'data-table="([^"]+)"', s.body)}
    return {name: pd.read_csv(out_dir / "tables" / f"{name}.csv") for name in TABLES if name in shown}


def answers_section(tables: dict[str, pd.DataFrame], alpha: float, scope: str = "") -> Section:
    """The answers in words (:func:`~mtlens.report.verdicts.answers` of the report's ``tables``): per
    setting, one paragraph per question, each sentence no stronger than the test behind it; ``scope``, a
    sentence saying which runs are compared (a sweep's selection), comes first."""
    paragraphs = answers(tables, alpha)
    if not paragraphs:
        return Section("Answers", "<p>No setting has both STL and MTL runs yet: see the overview.</p>", "answers")
    body = "".join(
        f'<div class="answers" data-setting="{html.escape(setting)}"><h3>{html.escape(setting)}</h3>'
        + "".join(
            f'<p class="answer" data-question="{key}"><b>{html.escape(QUESTIONS[key])}</b> '
            + " ".join(f'<span class="sentence">{html.escape(s)}</span>' for s in sentences)
            + "</p>"
            for key, sentences in by_question.items()
        )
        + "</div>"
        for setting, by_question in paragraphs.items()
    )
    note = (
        f'<p class="caption">Written from the tables below (Benjamini–Hochberg FDR {alpha:g} per table; '
        f"intervals are {confidence(alpha)} intervals of each table's test (paired: Hall's skewness-corrected t), "
        f"the gap's bands at their BH-adjusted band_level and the correlations' at BH's level over their table; "
        f'"could not be shown" is not evidence of no effect: '
        "the "
        "detectable difference says how large an effect the seeds could have missed).</p>"
    )
    lead = f'<p class="scope">{html.escape(scope)}</p>' if scope else ""
    return Section("Answers", lead + note + body, "answers")


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
    sweep: str | None = None,
) -> Path:
    """Write ``out_dir/report.html`` (self-contained, interactive figures), ``tables/`` (CSV) and
    ``figures/`` (each figure's Vega-Lite spec, plus static copies in ``formats``, e.g. ``("png",
    "pdf")``; with ``pdf`` also the whole report as ``out_dir/report.pdf``, printed by headless Chromium,
    :mod:`mtlens.render.pdf`); return the HTML path.

    Only the runs :func:`analysed_runs` keeps enter any section; the overview names the others, and so
    does a line to ``log`` (e.g. stderr), as well as the unfinished runs analysed with ``include_unfinished``.
    ``alpha`` is the false discovery rate of each family of tests (docs/statistics.md).  With ``sweep`` (a
    sweep id of the store) only the runs that sweep selected, compared across their grid values
    (:func:`selected_runs`); a line to ``log`` names its groups without a selected point and its selected
    runs missing from the store."""
    unknown = sorted(set(formats) - set(STATIC_FORMATS))
    if unknown:
        raise ConfigError(
            f"--formats: unknown figure format(s) {', '.join(unknown)}; valid: {', '.join(STATIC_FORMATS)}"
        )
    if "pdf" in formats:
        find_chromium()  # before anything is written
    out_dir = Path(out_dir)
    selected = selected_runs(store, settings, methods, where, include_unfinished, sweep)
    index, analysed, left_out, unfinished, rows = (
        selected.index,
        selected.analysed,
        selected.left_out,
        selected.unfinished,
        selected.rows,
    )
    if log and len(left_out):
        log(
            f"report: left out {len(left_out)} runs that are not finished: "
            + ", ".join(f"{r.run_id} ({r.state})" for r in left_out.itertuples())
        )
        for row in left_out[left_out["state"] == RunState.DAMAGED].itertuples():
            log(f"report: left out run {row.run_id}: {row.message}")
    if log and selected.sweep is not None and selected.sweep.unselected:
        log(f"report: sweep {sweep} selected no grid point for {', '.join(selected.sweep.unselected)}")
    if log and selected.absent:
        missing = ", ".join(selected.absent)
        log(f"report: {len(selected.absent)} runs sweep {sweep} selected are not in the store: {missing}")
    if log and len(unfinished):
        log(
            f"report: includes {len(unfinished)} unfinished runs (--include-unfinished): "
            + ", ".join(f"{r.run_id} ({r.state})" for r in unfinished.itertuples())
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = report_outputs(out_dir)
    data = report_data(store, selected, alpha)
    gap, gaps = gap_section(data.rows, out_dir, alpha, data.gap)
    sections = [
        summary_section(data.transfer, gaps, data.rows, data.optimization, out_dir),
        overview_section(index, data.rows, out_dir, analysed["run_id"].tolist()),
        *(
            [sweep_section(selected.sweep, set(analysed["run_id"]), selected.absent, out_dir)]
            if selected.sweep is not None
            else []
        ),
        transfer_section(data, out_dir, alpha),
        gap,
        training_section(data.rows, out_dir),
    ]
    sections += probes_section(store, analysed, rows, out_dir) + method_weights_section(store, analysed, rows, out_dir)
    sections += [
        optimization_section(data.rows, data.optimization_tests, out_dir, alpha),
        correlation_section(data.rows, data.units, data.probe_differences, data.correlations, out_dir, alpha),
        seed_planning_section(
            spread_table(data.selected, data.task_info, data.optimization),
            family_sizes(report_families(data), alpha),
            out_dir,
            alpha,
            transfer=data.transfer,
        ),
    ]
    for build in (*DEFAULT_SECTIONS, *extra_sections):
        sections += build(store, analysed, rows, out_dir, **report_options(build, alpha))
    sections = note_unrecorded(sections, data.rows, data.task_info)
    scope = (
        f"Every comparison below is of sweep {sweep}'s selection: each STL task and each MTL method at the "
        f"values of {', '.join(selected.sweep.tuned)} its own validation score selected (see 'Which hyperparameters "
        "did the sweep select?')."
        if selected.sweep is not None
        else ""
    )
    sections.insert(0, answers_section(report_tables(sections, out_dir), alpha, scope))
    path = out_dir / "report.html"
    settings_shown = sorted(index["setting"].dropna().unique())  # a run whose config is damaged has none
    atomic_write_text(path, render_html(sections, f"mtlens report — {', '.join(settings_shown)}"))
    if formats:
        export_figures(out_dir, sections, formats)
    if "pdf" in formats:
        print_pdf(path, out_dir / "report.pdf")
    now = report_outputs(out_dir)
    stale = [file for file, stamp in earlier.items() if now.get(file) == stamp]
    for file in stale:
        file.unlink()
    if log and stale:
        log(f"report: removed {len(stale)} file(s) of an earlier report in {out_dir} that this one does not write")
    return path


def report_outputs(out_dir: Path) -> dict[Path, tuple[int, int]]:
    """The files a report writes under ``out_dir`` (``tables/``, ``figures/``, ``report.pdf``), each with its
    ``(inode, mtime_ns)``.  Every output is written atomically (a new file renamed into place), so a file of
    an earlier report into the same folder that this one did not write keeps its stamp: :func:`write_report`
    removes those, and a reused folder never mixes two reports (a stale ``left_out_runs.csv`` naming runs
    the new report analysed)."""
    files = [
        *(Path(out_dir) / "tables").glob("*"),
        *(Path(out_dir) / "figures").glob("*"),
        Path(out_dir) / "report.pdf",
    ]
    return {file: (file.stat().st_ino, file.stat().st_mtime_ns) for file in files if file.is_file()}


def export_figures(out_dir: Path, sections: Sequence[Section], formats: Sequence[str]) -> None:
    """Static copies (``formats``, e.g. png, pdf) of every figure of ``sections``, rendered from the
    Vega-Lite specs that :func:`~mtlens.render.save_figure` wrote to ``out_dir/figures``."""
    figures = Path(out_dir) / "figures"
    for section in sections:
        for name in re.findall(r'<figure id="fig-([^"]+)">', section.body):
            spec = json.loads((figures / f"{html.unescape(name)}.vl.json").read_text(encoding="utf-8"))
            export_static(spec, figures / html.unescape(name), formats)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.4em;margin:.3em 0}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.05em;margin:.6em 0 .2em}.generated{font-size:.8em;color:#555;margin:.2em 0}
table.table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.table td,table.table th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
table.table td{white-space:nowrap}
table.table th{overflow-wrap:normal;word-break:normal;hyphens:none;vertical-align:bottom}
table.table th[title]{cursor:help;text-decoration:underline dotted}
.table-wrap{overflow-x:auto;max-width:100%;max-height:32em;overflow-y:auto}
.table-wrap thead th{position:sticky;top:0;background:#f6f6f6}
.table-wrap:not(.all) .more{display:none}.more-toggle{font-size:.8em;margin:.2em 0;cursor:pointer}
.answer{margin:.25em 0 .5em}.answers{border-left:3px solid #1f77b4;padding-left:.8em;margin:.4em 0}
figure{margin:1.5em 0;max-width:100%}.chart{overflow-x:auto;max-width:100%}
figcaption,.caption{font-size:.85em;color:#555}
details.setting{border:1px solid #ddd;border-radius:4px;padding:.3em .8em;margin:.6em 0}
details.setting>summary{cursor:pointer;font-weight:600}
nav a{margin-right:1em;white-space:nowrap}nav{line-height:1.6;font-size:.9em}
@media print{body{max-width:none;margin:0}nav,.more-toggle{display:none}
.table-wrap{max-height:none;overflow:visible}.table-wrap thead th{position:static}
figure,tr,.answer{break-inside:avoid}h2,h3{break-after:avoid}.chart{overflow:visible}
.vega-embed>details{display:none}}
"""
"""The page's style: cells never wrap (a wide table scrolls in its box), headers wrap between words
only, hidden "more" columns until the table's toggle; for print, no scroll boxes or navigation."""


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
var closed=[];
function openAll(){document.querySelectorAll('details:not([open])').forEach(function(d){closed.push(d);d.open=true;});
charts.forEach(render);}
window.addEventListener('beforeprint',openAll);
window.addEventListener('afterprint',function(){closed.forEach(function(d){d.open=false;});closed=[];});
if(all){openAll();if(!charts.length){finish();}return;}
if(!('IntersectionObserver' in window)){charts.forEach(render);return;}
var seen=new IntersectionObserver(function(entries){entries.forEach(function(e){
if(e.isIntersecting){seen.unobserve(e.target);render(e.target);}});},{rootMargin:'800px'});
charts.forEach(function(c){seen.observe(c);});
var idle=window.requestIdleCallback||function(f){return setTimeout(f,50);},next=0;
function background(){while(next<charts.length&&charts[next].getAttribute('data-state')){next++;}
if(next<charts.length){render(charts[next]);idle(background);}}
window.addEventListener('load',function(){idle(background);});})();"""
"""Renders each figure's spec with Vega-Embed when it comes near the viewport, then the others one by
one while the browser is idle, so that a report of many figures opens at once and every figure is
drawn by the time it is printed (printing also opens every ``<details>`` and renders what is left;
closed again after printing).  With ``?render=all`` in the URL (browser checks, print to PDF) it opens
every ``<details>``, renders every figure at once and then marks ``<body>`` with ``data-charts``,
``data-chart-errors``, ``data-js-errors`` (uncaught errors and ``console.error`` calls, counted by
:data:`ERROR_COUNTER`) and ``data-overflow`` (whether the page is wider than the window)."""

ERROR_COUNTER = """window.mtlensErrors=0;window.addEventListener('error',function(){window.mtlensErrors++;});
window.addEventListener('unhandledrejection',function(){window.mtlensErrors++;});
(function(){var log=console.error;
console.error=function(){window.mtlensErrors++;return log.apply(console,arguments);};})();"""
"""Counts the page's JavaScript errors from the start (it runs before the Vega bundle)."""


def render_html(sections: Sequence[Section], title: str) -> str:
    """A standalone HTML page: a table of contents, the sections in order (figures numbered, so that a
    printed page can be referred to), and the Vega-Embed JavaScript inlined once (no network needed)
    with :data:`PAGE_SCRIPT`."""
    nav = "".join(
        f'<a href="#{html.escape(s.anchor or str(i))}">{html.escape(s.title)}</a>' for i, s in enumerate(sections)
    )
    body = "".join(
        f'<section id="{html.escape(s.anchor or str(i))}"><h2>{html.escape(s.title)}</h2>{s.body}</section>'
        for i, s in enumerate(sections)
    )
    numbers = itertools.count(1)
    body = re.sub("<figcaption>", lambda _: f"<figcaption>Figure {next(numbers)}. ", body)
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style><script>{ERROR_COUNTER}</script><script>{vega_bundle()}</script></head>"
        f"<body><h1>{html.escape(title)}</h1><nav>{nav}</nav>"
        f"<p class='generated'>Generated {generated}. Figures: hover for values, click a legend entry to show only "
        f"that series (shift-click for several), scroll to zoom, drag to pan, double-click to reset. Tables: hover "
        f'a header for its definition; "all columns" shows the rest; every table is in tables/*.csv unrounded. '
        f"Add <code>?render=all</code> to the address to draw every figure at once.</p>"
        f"{body}<script>{PAGE_SCRIPT}</script></body></html>"
    )
