"""The report's tables and figures as Python objects, for notebooks: :func:`load` a store (or train a
study with :func:`study`) and ask the :class:`StudyResults` for a table (a ``pandas.DataFrame``) or a
figure (a :class:`Chart`: a Vega-Lite spec that Jupyter displays, saved as ``.vl.json``, PNG, PDF or SVG)::

    import mtlens

    results = mtlens.load("runs/demo")
    results.transfer()  # the transfer table of the report
    results.figure("gap", setting="mnist_pair", method="sum", task="a")  # its gap figure of task a

Every table and figure comes from the function the HTML report calls for it (``transfer_tests``,
:func:`~mtlens.report.study_report.gap_analysis`, :func:`~mtlens.report.study_report.training_figures`,
...), on the runs the report would analyse: only finished runs unless ``include_unfinished``, runs of
different configurations never pooled (settings named ``setting [key=value ...]`` as in the report).
Each analysis is computed once per :class:`StudyResults` (on first use) and shared by the tables and
figures that show it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from annotated_types import MinLen
from pydantic import Strict

from mtlens.analysis.transfer import delta_m
from mtlens.errors import ConfigError
from mtlens.registry import Seed, SeedCount, check_option_values
from mtlens.render import Figure
from mtlens.render.charts import STATIC_FORMATS, Spec, export_static, spec
from mtlens.report.correlations import loss_ratio_figures, scatter_figures, steps_to_loss_table
from mtlens.report.methods import method_weights_table, weights_figures
from mtlens.report.probes import probe_figures
from mtlens.report.study_report import (
    ReportData,
    RunSelection,
    gap_figures,
    noted_transfer,
    report_data,
    run_counts,
    selected_runs,
    study_summary,
    training_figures,
    write_report,
)
from mtlens.store import RunState, RunStore, atomic_write_text


@dataclass(frozen=True)
class Chart:
    """A figure of the report: ``name`` (its file name in ``report/figures``), ``setting`` (configuration),
    ``caption`` and :attr:`spec`, the top-level Vega-Lite spec with its data inline.  Displayed by Jupyter
    (as SVG rendered offline by vl-convert, and as Vega-Lite for front ends that draw it); :meth:`save`
    writes it."""

    name: str
    setting: str
    caption: str
    spec: Spec

    @classmethod
    def of(cls, figure: Figure) -> Chart:
        return cls(figure.name, figure.setting, figure.caption, spec(figure.chart))

    def to_dict(self) -> Spec:
        """The Vega-Lite spec (a JSON-ready dict, e.g. for ``altair.Chart.from_dict``)."""
        return self.spec

    def save(self, path: str | Path) -> Path:
        """Write the figure to ``path``: ``.json`` (the Vega-Lite spec) or a static ``.png``, ``.pdf``, ``.svg``."""
        path = Path(path)
        suffix = path.suffix.lstrip(".")
        if suffix == "json":
            atomic_write_text(path, json.dumps(self.spec))
        elif suffix in STATIC_FORMATS:
            export_static(self.spec, path.with_suffix(""), [suffix])
        else:
            raise ConfigError(f"{path}: unknown figure format {suffix!r}; valid: json, {', '.join(STATIC_FORMATS)}")
        return path

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        import vl_convert

        from mtlens.render.charts import VEGA_LITE_VERSION

        svg = vl_convert.vegalite_to_svg(self.spec, vl_version=VEGA_LITE_VERSION)
        return {"image/svg+xml": svg, "text/plain": f"<Chart {self.name}: {self.caption}>"}


FIGURE_KINDS = ("gap", "training", "probes", "conflict", "weights", "loss_ratio", "scatter")
"""The figure kinds of the report, as :meth:`StudyResults.figures` names them (the prefix of each figure's name)."""


class StudyResults:
    """The runs of ``store`` that the report of the same selection analyses (``settings``, MTL ``methods``,
    ``where``: a run-index column -> accepted values, ``include_unfinished``; as ``mtlens report``'s flags)
    and every table and figure of that report.  ``alpha`` is the FDR of each family of tests.  ``sweep``: a
    sweep id of the store, as ``mtlens report --sweep`` (only the runs it selected, compared across their grid
    values).

    Raises :class:`~mtlens.errors.MtlensError` when no run matches or none is finished."""

    def __init__(
        self,
        store: RunStore | str | Path,
        settings: Sequence[str] = (),
        methods: Sequence[str] = (),
        where: dict[str, Sequence[Any]] | None = None,
        include_unfinished: bool = False,
        alpha: float = 0.05,
        sweep: str | None = None,
    ):
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha: expected a number between 0 and 1, got {alpha!r}")
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        self.settings, self.methods, self.where = list(settings), list(methods), where
        self.include_unfinished, self.alpha, self.sweep = include_unfinished, alpha, sweep
        self.selection: RunSelection = selected_runs(self.store, settings, methods, where, include_unfinished, sweep)

    def __repr__(self) -> str:
        counts = self.selection.analysed.groupby(["setting", "mode"]).size()
        runs = ", ".join(f"{setting} {mode} {n}" for (setting, mode), n in counts.items())
        return (
            f"<StudyResults of {self.store.root}: {len(self.selection.analysed)} runs analysed ({runs}), "
            f"{len(self.selection.left_out)} left out>"
        )

    @cached_property
    def data(self) -> ReportData:
        """The analyses shared by tables and figures, each computed on first use."""
        return report_data(self.store, self.selection, self.alpha)

    # -- runs and rows ---------------------------------------------------------------------------------

    def runs(self) -> pd.DataFrame:
        """The run index of the analysed runs (one row per run: config, state, last step)."""
        return self.selection.analysed.reset_index(drop=True)

    def left_out(self) -> pd.DataFrame:
        """The runs of the selection that no analysis reads (not finished, diverged, damaged), with their state."""
        return self.selection.left_out.reset_index(drop=True)

    def rows(self) -> pd.DataFrame:
        """Trajectory rows of the analysed runs (run id, setting, task, method, seed, step, epoch, quantity,
        value), settings named by configuration as in the report."""
        return self.data.rows

    # -- the report's tables -------------------------------------------------------------------------

    def run_counts(self) -> pd.DataFrame:
        """The overview's table: runs per setting, mode, method and state (left-out runs included)."""
        return run_counts(self.selection.index, self.data.rows)

    def summary(self) -> pd.DataFrame:
        """The summary: per setting and method delta_m, tasks better/worse, gap verdict, optimization and
        conflict (:func:`~mtlens.report.study_report.study_summary`)."""
        return study_summary(self.data.transfer, self.data.gap.table, self.data.rows, self.data.optimization)

    def transfer(self) -> pd.DataFrame:
        """The transfer table: STL vs MTL at the validation-selected checkpoint, paired tests, BH verdicts."""
        return noted_transfer(self.data)

    def delta_m(self) -> pd.DataFrame:
        """delta_m per setting and method: the mean relative improvement of MTL over STL across tasks (%)."""
        return delta_m(self.data.transfer)

    def gap(self) -> pd.DataFrame:
        """The gap table (onsets): per setting, method, task and measure, the gap MTL − STL at equal
        training loss, its tests and onset (:func:`~mtlens.report.study_report.gap_analysis`)."""
        return self.data.gap.noted_table()

    def optimization(self) -> pd.DataFrame:
        """The optimization-effect tests: training-loss log-ratio MTL/STL at equal steps, early and final."""
        return self.data.optimization_tests

    def steps_to_loss(self) -> pd.DataFrame:
        """Steps and epochs to first reach two training-loss levels, per setting, task, mode and method."""
        return steps_to_loss_table(self.data.rows)

    def units(self) -> pd.DataFrame:
        """The correlation analysis's units: one row per (setting, task, seed, method) of an MTL run."""
        return self.data.units

    def probe_differences(self) -> pd.DataFrame:
        """The paired tests of the probe differences MTL − STL per seed."""
        return self.data.probe_differences

    def correlations(self) -> pd.DataFrame:
        """Pearson and Spearman correlations of the trajectory factors with transfer and the gap."""
        return self.data.correlations

    def method_weights(self) -> pd.DataFrame:
        """The task weights each multi-task method applied: first, last and mean."""
        return method_weights_table(self.data.rows)

    # -- the report's figures ------------------------------------------------------------------------

    def _figures(self, kind: str) -> Iterator[Figure]:
        builders: dict[str, Callable[[], Iterator[Figure]]] = {
            "gap": lambda: gap_figures(self.data.gap),
            "training": lambda: training_figures(self.data.rows),
            "probes": lambda: probe_figures(self.data.rows),
            "conflict": lambda: probe_figures(self.data.rows),
            "weights": lambda: weights_figures(self.data.rows),
            "loss_ratio": lambda: loss_ratio_figures(self.data.rows),
            "scatter": lambda: scatter_figures(self.data.rows, self.data.units, self.correlations(), self.alpha),
        }
        if kind not in builders:
            raise ConfigError(f"unknown figure kind {kind!r}; valid: {', '.join(FIGURE_KINDS)}")
        if kind == "scatter" and self.data.units.empty:
            return iter(())
        return (f for f in builders[kind]() if f.name.startswith(f"{kind}_"))

    def figures(self, kind: str) -> dict[str, Chart]:
        """Every figure of ``kind`` (one of :data:`FIGURE_KINDS`) by name, as the report draws them."""
        return {f.name: Chart.of(f) for f in self._figures(kind)}

    def figure(self, kind: str, setting: str = "", method: str = "", task: str = "", target: str = "") -> Chart:
        """The report's figure of ``kind`` for ``setting`` and ``method`` (``gap``: and ``task``; ``scatter``:
        of the correlation ``target``, e.g. ``transfer_pct``).  What is left out may be anything, so the
        setting and method may be left out of a study of one setting and one method; a choice that names
        no figure or several raises :class:`~mtlens.errors.ConfigError` listing the figures there are."""
        wanted = (target,) if kind == "scatter" else (setting, method, task)
        figures = list(self._figures(kind))
        matches = [f for f in figures if all(w in ("", k) for w, k in zip(wanted, f.key))]
        if len(matches) == 1:
            return Chart.of(matches[0])
        choice = {"setting": setting, "method": method, "task": task, "target": target}
        asked = " ".join(f"{name}={value!r}" for name, value in choice.items() if value)
        raise ConfigError(
            f"figure {kind} {asked or '(no choice)'} names {'several' if matches else 'none'} of the figures: "
            f"{'; '.join(' '.join(f.key) for f in (matches or figures)) or 'there are none'}"
        )

    def report(self, out_dir: str | Path, formats: Sequence[str] = ()) -> Path:
        """Write the HTML report of the same selection to ``out_dir`` (as ``mtlens report``); its path."""
        return write_report(
            self.store,
            out_dir,
            self.settings,
            self.methods,
            self.alpha,
            where=self.where,
            include_unfinished=self.include_unfinished,
            formats=formats,
            sweep=self.sweep,
        )


def load(
    store: RunStore | str | Path,
    settings: Sequence[str] | str = (),
    methods: Sequence[str] | str = (),
    where: dict[str, Any] | None = None,
    include_unfinished: bool = False,
    alpha: float = 0.05,
    sweep: str | None = None,
) -> StudyResults:
    """The :class:`StudyResults` of the runs in ``store`` (a path or a :class:`~mtlens.store.RunStore`);
    ``settings`` and ``methods`` (a name or names), ``where`` (a run-index column -> a value or values) and
    ``sweep`` (a sweep id) select runs as ``mtlens report``'s ``--setting``, ``--methods``, ``--where`` and
    ``--sweep`` do.  A store path that does not exist raises :class:`~mtlens.errors.ConfigError`."""
    if not isinstance(store, RunStore) and not Path(store).is_dir():
        raise ConfigError(f"store {store}: no such directory")
    listed: dict[str, Sequence[Any]] = {k: v if isinstance(v, (list, tuple)) else [v] for k, v in (where or {}).items()}
    return StudyResults(
        store,
        [settings] if isinstance(settings, str) else settings,
        [methods] if isinstance(methods, str) else methods,
        listed,
        include_unfinished,
        alpha,
        sweep,
    )


def study(
    setting: str,
    seeds: SeedCount | Annotated[Sequence[Annotated[Seed, Strict()]], MinLen(1)] = 3,
    methods: Annotated[Sequence[str], MinLen(1)] | str = ("sum",),
    store: RunStore | str | Path = "runs/mtlens",
    config: str | Path | dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    progress: bool = True,
    report: str | Path | None = None,
    **overrides: Any,
) -> StudyResults:
    """Train the STL-vs-MTL study as ``mtlens study`` does and return its :class:`StudyResults`.

    ``seeds``: a number n (seeds 0..n-1) or a list of seeds; ``methods``: MTL methods; ``config``: a YAML
    file or a dict of run-config keys, ``overrides`` (``epochs=2, lr=1e-3, ...``) on top of it and
    ``options`` (setting options) on top of its ``setting_options``; ``report``: also write the HTML report
    there.  Every config is validated before the first run (the same checks as the command line: an unknown
    key, method, option or an invalid value raises :class:`~mtlens.errors.ConfigError`); finished runs in
    ``store`` are reused, interrupted ones resumed.  Runs that fail or diverge are named in a warning and
    left out of the results, as the report leaves them out."""
    from mtlens.orchestration.executors import run_configs
    from mtlens.orchestration.study import study_configs
    from mtlens.training.config import load_yaml_file

    check_option_values("mtlens.study", study, {"seeds": seeds, "methods": methods})  # the annotations above
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    method_list = [methods] if isinstance(methods, str) else list(methods)
    raw: dict[str, Any] = {}
    if isinstance(config, dict):
        raw.update(config)
    elif config is not None:
        loaded = load_yaml_file(str(config), "config") or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {config}: expected a mapping of config keys, got {type(loaded).__name__}")
        raw.update(loaded)
    raw.update(overrides, setting=setting)
    if options:
        raw["setting_options"] = {**(raw.get("setting_options") or {}), **options}
    configs = study_configs(raw, seed_list, method_list)  # validates everything first
    run_store = store if isinstance(store, RunStore) else RunStore(store)
    outcome = run_configs(configs, run_store, progress=progress)
    bad = outcome[outcome["state"] != RunState.FINISHED]
    if len(bad):
        warnings.warn(
            f"{len(bad)} of {len(outcome)} runs did not finish and are left out of the results: "
            + ", ".join(f"{r.run_id} ({r.state})" for r in bad.itertuples()),
            stacklevel=2,
        )
    results = StudyResults(run_store, [setting], method_list)
    if report is not None:
        results.report(report)
    return results
