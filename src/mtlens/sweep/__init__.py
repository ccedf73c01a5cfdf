"""Studies and sweeps: which runs to train, and executors that train them."""

from mtlens.sweep.study import run_configs, study_configs

__all__ = ["run_configs", "study_configs"]
