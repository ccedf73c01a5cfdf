"""Hyperparameter grids: which config values a sweep tries.

A grid file is YAML mapping run-config keys to lists of values; the sweep trains every
combination (the Cartesian product, in file order: the last key varies fastest)::

    lr: [1.0e-3, 1.0e-4]
    batch_size: [32, 128]
    optimizer: [adam]

The default is the grid of Mueller et al.: :data:`PAPER_GRID`.  ``tasks``, ``seed`` and
``method`` are set by the sweep itself and cannot be swept.  Every grid point is
validated against the base config with the run-config validator before any run starts.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from mtlens.errors import ConfigError
from mtlens.training.config import RUN_ENVIRONMENT_KEYS, RunConfig, load_yaml_file

Grid = dict[str, list[Any]]

PAPER_GRID: Grid = {
    "lr": [1e-1, 5e-2, 1e-2, 5e-3, 1e-3, 5e-4, 1e-4, 5e-5, 1e-5],
    "batch_size": [4, 16, 32, 64, 128, 256],
}
"""Learning rate x batch size of the paper's sweep (54 points)."""

SWEEP_OWNED_KEYS = ("tasks", "seed", "method")
"""Keys the sweep sets itself (one group per STL task / MTL method, one run per seed)."""


def check_grid(grid: Any, source: str = "grid") -> Grid:
    """Return ``grid`` if it maps run-config keys (not the sweep's own, nor :data:`RUN_ENVIRONMENT_KEYS`) to
    non-empty lists of distinct values; else raise naming the bad key."""
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{source}: expected a non-empty mapping of config keys to lists of values")
    for key, values in grid.items():
        if key in SWEEP_OWNED_KEYS:
            raise ConfigError(f"{source}: {key}: set by the sweep itself and cannot be swept")
        if key not in RunConfig.model_fields:
            raise ConfigError(f"{source}: {key}: unknown key; valid keys are: {', '.join(RunConfig.model_fields)}")
        if key in RUN_ENVIRONMENT_KEYS:
            raise ConfigError(
                f"{source}: {key}: says where a run executes, not what it computes (outside the run id): every "
                "point would be one run; set it once with its flag or --set"
            )
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: {key}: expected a non-empty list of values, got {values!r}")
        texts = [json.dumps(v, sort_keys=True, default=str) for v in values]
        if repeated := sorted({t for t in texts if texts.count(t) > 1}):
            raise ConfigError(f"{source}: {key}: value(s) {', '.join(repeated)} given more than once")
    return {key: list(values) for key, values in grid.items()}


def load_grid(path: str | Path | None) -> Grid:
    """The grid in the YAML file ``path``, or :data:`PAPER_GRID` when ``path`` is ``None``."""
    if path is None:
        return {key: list(values) for key, values in PAPER_GRID.items()}
    return check_grid(load_yaml_file(path, "--grid"), f"--grid {path}")


def grid_points(grid: Grid) -> list[dict[str, Any]]:
    """The Cartesian product of ``grid`` as a list of ``{key: value}``, the last key varying fastest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
