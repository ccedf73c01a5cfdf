"""The optimizers experiment (Elich et al. 2023): does the optimizer matter more than the MTL method?

MTL with Adam, SGD and SGD with momentum 0.9, each over its own small learning-rate grid
(:data:`OPTIMIZER_LRS`), under every method in ``methods`` (default: linear scalarization ``sum``
and uncertainty weighting ``uw``).  The analysis (:func:`mtlens.analysis.assumptions.optimizer_table`)
picks each (optimizer, method)'s learning rate by validation and tabulates test performance.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from annotated_types import MinLen

from mtlens.analysis.assumptions import optimizer_table
from mtlens.errors import ConfigError
from mtlens.experiments.base import Experiment, ExperimentPlan, plan_runs, register_experiment
from mtlens.registry import PositiveNumber
from mtlens.render import table_html
from mtlens.settings import Setting
from mtlens.store import RunStore

OptimizerVariant = Literal["adam", "sgd", "sgd_momentum"]
"""The optimizers the experiment compares (the keys of :data:`OPTIMIZER_VARIANTS`)."""

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


def optimizers_experiment(
    base: dict[str, Any],
    setting: Setting,
    seeds: Sequence[int],
    methods: Annotated[Sequence[str], MinLen(1)] = OPTIMIZER_METHODS,
    lrs: dict[OptimizerVariant, Sequence[PositiveNumber]] | None = None,
) -> ExperimentPlan:
    """MTL runs: for each seed, optimizer of :data:`OPTIMIZER_VARIANTS`, its lrs and each method."""
    if "lr" in base:
        raise ConfigError("lr: the optimizers experiment uses a learning-rate grid per optimizer; remove lr")
    grid: dict[str, Sequence[float]] = {**OPTIMIZER_LRS, **{str(k): v for k, v in (lrs or {}).items()}}
    runs = []
    for seed in seeds:
        for variant, keys in OPTIMIZER_VARIANTS.items():
            for lr in grid[variant]:
                for method in methods:
                    runs.append(
                        ({**keys, "lr": lr, "seed": seed, "method": method, "probes": []}, {"optimizer": variant})
                    )
    return plan_runs("optimizers", base, setting, runs)


def optimizers_section(
    store: RunStore, index: pd.DataFrame, manifest: pd.DataFrame, rows: pd.DataFrame, out_dir: Path, setting: str
) -> str:
    selected, grid = optimizer_table(manifest, rows, store.task_info())
    if selected.empty:
        return "<p>No finished runs of the optimizer experiment yet.</p>"
    body = table_html(
        selected,
        out_dir,
        f"optimizers_{setting}",
        "MTL test performance (selection metric, at each run's validation-selected checkpoint) per "
        "optimizer and method, at the learning rate with the best mean validation value over tasks "
        "and seeds; mean and std over seeds; average = mean over tasks. Descriptive, no test.",
    )
    body += table_html(
        grid,
        out_dir,
        f"optimizers_grid_{setting}",
        "Every learning rate of the grid: mean validation and test value over tasks and seeds. Descriptive, no test.",
    )
    return body


register_experiment(
    Experiment(
        "optimizers",
        "Assumptions: optimizers in MTL",
        optimizers_experiment,
        optimizers_section,
        rerun_keeps=("lr", "method"),  # a rerun with other learning rates or methods widens the grid
    )
)
