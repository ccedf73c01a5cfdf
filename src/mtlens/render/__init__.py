"""Building blocks of the report: sections, interactive figures (Vega-Lite specs embedded in the
HTML, see :mod:`mtlens.render.charts`), tables, and the split of runs by training configuration
that every comparison section uses.

A layer of its own, below :mod:`mtlens.experiments` (whose report sections use it) and
:mod:`mtlens.report` (which assembles the report from the core and the experiments' sections)."""

from __future__ import annotations

import html
import inspect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.analysis.transfer import TaskInfo
from mtlens.quantities import TASK_GROUP, TASK_LIST
from mtlens.render.charts import Spec, spec
from mtlens.render.tables import table_html
from mtlens.store.atomic import atomic_write_text
from mtlens.training.config import PROBE_KEYS, RunConfig

__all__ = [
    "RUN_KEYS",
    "Section",
    "by_configuration",
    "config_text",
    "not_available",
    "per_setting",
    "report_options",
    "save_figure",
    "slug",
    "table_html",
]


def report_options(builder: Callable[..., Any], alpha: float) -> dict[str, float]:
    """The report-wide keywords a section builder takes: ``{"alpha": alpha}`` (the FDR of every family of
    tests, ``mtlens report --alpha``) where ``builder`` has an ``alpha`` parameter, else none, so a builder
    written without one still renders."""
    return {"alpha": alpha} if "alpha" in inspect.signature(builder).parameters else {}


@dataclass(frozen=True)
class Section:
    """One section of the HTML report: a title and its HTML body (figures already embedded)."""

    title: str
    body: str
    anchor: str = ""


@dataclass(frozen=True)
class Figure:
    """One figure of the report: ``name`` (its file name, :func:`slug` of its kind and ``key``), the ``setting``
    (configuration) it belongs to, its Vega-Lite ``chart`` (data included), ``caption`` and ``key``, what it
    shows (e.g. ``(setting, method, task)``).  The report saves it (:meth:`save`);
    :class:`~mtlens.report.results.StudyResults` hands it to the user."""

    name: str
    setting: str
    chart: Spec
    caption: str
    key: tuple[str, ...] = ()

    def save(self, out_dir: Path) -> str:
        """:func:`save_figure` of this figure: its spec written to ``out_dir/figures``, its HTML returned."""
        return save_figure(self.chart, out_dir, self.name, self.caption)


def save_figure(chart: Spec, out_dir: Path, name: str, caption: str) -> str:
    """Write the Vega-Lite spec ``chart`` (data included) to ``out_dir/figures/name.vl.json`` and
    return an HTML ``<figure>`` holding the spec (rendered in the browser by the page's script) with
    ``caption`` below it.  Static PNG/PDF files are rendered from the same file on request
    (``write_report(..., formats=...)``)."""
    figures = Path(out_dir) / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    text = json.dumps(spec(chart), separators=(",", ":"))
    atomic_write_text(figures / f"{name}.vl.json", text)
    safe, embedded = html.escape(name), text.replace("</", "<\\/")  # no "</script>" inside the script
    return (
        f'<figure id="fig-{safe}"><div class="chart" role="img" aria-label="{html.escape(caption)}"></div>'
        f'<script type="application/json" class="vl-spec">{embedded}</script>'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


RUN_KEYS = {
    *PROBE_KEYS,
    "run_id",
    "setting",
    "tasks",
    "mode",
    "method",
    "method_options",
    "seed",
    "state",
    "last_step",
    "message",
    "device",
    "threads",
}
"""Run-index columns that do not describe the training configuration shared by a run and its STL
references (the method and its options are what an MTL run compares against STL; the probes and their
options change no trajectory bit, ``tests/test_probes_runner.py``, so an MTL run with probes is compared with
STL runs without them, as the grouping study trains them)."""


def _default_text(key: str) -> str | None:
    """``RunConfig``'s default of ``key`` as the run index writes it (JSON for lists and dicts)."""
    field = RunConfig.model_fields.get(key)
    if field is None:
        return None
    default = field.get_default(call_default_factory=True)
    return json.dumps(default) if isinstance(default, (list, dict)) else str(default)


def config_text(column: pd.Series) -> pd.Series:
    """A run-index column as the text a configuration label compares: a missing value (a key absent from a
    run's config, as ``setting_version`` is from runs of a setting's first version, or ``null``) is ``"None"``,
    the text of ``RunConfig``'s ``None`` defaults, so that it differs from a value another run has."""
    return column.astype(object).where(column.notna(), None).map(str)


def by_configuration(index: pd.DataFrame, rows: pd.DataFrame, task_info: TaskInfo) -> tuple[pd.DataFrame, TaskInfo]:
    """Where the runs differ in their training configuration (optimizer, lr, momentum, ...), append
    it to each row's ``setting`` (``"digits_pair [optimizer=sgd lr=0.05]"``) so that MTL runs are
    only ever paired with STL runs trained the same way; ``task_info`` gains the new names.

    A label lists, among the keys in which the runs differ, those whose value is not the config
    default, so labels stay short and different configurations still get different labels.

    Where the MTL runs of one configuration differ in their task set (a grouping study trains many
    subsets), each task set is a configuration of its own, ``tasks=a+b`` in the label: its MTL runs
    are compared only with each other and with the STL runs of its tasks, whose rows are repeated
    once per task set holding their task (an STL run of a task in no MTL task set keeps the plain
    label).  With one MTL task set per configuration (every ordinary study) nothing is added."""
    keys = [c for c in index.columns if c not in RUN_KEYS and config_text(index[c]).nunique() > 1]
    if rows.empty:
        return rows, task_info
    defaults = {k: _default_text(k) for k in keys}
    config = (
        index.set_index("run_id")[keys]
        .apply(config_text)
        .apply(lambda r: " ".join(f"{k}={v}" for k, v in r.items() if v != defaults[k]) or "defaults", axis=1)
        if keys
        else pd.Series("", index=index["run_id"].to_numpy(), dtype=object)
    )
    task_sets = _task_set_labels(index, config)
    if not keys and not any(task_sets.map(lambda labels: labels != [""])):
        return rows, task_info
    labels = pd.Series(
        {
            run_id: [" ".join(part for part in (config[run_id], extra) if part) for extra in task_sets[run_id]]
            for run_id in config.index
        }
    )
    rows = rows.assign(_label=rows["run_id"].map(labels)).explode("_label")
    named = rows["_label"].fillna("").astype(str) != ""
    rows["setting"] = rows["setting"].where(~named, rows["setting"] + " [" + rows["_label"].astype(str) + "]")
    rows = rows.drop(columns="_label")
    names = rows[["setting"]].drop_duplicates()["setting"]
    extended = dict(task_info)
    for (setting, task), info in task_info.items():
        extended.update({(name, task): info for name in names if name.startswith(f"{setting} [")})
    return rows, extended


def _task_set_labels(index: pd.DataFrame, config: pd.Series) -> pd.Series:
    """Per run id of ``index``, the task-set parts of its configuration labels (:func:`by_configuration`):
    ``[""]`` where the MTL runs of its (setting, ``config`` label) share one task set, else
    ``["tasks=a+b"]`` for an MTL run and one ``tasks=...`` per MTL task set holding the task of an STL
    run (``[""]`` for none)."""
    if "tasks" not in index or "mode" not in index:
        return pd.Series([[""] for _ in config.index], index=config.index, dtype=object)
    runs = index.assign(_config=index["run_id"].map(config), tasks=index["tasks"].fillna("").astype(str))
    out: dict[str, list[str]] = {}
    for _, group in runs.groupby(["setting", "_config"], dropna=False, sort=False):
        sets = list(dict.fromkeys(group.loc[group["mode"] == "mtl", "tasks"]))
        for run_id, mode, tasks in group[["run_id", "mode", "tasks"]].itertuples(index=False):
            if len(sets) <= 1:
                out[run_id] = [""]
            elif mode == "mtl":
                out[run_id] = ["tasks=" + tasks.replace(TASK_LIST, TASK_GROUP)]
            else:
                out[run_id] = [
                    "tasks=" + s.replace(TASK_LIST, TASK_GROUP) for s in sets if tasks in s.split(TASK_LIST)
                ] or [""]
    return pd.Series({run_id: out.get(run_id, [""]) for run_id in config.index}, dtype=object)


def slug(*parts: object) -> str:
    """A file-name-safe figure name from ``parts``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(str(p) for p in parts)).strip("-")


def per_setting(figures: dict[str, list[str]], what: str) -> str:
    """Figures grouped by setting (configuration), one collapsible ``<details>`` per setting, so that
    a report of many settings opens short; open by default when there is only one setting."""
    opened = " open" if len(figures) == 1 else ""
    return "".join(
        f'<details class="setting"{opened}><summary>{html.escape(setting)}: {len(parts)} {what}'
        f"</summary>{''.join(parts)}</details>"
        for setting, parts in sorted(figures.items())
    )


def not_available(what: str) -> str:
    return f'<p class="not-available">Not available: {html.escape(what)}.</p>'
