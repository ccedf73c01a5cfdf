"""Experiments as plugins: an :class:`Experiment` is a plan, an optional analysis and a report section.

An experiment maps a setting, seeds and its options to an :class:`ExperimentPlan`: the resolved
run configs (validated before any training) and a *manifest*, one row per run with the labels its
analysis groups by.  :func:`run_experiment` stores the manifest as the table
``experiment-<name>-<setting>`` (with the complete runs of earlier invocations of the same design, where the
experiment says what a rerun may change: :func:`experiment_manifest`), trains the runs (complete runs are
skipped) and runs the experiment's ``analyze`` step (analyses of checkpoints, stored as tables; an analysis that trains
more runs, such as the grouping experiment's chosen groupings, trains them through the ``train`` it
is given, so they are trained like the plan's runs and their outcomes join :func:`run_experiment`'s
table, the exit status of ``mtlens study --experiment``); the report renders the ``section`` of every
experiment whose manifest is in the store (:func:`experiment_sections`).

An experiment's options are the keyword parameters of its ``plan`` after ``(base, setting, seeds)``;
``mtlens study SETTING --experiment NAME --experiment-option KEY=VALUE`` passes them, checked
against that signature.  A user's own experiment is one :func:`register_experiment` call::

    from mtlens.experiments import Experiment, plan_runs, register_experiment


    def plan(base, setting, seeds, lr: float = 1e-3):
        return plan_runs("my-lr", base, setting, [({"seed": s, "lr": lr}, {}) for s in seeds])


    def section(store, index, manifest, rows, out_dir, setting):
        return f"<p>{manifest['run_id'].nunique()} runs</p>"


    register_experiment(Experiment("my-lr", "My lr experiment", plan, section))
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mtlens.errors import DamagedStoreError
from mtlens.orchestration.executors import Executor, run_configs
from mtlens.registry import Registry, UnknownNameError
from mtlens.render import Section, not_available, report_options
from mtlens.settings import Setting
from mtlens.store import RunStore
from mtlens.training.config import (
    RUN_ENVIRONMENT_KEYS,
    ResolvedRunConfig,
    load_configured_setting,
    new_run_config,
    parse_config,
    refuse_owned_keys,
    same_run_config,
)

EXPERIMENT_SEEDS = 2
"""Default number of seeds of an experiment (``mtlens study --experiment``)."""

FIXED_KEYS = ("tasks", "seed", "method", "optimizer", "momentum", "task_loss_scales", "probes")
"""Keys an experiment sets itself (a base config must leave them out)."""


@dataclass(frozen=True)
class ExperimentPlan:
    """The runs of one experiment on one setting, and one manifest row per run."""

    name: str
    setting: str
    configs: list[ResolvedRunConfig]
    manifest: pd.DataFrame

    @property
    def table_name(self) -> str:
        return manifest_table_name(self.name, self.setting)


PlanFunction = Callable[..., ExperimentPlan]
"""``(base config, setting, seeds, **options) -> ExperimentPlan``."""

TrainFunction = Callable[[Sequence[ResolvedRunConfig]], pd.DataFrame]
"""``(configs) -> table``: train more runs from an analysis step as :func:`run_experiment` trains the plan's
(complete runs skipped, its ``progress``); returns their ``run_id, state, message`` rows, which also join
:func:`run_experiment`'s table."""

AnalyzeFunction = Callable[..., None]
"""``(plan, store, setting) -> None``: analyses of the trained runs' checkpoints, written as store tables.  An
analysis with a ``train`` parameter is also given a :data:`TrainFunction` (:func:`run_experiment`): the only
way it should train runs, so a run it trains that fails is in the experiment's results."""

SectionFunction = Callable[..., str]
"""``(store, runs index, manifest, the manifest's trajectory rows, out_dir, setting) -> HTML body``; a
section with an ``alpha`` parameter also gets the report's FDR (:func:`~mtlens.render.report_options`)."""


@dataclass(frozen=True)
class Experiment:
    """One experiment: its name, the report section's title, and its plan, analysis and section.

    ``rerun_keeps``: what a rerun of the experiment with other options may change and still show the earlier
    runs beside the new ones (:func:`experiment_manifest`): manifest columns and config keys besides the run
    id and the seed, e.g. the loss-scale experiment's ``scale`` and ``task_loss_scales``.  ``None`` (the
    default): a rerun replaces the manifest, for experiments whose analysis step stores tables of the
    plan's runs only."""

    name: str
    title: str
    plan: PlanFunction
    section: SectionFunction
    analyze: AnalyzeFunction | None = None
    rerun_keeps: tuple[str, ...] | None = None


EXPERIMENTS: Registry[Experiment] = Registry(
    "experiment",
    builtins=(
        "mtlens.experiments.optimizers",
        "mtlens.experiments.loss_scale",
        "mtlens.experiments.alignment",
        "mtlens.experiments.corruptions",
        "mtlens.experiments.grouping",
    ),
    ignored_parameters=("base", "setting", "seeds"),
    signature_of=lambda experiment: experiment.plan,
)
"""Every experiment by name; options are the keyword parameters of its ``plan``."""


def register_experiment(experiment: Experiment) -> Experiment:
    """Register ``experiment`` under its name, which no other experiment may hold
    (:meth:`~mtlens.registry.Registry.register`); returns it."""
    return EXPERIMENTS.register(experiment.name, experiment)


def available_experiments() -> list[str]:
    """Names of every registered experiment."""
    return EXPERIMENTS.names()


def manifest_table_name(experiment: str, setting: str) -> str:
    """The store table holding an experiment's manifest."""
    return f"experiment-{experiment}-{setting}"


def plan_runs(
    name: str, base: dict[str, Any], setting: Setting, runs: list[tuple[dict[str, Any], dict[str, Any]]]
) -> ExperimentPlan:
    """Validate and resolve ``(config overrides, labels)`` pairs on top of ``base``."""
    refuse_owned_keys(base, FIXED_KEYS, f"the {name} experiment itself")
    configs, records = [], []
    for overrides, labels in runs:
        config = new_run_config({**base, **overrides}, setting)
        configs.append(config)
        records.append(
            {
                "run_id": config.run_id,
                "experiment": name,
                "setting": config.setting,
                "mode": config.mode,
                "seed": config.seed,
                "method": config.method,
                "lr": config.lr,
                "task": config.tasks[0] if config.mode == "stl" else "",
                **labels,
            }
        )
    return ExperimentPlan(name, setting.name, configs, pd.DataFrame.from_records(records))


def stl_and_mtl(
    setting: Setting, seeds: Sequence[int], keys: dict[str, Any]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """STL per task and MTL (``sum``) per seed, each with the config ``keys``."""
    runs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for seed in seeds:
        for task in setting.task_names:
            runs.append(({"tasks": [task], "seed": seed, "method": "sum", **keys}, {}))
        runs.append(({"seed": seed, "method": "sum", **keys}, {}))
    return runs


def experiment_plan(
    name: str, base: dict[str, Any], seeds: Sequence[int], setting: Setting | None = None, **options: Any
) -> ExperimentPlan:
    """The plan of experiment ``name`` for the setting of ``base`` (validated before any training):
    an unknown name or option is a :class:`ConfigError` listing the valid ones."""
    experiment = EXPERIMENTS.get(name)
    EXPERIMENTS.check_options(name, options)
    setting = setting or load_configured_setting(parse_config({**base, "probes": []}))
    return experiment.plan(base, setting, list(seeds), **options)


def run_experiment(
    plan: ExperimentPlan,
    store: RunStore,
    setting: Setting | None = None,
    progress: bool = True,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Store the manifest, train the plan's runs, store the manifest again, then run the experiment's analysis
    (given a :data:`TrainFunction` where it has a ``train`` parameter).  ``executor`` trains every run, the
    analysis's too (e.g. a :class:`~mtlens.orchestration.executors.LocalExecutor` of 2 worker processes; the
    caller closes it); without one they are trained in this process
    (:func:`~mtlens.orchestration.executors.run_configs`).  A run's results do not depend on which process
    trains it.

    The manifest is merged with the stored one (:func:`experiment_manifest`) and written under the table's lock
    (:meth:`~mtlens.store.RunStore.table_lock`), before training and again after it: an invocation running at
    the same time on the same store (other seeds, say) keeps only rows whose runs have a directory, so it
    dropped this plan's rows while their runs were not started, and the second merge, once they exist, puts
    them back (before, the last manifest written won).

    Returns :func:`~mtlens.orchestration.executors.run_configs`' table (``run_id, state, message``) of the
    plan's runs followed by those the analysis trained.
    """
    earlier = _store_manifest(plan, store)
    if earlier:
        print(
            f"{plan.name}: its table also shows {earlier} run(s) of earlier invocations on {plan.setting}, "
            f"not in this plan (stored manifest {plan.table_name})",
            flush=True,
        )
    tables: list[pd.DataFrame] = []

    def train(configs: Sequence[ResolvedRunConfig]) -> pd.DataFrame:
        tables.append(run_configs(configs, store, progress=progress, executor=executor))
        return tables[-1]

    train(plan.configs)
    _store_manifest(plan, store)

    analyze = EXPERIMENTS.get(plan.name).analyze
    if analyze is not None:
        extra = {"train": train} if "train" in inspect.signature(analyze).parameters else {}
        analyze(plan, store, setting or load_configured_setting(plan.configs[0]), **extra)
    return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]


def _store_manifest(plan: ExperimentPlan, store: RunStore) -> int:
    """Write :func:`experiment_manifest` under the table's lock; the number of rows of earlier invocations."""
    with store.table_lock(plan.table_name):
        manifest = experiment_manifest(plan, store)
        store.write_table(plan.table_name, manifest)
    return len(manifest) - len(plan.manifest)


def experiment_manifest(plan: ExperimentPlan, store: RunStore) -> pd.DataFrame:
    """The manifest :func:`run_experiment` stores: the plan's rows, then, for an experiment with
    ``rerun_keeps`` (:class:`Experiment`), the rows of the manifest stored by earlier invocations whose run is
    not in the plan, still has its directory and has the design of a planned run (:func:`_same_design`: the same
    config and labels but the run id, the seed, where it ran and ``rerun_keeps``), whatever its state: a run
    damaged now (its status rebuilt later from its end record) or unfinished stays in the manifest, and the
    sections show only the analysed (finished, intact) runs' rows and count the others.  A row whose config
    does not read is kept too: it can only be healed by a rerun that plans it, which writes the manifest anew.
    A rerun with other scales keeps the earlier scales; one with another learning rate, number of epochs or
    scaled task replaces them.  A stored manifest that does not read is replaced (one line on stderr names
    it)."""
    keeps = EXPERIMENTS.get(plan.name).rerun_keeps
    if keeps is None or plan.table_name not in store.table_names(plan.table_name):
        return plan.manifest
    try:
        stored = store.table(plan.table_name)
    except DamagedStoreError as err:
        print(f"{err}; writing it anew from this plan", file=sys.stderr)
        return plan.manifest
    planned = set(plan.manifest["run_id"])
    ignored = {"run_id", "seed", *RUN_ENVIRONMENT_KEYS, *keeps}
    designs: dict[str, dict[str, dict[str, Any]]] = {}  # labels -> one planned config per design
    for planned_config, row in zip(plan.configs, plan.manifest.to_dict("records")):
        requested = planned_config.to_dict()
        designs.setdefault(_design_key(row, ignored), {}).setdefault(_design_key(requested, ignored), requested)
    earlier = []
    for row in stored.to_dict("records"):
        run_id = row.get("run_id")
        if not isinstance(run_id, str) or run_id in planned or not store.run_dir(run_id).is_dir():
            continue
        try:
            config = store.config(run_id)
        except DamagedStoreError:  # not analysed while damaged; dropping it would lose it for good
            earlier.append(row)
            continue
        if any(
            _same_design(config, requested, ignored)
            for requested in designs.get(_design_key(row, ignored), {}).values()
        ):
            earlier.append(row)
    if not earlier:
        return plan.manifest
    return pd.concat([plan.manifest, pd.DataFrame.from_records(earlier, columns=stored.columns)], ignore_index=True)


def _design_key(part: dict[str, Any], ignored: set[str]) -> str:
    """A manifest row's labels (or a config) without the ``ignored`` keys, as sorted JSON (NumPy scalars as
    Python numbers): the labels a run shares with the runs an experiment's table shows beside it."""
    return json.dumps({k: v for k, v in part.items() if k not in ignored}, sort_keys=True, default=lambda v: v.item())


def _same_design(stored: dict[str, Any], requested: dict[str, Any], ignored: set[str]) -> bool:
    """Whether a stored ``config.json`` has the design of the planned run ``requested`` (:meth:`RunConfig.to_dict`):
    the same run config (:func:`~mtlens.training.config.same_run_config`, the one rule that also lets a config
    written before a key existed resume) once its ``ignored`` keys (run id, seed, where it ran, ``rerun_keeps``)
    are taken from ``requested``."""
    own = {k: v for k, v in stored.items() if k not in ignored}
    return same_run_config({**own, **{k: requested[k] for k in ignored if k in requested}}, requested)


def experiment_sections(
    store: RunStore, index: pd.DataFrame, rows: pd.DataFrame, out_dir: Path, alpha: float = 0.05
) -> list[Section]:
    """Report sections (the ``SectionBuilder`` of :mod:`mtlens.report.study_report`): one per stored
    experiment manifest whose runs are in ``index``, rendered by its experiment's ``section`` (with the
    report's ``alpha`` where it takes one, :func:`~mtlens.render.report_options`)."""
    sections = []
    for name in store.table_names("experiment-"):
        manifest = store.table(name)
        manifest = manifest[manifest["run_id"].isin(index["run_id"])]
        if manifest.empty:
            continue
        experiment, setting = manifest["experiment"].iloc[0], manifest["setting"].iloc[0]
        anchor = f"assumptions-{experiment}-{setting}"
        try:
            entry = EXPERIMENTS.get(experiment)
        except UnknownNameError as err:
            sections.append(
                Section(
                    f"Experiment {experiment} ({setting})",
                    not_available(f"{err}; import the module that registers it"),
                    anchor,
                )
            )
            continue
        run_rows = rows[rows["run_id"].isin(manifest["run_id"])]
        options = report_options(entry.section, alpha)
        body = entry.section(store, index, manifest, run_rows, Path(out_dir), setting, **options)
        sections.append(Section(f"{entry.title} ({setting})", body, anchor))
    return sections
