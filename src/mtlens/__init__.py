"""mtlens: why multi-task learning helps some tasks and hurts others.

The public API in one place::

    from mtlens import Task, classification_task, register_setting, Setting, RunConfig, train_run, RunStore
    from mtlens import Recorder, RecorderProbes   # record and probe your own training loop
"""

from mtlens.models import MultiTaskModel, build_model
from mtlens.settings import Defaults, Setting, Split, TaskData, available_settings, load_setting, register_setting
from mtlens.store import RunStore
from mtlens.tasks import Task, binary_task, classification_task, regression_task
from mtlens.training import ConfigError, Recorder, RecorderProbes, RunConfig, parse_config, train_run

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "Defaults", "MultiTaskModel", "Recorder", "RecorderProbes", "RunConfig", "RunStore", "Setting", "Split", "Task", "TaskData",
    "available_settings", "binary_task", "build_model", "classification_task", "load_setting", "parse_config",
    "regression_task", "register_setting", "train_run",
]
