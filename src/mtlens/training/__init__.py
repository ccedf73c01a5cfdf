"""The trainer (STL and MTL under identical steps and optimizer; checkpoints and resume) and the recorder
(the same rows from a user's own loop).

What a user's own training loop needs is public here: :class:`Recorder` and :class:`RecorderProbes` to
record it (:class:`RecordedRunFinishedError` for a run complete already), :class:`BatchStream` for the
trainer's batches (a task's batches depend only on the seed, so an STL and an MTL loop see the same ones),
and :func:`evaluate_task` / :func:`train_eval_rows` for the trainer's evaluation rows."""

from mtlens.training.batches import BatchStream, SourceBatch
from mtlens.training.config import ConfigError, RunConfig, parse_config, resolve_config
from mtlens.training.evaluate import evaluate_task, evaluate_tasks, train_eval_rows
from mtlens.training.recorder import RecordedRunFinishedError, Recorder, RecorderProbes
from mtlens.training.trainer import train_run

__all__ = [
    "BatchStream",
    "ConfigError",
    "RecordedRunFinishedError",
    "Recorder",
    "RecorderProbes",
    "RunConfig",
    "SourceBatch",
    "evaluate_task",
    "evaluate_tasks",
    "parse_config",
    "resolve_config",
    "train_eval_rows",
    "train_run",
]
