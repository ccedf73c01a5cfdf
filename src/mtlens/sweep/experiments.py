"""The experiments of the assumptions study (Elich et al. 2023): which runs each one needs.

An experiment maps a setting, seeds and its options to an :class:`ExperimentPlan`: the
resolved run configs (validated before any training) and a *manifest*, one row per run
with the labels the analysis groups by.  :func:`run_experiment` stores the manifest as the
table ``experiment-<name>-<setting>``, trains the runs (complete runs are skipped), and
computes the experiment's analysis of checkpoints where it has one; the report section
(:mod:`mtlens.report.assumptions`) renders every experiment whose manifest is in the store.

``optimizers``
    MTL with Adam, SGD and SGD with momentum 0.9, each over its own small learning-rate grid
    (:data:`OPTIMIZER_LRS`), under every method in ``methods`` (default: linear
    scalarization ``sum`` and uncertainty weighting ``uw``).  The analysis picks each
    (optimizer, method)'s learning rate by validation and tabulates test performance.
``loss-scale``
    MTL (``sum``) with task ``scaled_task``'s loss scaled by ``c`` in ``scales``
    (``task_loss_scales``), with Adam and with SGD, each at one learning rate tuned at ``c = 1``
    (:data:`LOSS_SCALE_LRS`).  Also stores the numerical check of Adam's per-parameter-group
    invariance (:mod:`mtlens.analysis.adam_invariance`) on the setting's model.
``alignment``
    STL per task and MTL (``sum``) with the ``conflict`` and ``alignment`` probes: inter-task
    gradient cosine and magnitude ratio (MTL) against intra-task sub-batch and class-group
    cosine (STL and MTL).
``corruptions``
    STL per task and MTL (``sum``), saving each task's validation-selected model
    (``save_selected_models``); the analysis freezes each selected encoder, fits a linear
    probe per task on clean training features and evaluates it on the test images under
    every corruption of :mod:`mtlens.data.corruptions` at severities 1..5.

Runs of the non-probe experiments set ``probes: []`` so they cost only training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import pandas as pd

from mtlens.errors import ConfigError
from mtlens.settings import Setting
from mtlens.store import RunStore
from mtlens.sweep.executors import run_configs
from mtlens.training.config import RunConfig, load_configured_setting, parse_config, resolve_config

OPTIMIZER_VARIANTS: dict[str, dict[str, Any]] = {
    "adam": {"optimizer": "adam", "momentum": 0.0},
    "sgd": {"optimizer": "sgd", "momentum": 0.0},
    "sgd_momentum": {"optimizer": "sgd", "momentum": 0.9},
}
"""The optimizers compared: the config keys each one sets."""

OPTIMIZER_LRS: dict[str, tuple[float, ...]] = {
    "adam": (1e-3, 3e-3),
    "sgd": (3e-2, 1e-1),
    "sgd_momentum": (3e-3, 1e-2),
}
"""Default learning-rate grid per optimizer (SGD with momentum 0.9 takes ~10x larger effective
steps than plain SGD at the same lr); the analysis selects from it by validation."""

OPTIMIZER_METHODS = ("sum", "uw")
"""Default methods of the optimizer experiment: linear scalarization and uncertainty weighting."""

LOSS_SCALES = (1e-3, 1e-1, 1.0, 1e1, 1e3)
"""Default scales ``c`` of the loss-scale experiment (every two orders of magnitude; ``scales`` for more)."""

LOSS_SCALE_LRS: dict[str, float] = {"adam": 1e-3, "sgd": 3e-2}
"""Learning rates of the loss-scale experiment (tuned at ``c = 1`` on the embedded settings)."""

ALIGNMENT_PROBES = ["conflict", "alignment"]
"""Probes of the alignment experiment (quantities in :mod:`mtlens.probes.names`)."""

EXPERIMENT_SEEDS = 2
"""Default number of seeds of an experiment (``mtlens study --experiment``)."""

FIXED_KEYS = ("tasks", "seed", "method", "optimizer", "momentum", "task_loss_scales", "probes")
"""Keys an experiment sets itself (a base config must leave them out)."""


@dataclass(frozen=True)
class ExperimentPlan:
    """The runs of one experiment on one setting, and one manifest row per run."""

    name: str
    setting: str
    configs: list[RunConfig]
    manifest: pd.DataFrame

    @property
    def table_name(self) -> str:
        return manifest_table_name(self.name, self.setting)


def manifest_table_name(experiment: str, setting: str) -> str:
    """The store table holding an experiment's manifest."""
    return f"experiment-{experiment}-{setting}"


def _plan(name: str, base: dict[str, Any], setting: Setting, runs: list[tuple[dict[str, Any], dict[str, Any]]]
          ) -> ExperimentPlan:
    """Validate and resolve ``(config overrides, labels)`` pairs on top of ``base``."""
    fixed = sorted(set(FIXED_KEYS) & set(base))
    if fixed:
        raise ConfigError(f"{', '.join(fixed)}: set by the {name} experiment itself; remove from the base config")
    configs, records = [], []
    for overrides, labels in runs:
        config = resolve_config(parse_config({**base, **overrides}), setting)
        configs.append(config)
        records.append({"run_id": config.run_id, "experiment": name, "setting": config.setting,
                        "mode": config.mode, "seed": config.seed, "method": config.method, "lr": config.lr,
                        "task": config.tasks[0] if config.mode == "stl" else "", **labels})
    return ExperimentPlan(name, setting.name, configs, pd.DataFrame.from_records(records))


def _stl_and_mtl(setting: Setting, seeds: Sequence[int], keys: dict[str, Any]
                 ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """STL per task and MTL (``sum``) per seed, each with the config ``keys``."""
    runs = []
    for seed in seeds:
        for task in setting.task_names:
            runs.append(({"tasks": [task], "seed": seed, "method": "sum", **keys}, {}))
        runs.append(({"seed": seed, "method": "sum", **keys}, {}))
    return runs


def optimizers_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int],
                          methods: Sequence[str] = OPTIMIZER_METHODS,
                          lrs: dict[str, Sequence[float]] | None = None) -> ExperimentPlan:
    """MTL runs: for each seed, optimizer of :data:`OPTIMIZER_VARIANTS`, its lrs and each method."""
    if "lr" in base:
        raise ConfigError("lr: the optimizers experiment uses a learning-rate grid per optimizer; remove lr")
    grid = {**OPTIMIZER_LRS, **(lrs or {})}
    unknown = sorted(set(grid) - set(OPTIMIZER_VARIANTS))
    if unknown:
        raise ConfigError(f"lrs: unknown optimizer(s) {unknown}; valid: {', '.join(OPTIMIZER_VARIANTS)}")
    runs = []
    for seed in seeds:
        for variant, keys in OPTIMIZER_VARIANTS.items():
            for lr in grid[variant]:
                for method in methods:
                    runs.append(({**keys, "lr": lr, "seed": seed, "method": method, "probes": []},
                                 {"optimizer": variant}))
    return _plan("optimizers", base, setting, runs)


def loss_scale_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int],
                          scales: Sequence[float] = LOSS_SCALES, scaled_task: str | None = None,
                          lrs: dict[str, float] | None = None) -> ExperimentPlan:
    """MTL (``sum``) runs for each seed, optimizer (Adam, SGD) and scale ``c`` of ``scaled_task``
    (default: the setting's last task)."""
    if "lr" in base:
        raise ConfigError("lr: the loss-scale experiment sets one lr per optimizer; remove lr")
    task = scaled_task or setting.task_names[-1]
    if task not in setting.task_names:
        raise ConfigError(f"scaled_task: {task!r} is not a task of {setting.name!r} ({setting.task_names})")
    if not scales or any(not c > 0 for c in scales):
        raise ConfigError(f"scales: need positive loss scales, got {list(scales)}")
    rates = {**LOSS_SCALE_LRS, **(lrs or {})}
    runs = []
    for seed in seeds:
        for variant in ("adam", "sgd"):
            for scale in scales:
                runs.append(({**OPTIMIZER_VARIANTS[variant], "lr": rates[variant], "seed": seed, "method": "sum",
                              "task_loss_scales": {task: float(scale)}, "probes": []},
                             {"optimizer": variant, "scale": float(scale), "scaled_task": task}))
    return _plan("loss-scale", base, setting, runs)


def alignment_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int]) -> ExperimentPlan:
    """STL per task and MTL (``sum``) per seed, with the conflict and alignment probes on."""
    return _plan("alignment", base, setting, _stl_and_mtl(setting, seeds, {"probes": list(ALIGNMENT_PROBES)}))


def corruptions_experiment(base: dict[str, Any], setting: Setting, seeds: Sequence[int]) -> ExperimentPlan:
    """STL per task and MTL (``sum``) per seed on an image setting (inputs ``(N, C, H, W)``)."""
    from mtlens.analysis.corruption_transfer import check_image_setting

    check_image_setting(setting)
    return _plan("corruptions", base, setting, _stl_and_mtl(setting, seeds, {"probes": [], "save_selected_models": True}))


EXPERIMENTS: dict[str, Callable[..., ExperimentPlan]] = {
    "optimizers": optimizers_experiment,
    "loss-scale": loss_scale_experiment,
    "alignment": alignment_experiment,
    "corruptions": corruptions_experiment,
}
"""Every experiment by name."""


def experiment_plan(name: str, base: dict[str, Any], seeds: Sequence[int], setting: Setting | None = None,
                    **options: Any) -> ExperimentPlan:
    """The plan of experiment ``name`` for the setting of ``base`` (validated before any training)."""
    if name not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}")
    setting = setting or load_configured_setting(parse_config({**base, "probes": []}))
    return EXPERIMENTS[name](base, setting, list(seeds), **options)


def run_experiment(plan: ExperimentPlan, store: RunStore, setting: Setting | None = None,
                   progress: bool = True) -> pd.DataFrame:
    """Store the manifest, train the plan's runs, then store the experiment's analysis tables.

    Returns :func:`~mtlens.sweep.study.run_configs`' table (``run_id, state, message``).
    """
    store.write_table(plan.table_name, plan.manifest)
    results = run_configs(plan.configs, store, progress=progress)
    setting = setting or load_configured_setting(plan.configs[0])
    if plan.name == "loss-scale":
        from mtlens.analysis.adam_invariance import setting_invariance

        scaled = plan.manifest["scaled_task"].iloc[0]
        lrs = plan.manifest.groupby("optimizer")["lr"].first().to_dict()
        table = setting_invariance(setting, plan.configs[0], scaled, sorted(plan.manifest["scale"].unique()), lrs)
        store.write_table(f"adam_invariance-{plan.setting}", table)
    elif plan.name == "corruptions":
        from mtlens.analysis.corruption_transfer import corruption_accuracy

        accuracy = corruption_accuracy(store, plan.manifest, setting, device=plan.configs[0].device)
        store.write_table(f"corruptions-{plan.setting}", accuracy)
    return results
