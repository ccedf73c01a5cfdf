"""The trainer (STL and MTL under identical steps and optimizer; checkpoints and resume) and the recorder
(the same rows from a user's own loop)."""

from mtlens.training.config import ConfigError, RunConfig, parse_config, resolve_config
from mtlens.training.recorder import Recorder, RecorderProbes
from mtlens.training.trainer import train_run

__all__ = ["ConfigError", "Recorder", "RecorderProbes", "RunConfig", "parse_config", "resolve_config", "train_run"]
