"""Studies and sweeps: which runs to train, grids, selection by validation, and executors."""

from mtlens.sweep.executors import Executor, LocalExecutor, SerialExecutor, make_executor, run_configs
from mtlens.sweep.grid import PAPER_GRID, grid_points, load_grid
from mtlens.sweep.selection import SelectionCriterion
from mtlens.sweep.study import study_configs
from mtlens.sweep.sweep import SweepResult, run_sweep

__all__ = ["Executor", "LocalExecutor", "PAPER_GRID", "SelectionCriterion", "SerialExecutor", "SweepResult",
           "grid_points", "load_grid", "make_executor", "run_configs", "run_sweep", "study_configs"]
