"""The trainer: STL and MTL under identical steps and optimizer; checkpoints and resume."""

from mtlens.training.config import ConfigError, RunConfig, parse_config, resolve_config
from mtlens.training.trainer import train_run

__all__ = ["ConfigError", "RunConfig", "parse_config", "resolve_config", "train_run"]
