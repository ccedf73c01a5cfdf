"""The study report: one self-contained HTML file plus figures (PNG, PDF) and tables (CSV).

It answers, per setting and MTL method: did MTL help each task (transfer table), when did
the generalization gap open (gap curves and onset), and how did optimization differ
(training curves).  Other analyses add :class:`Section` objects to :func:`write_report`.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from mtlens.analysis.gap import gap_family, generalization_gap
from mtlens.errors import ConfigError, MtlensError
from mtlens.experiments import experiment_sections
from mtlens.analysis.transfer import TaskInfo, delta_m, transfer_table
from mtlens.report.alignment import elich_sections
from mtlens.render import RUN_KEYS, Section, by_configuration, save_figure, slug, table_html
from mtlens.report.correlations import explanation_sections
from mtlens.report.figures import gap_figure, training_curves_figure
from mtlens.report.probes import probes_section
from mtlens.report.methods import method_weights_section
from mtlens.store import RunStore

GAP_MEASURES = ("val/loss", "val/error")

SectionBuilder = Callable[[RunStore, pd.DataFrame, pd.DataFrame, Path], list[Section]]
"""``(store, runs index, trajectory rows, out_dir) -> sections`` for extra analyses."""

DEFAULT_SECTIONS: list[SectionBuilder] = [probes_section, method_weights_section, explanation_sections,
                                           elich_sections, experiment_sections]
"""Builders whose sections every report has after the built-in ones (each renders only what its data allows)."""


def select_runs(store: RunStore, settings: Sequence[str] = (), methods: Sequence[str] = (),
                where: dict[str, Sequence[Any]] | None = None) -> pd.DataFrame:
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
            raise ConfigError(f"--where {key}: no runs have {' or '.join(map(str, values))}; values present: "
                              f"{', '.join(present[:20])}{' ...' if len(present) > 20 else ''}")
        index = index[matched]
    if settings:
        index = index[index["setting"].isin(settings)]
    if methods:
        index = index[(index["mode"] == "stl") | index["method"].isin(methods)]
    return index


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


def overview_section(index: pd.DataFrame, configured: pd.DataFrame, out_dir: Path) -> Section:
    """Run counts per configuration; ``configured`` holds the rows with :func:`by_configuration`'s setting names."""
    names = configured.groupby("run_id")["setting"].first()
    counts = (index.assign(setting=index["run_id"].map(names).fillna(index["setting"]))
              .groupby(["setting", "mode", "method", "state"]).size().rename("runs").reset_index())
    body = table_html(counts, out_dir, "runs", "Runs in this report by setting, mode, method and state.")
    if counts["setting"].str.contains(" [", regex=False).any():
        body += ("<p>The runs differ in their training configuration, so every comparison below is made "
                 "within one configuration (shown as <code>setting [key=value ...]</code>): an MTL run is "
                 "compared only with STL runs trained the same way, and runs of different configurations "
                 "are never pooled as seeds. Use <code>mtlens report --where KEY=VALUE</code> to restrict "
                 "the report to some of them.</p>")
    mismatched = mismatched_recorded_runs(index)
    if len(mismatched):
        body += table_html(mismatched, out_dir, "mismatched_recorded_runs",
                           "Recorded runs (your own training loop) of one setting whose configurations differ in more "
                           "than the task set: STL and MTL runs are paired only when init, data order, steps and "
                           "optimizer agree, so these are compared only within their own configuration, shown as "
                           "<code>setting [key=value ...]</code> below.")
    problems = index[index["state"].isin(["diverged", "failed"])]
    if len(problems):
        body += table_html(problems[["run_id", "state", "last_step", "message"]], out_dir, "problem_runs",
                           "Runs that diverged (non-finite loss) or failed; they are excluded from nothing "
                           "but contribute only the rows they recorded.")
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
        keys = [c for c in runs.columns if c not in RUN_KEYS | {"source"}
                and runs[c].astype(str).nunique() > 1]
        records += [{"setting": setting, "run_id": row["run_id"], "mode": row["mode"],
                     "differs": " ".join(f"{k}={row[k]}" for k in keys)} for _, row in runs.iterrows() if keys]
    return pd.DataFrame.from_records(records)


def transfer_section(rows: pd.DataFrame, task_info: TaskInfo, out_dir: Path, alpha: float) -> Section:
    table = transfer_table(rows, task_info, alpha=alpha)
    if table.empty:
        return Section("Transfer", "<p>No task has both STL and MTL runs yet.</p>", "transfer")
    body = table_html(
        table, out_dir, "transfer",
        f"Test performance at the validation-selected checkpoint, mean and std over the seeds the test used. "
        f"delta = MTL − STL (mean of the per-seed differences when design = paired: STL and MTL of one seed "
        f"share initialization and batch order; unpaired, label-permutation Welch test, only where seeds do "
        f"not match); delta_low/high: {1 - alpha:.0%} permutation interval; effect_size: Cohen's d_z (paired) "
        f"or d; p_value: exact sign-flip t test (paired); p_adjusted: Benjamini–Hochberg over this table; "
        f"min_p: the smallest p-value the seeds allow (2/2^n paired: 3 seeds cannot go below 0.25); "
        f"min_detectable: the difference detected with 80% power; verdict only where p_adjusted ≤ {alpha:g}. "
        f"relative_pct > 0 means MTL is better. See docs/statistics.md.")
    body += table_html(delta_m(table), out_dir, "delta_m",
                       "delta_m: mean relative improvement of MTL over STL across tasks (%).")
    return Section("Did MTL help each task?", body, "transfer")


def gap_section(rows: pd.DataFrame, out_dir: Path, alpha: float) -> Section:
    keys, results = [], []
    for (setting, method), mtl_rows in rows[rows["mode"] == "mtl"].groupby(["setting", "method"]):
        pair = pd.concat([rows[(rows["setting"] == setting) & (rows["mode"] == "stl")], mtl_rows])
        for task in sorted(mtl_rows["task"].unique()):
            for measure in GAP_MEASURES:
                if (result := generalization_gap(pair, task, measure)) is not None:
                    keys.append((setting, method))
                    results.append(result)
    if not results:
        return Section("When did the gap open?", "<p>No task has both STL and MTL trajectories.</p>", "gap")
    results, table = gap_family(results, alpha)
    table.insert(0, "setting", [k[0] for k in keys])
    table.insert(1, "method", [k[1] for k in keys])
    level = float(table["band_level"].iloc[0])
    parts = []
    for (setting, method, task), frame in table.groupby(["setting", "method", "task"], sort=False):
        task_results = [results[i] for i in frame.index]
        first = frame.iloc[0]
        caption = (f"{setting}, method {method}, task {task}: validation measures against training loss "
                   f"(mean ± std over {first['n_stl']} STL and {first['n_mtl']} MTL runs) and the gap MTL − STL "
                   f"({first['design']}) with its simultaneous band over all training-loss levels at per-test "
                   f"level {level:.3g}; dashed: onset of a persistent gap (only where the test supports one).")
        parts.append(save_figure(gap_figure(task_results), out_dir, slug("gap", setting, method, task), caption))
    note = ""
    if (table["min_p"] > level).any():
        note = (f"<p>{int((table['min_p'] > level).sum())} of {len(table)} comparisons have too few seeds for any "
                f"p-value to reach the level {level:.3g} (min_p: 2/2^n for n paired seeds; 6 pairs are the fewest "
                f"that can reach 5%): no onset can be shown there, whatever the curves look like.</p>")
    body = note + table_html(
        table, out_dir, "gap_onset",
        f"The generalization gap MTL − STL at equal training loss. design: paired (per-seed differences, exact "
        f"sign-flip max-|t| test over all {len(results[0].levels)} loss levels) or unpaired (label permutation); "
        f"p_any: a gap at some level; p_persistent: a gap from some level to the lowest common training loss; "
        f"*_adjusted: Benjamini–Hochberg over this table (FDR {alpha:g}); band_level: the per-test level of the "
        f"bands and onsets (BH's rejection level, so an onset is shown iff its persistent gap is a discovery); "
        f"onset: first level from which the simultaneous band excludes 0 to the end; final_*: the gap at the "
        f"lowest common training loss with its band, Cohen's d_z and the gap detectable with 80% power. "
        f"Negative gaps in loss/error mean MTL generalizes better. See docs/statistics.md.")
    return Section("When did the gap open?", body + "".join(parts), "gap")


def training_section(rows: pd.DataFrame, out_dir: Path) -> Section:
    parts, unpaired = [], []
    for (setting, method), mtl_rows in rows[rows["mode"] == "mtl"].groupby(["setting", "method"]):
        stl_rows = rows[(rows["setting"] == setting) & (rows["mode"] == "stl")]
        if stl_rows.empty:
            unpaired.append(f"{setting}, method {method}")
            continue
        pair = pd.concat([stl_rows, mtl_rows])
        tasks = sorted(mtl_rows["task"].unique())
        fig = training_curves_figure(pair, tasks, ["train/loss", "val/loss", "val/error"])
        parts.append(save_figure(fig, out_dir, slug("training", setting, method),
                                 f"{setting}, method {method}: training loss (fixed training subset), validation "
                                 f"loss and error by epoch, mean ± std over seeds ({pair['run_id'].nunique()} runs, "
                                 f"{pair['seed'].nunique()} seeds; n per curve in the legend)."))
    if unpaired:
        parts.append(f"<p>MTL runs without STL runs of the same configuration (not drawn here): "
                     f"{html.escape('; '.join(unpaired))}.</p>")
    return Section("How did optimization differ?", "".join(parts) or "<p>No MTL runs.</p>", "training")


def write_report(store: RunStore, out_dir: str | Path, settings: Sequence[str] = (), methods: Sequence[str] = (),
                 alpha: float = 0.05, extra_sections: Sequence[SectionBuilder] = (),
                 where: dict[str, Sequence[Any]] | None = None) -> Path:
    """Write ``out_dir/report.html`` (self-contained), ``figures/`` and ``tables/``; return the HTML path.

    ``alpha`` is the false discovery rate of each family of tests (docs/statistics.md)."""
    out_dir = Path(out_dir)
    index = select_runs(store, settings, methods, where)
    if index.empty:
        raise MtlensError(f"no runs in {store.root} match settings={list(settings)} methods={list(methods)}"
                          f"{f' where={where}' if where else ''}")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = store.trajectories(index["run_id"].tolist())
    configured, task_info = by_configuration(index, rows, store.task_info())
    sections = [overview_section(index, configured, out_dir), transfer_section(configured, task_info, out_dir, alpha),
                gap_section(configured, out_dir, alpha), training_section(configured, out_dir)]
    for build in (*DEFAULT_SECTIONS, *extra_sections):
        sections += build(store, index, rows, out_dir)
    path = out_dir / "report.html"
    path.write_text(render_html(sections, f"mtlens report — {', '.join(sorted(index['setting'].unique()))}"))
    return path


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.table td,table.table th{border:1px solid #ddd;padding:.25em .5em;text-align:right}
figure{margin:1.5em 0}figure img{max-width:100%}figcaption,.caption{font-size:.85em;color:#555}
.table-wrap{overflow-x:auto}nav a{margin-right:1em}
"""


IMAGE_CHECK = """window.addEventListener('load',function(){var broken=0;
document.querySelectorAll('img').forEach(function(i){if(!i.complete||i.naturalWidth===0){broken++;}});
document.body.setAttribute('data-images',document.images.length);
document.body.setAttribute('data-broken-images',broken);});"""
"""Marks ``<body>`` with the number of images and of images that failed to load (for browser checks)."""


def render_html(sections: Sequence[Section], title: str) -> str:
    """A standalone HTML page with a table of contents and the sections in order."""
    nav = "".join(f'<a href="#{html.escape(s.anchor or str(i))}">{html.escape(s.title)}</a>'
                  for i, s in enumerate(sections))
    body = "".join(f'<section id="{html.escape(s.anchor or str(i))}"><h2>{html.escape(s.title)}</h2>{s.body}</section>'
                   for i, s in enumerate(sections))
    generated = time.strftime("%Y-%m-%d %H:%M:%S")
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p>Generated {generated}.</p>"
            f"<nav>{nav}</nav>{body}<script>{IMAGE_CHECK}</script></body></html>")
