"""mtlens: why multi-task learning helps some tasks and hurts others.

The public API in one place::

    from mtlens import Task, classification_task, register_setting, Setting, RunConfig, train_run, RunStore
    from mtlens import Recorder, RecorderProbes  # record and probe your own training loop
    from mtlens import RecordedRunFinishedError  # opening a run that is complete (Recorder.done says so first)
    from mtlens import RunLockedError  # opening (or Recorder.done of) a run another process is training
    from mtlens import study, load  # train a study / load a store: the report's tables and figures in Python
    from mtlens import BatchStream, evaluate_task, train_eval_rows, probe_steps  # helpers for your own loop

The names are imported on first use (PEP 562 ``__getattr__``), so that ``import mtlens.cli`` (and
``mtlens --help``) does not pay for torch, pandas and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mtlens.models import MultiTaskModel, build_model
    from mtlens.report.results import Chart, StudyResults, load, study
    from mtlens.settings import Defaults, Setting, Split, TaskData, available_settings, load_setting, register_setting
    from mtlens.store import RunLockedError, RunStore
    from mtlens.tasks import Task, binary_task, classification_task, regression_task
    from mtlens.training import (
        BatchStream,
        ConfigError,
        RecordedRunFinishedError,
        Recorder,
        RecorderProbes,
        RunConfig,
        evaluate_task,
        evaluate_tasks,
        parse_config,
        train_eval_rows,
        train_run,
    )
    from mtlens.training.probe_runner import probe_steps

__version__ = "0.1.0"

# public name -> the module it comes from (the same names as the TYPE_CHECKING imports above)
_SOURCES = {
    "MultiTaskModel": "mtlens.models",
    "build_model": "mtlens.models",
    "Defaults": "mtlens.settings",
    "Setting": "mtlens.settings",
    "Split": "mtlens.settings",
    "TaskData": "mtlens.settings",
    "available_settings": "mtlens.settings",
    "load_setting": "mtlens.settings",
    "register_setting": "mtlens.settings",
    "RunLockedError": "mtlens.store",
    "RunStore": "mtlens.store",
    "Task": "mtlens.tasks",
    "binary_task": "mtlens.tasks",
    "classification_task": "mtlens.tasks",
    "regression_task": "mtlens.tasks",
    "BatchStream": "mtlens.training",
    "ConfigError": "mtlens.training",
    "evaluate_task": "mtlens.training",
    "train_eval_rows": "mtlens.training",
    "RecordedRunFinishedError": "mtlens.training",
    "Recorder": "mtlens.training",
    "RecorderProbes": "mtlens.training",
    "RunConfig": "mtlens.training",
    "parse_config": "mtlens.training",
    "train_run": "mtlens.training",
    "evaluate_tasks": "mtlens.training",
    "probe_steps": "mtlens.training.probe_runner",
    "Chart": "mtlens.report.results",
    "StudyResults": "mtlens.report.results",
    "load": "mtlens.report.results",
    "study": "mtlens.report.results",
}

__all__ = [
    "BatchStream",
    "Chart",
    "ConfigError",
    "Defaults",
    "MultiTaskModel",
    "RecordedRunFinishedError",
    "Recorder",
    "RecorderProbes",
    "RunConfig",
    "RunLockedError",
    "RunStore",
    "Setting",
    "Split",
    "StudyResults",
    "Task",
    "TaskData",
    "available_settings",
    "binary_task",
    "build_model",
    "classification_task",
    "evaluate_task",
    "evaluate_tasks",
    "load",
    "load_setting",
    "parse_config",
    "probe_steps",
    "regression_task",
    "register_setting",
    "study",
    "train_eval_rows",
    "train_run",
]


def __getattr__(name: str) -> Any:
    """``mtlens.<name>``: the public name, imported from its module on first access and cached here."""
    if name not in _SOURCES:
        raise AttributeError(f"module 'mtlens' has no attribute {name!r}")
    value = getattr(importlib.import_module(_SOURCES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_SOURCES])
