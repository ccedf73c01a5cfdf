"""Studies and sweeps: which runs to train, grids, selection by validation, and executors."""

from mtlens.orchestration.backends import make_executor
from mtlens.orchestration.executors import Executor, LocalExecutor, SerialExecutor, run_configs
from mtlens.orchestration.grid import PAPER_GRID, grid_points, load_grid
from mtlens.orchestration.selection import SelectionCriterion
from mtlens.orchestration.study import study_configs
from mtlens.orchestration.sweep import SweepResult, run_sweep

__all__ = [
    "Executor",
    "LocalExecutor",
    "PAPER_GRID",
    "SelectionCriterion",
    "SerialExecutor",
    "SweepResult",
    "grid_points",
    "load_grid",
    "make_executor",
    "run_configs",
    "run_sweep",
    "study_configs",
]
