"""A Hugging Face ``transformers`` callback that records a ``Trainer``'s training with a
:class:`~mtlens.training.recorder.Recorder` (extra ``hf``: ``transformers>=4.42``, the first with
``on_optimizer_step``)::

    with Recorder(store, "my_setting", ["a", "b"], seed=0, steps_per_epoch=steps) as rec:
        Trainer(
            model,
            args,
            train_dataset=train,
            eval_dataset={"train": sub, "val": val, "test": test},
            compute_metrics=per_task_metrics,
            callbacks=[RecorderTrainerCallback(rec)],
        ).train()

``compute_metrics`` returns ``{"<task>/<metric>": value}``; the ``Trainer`` reports them for the
evaluation set ``<split>`` as ``eval_<split>_<task>/<metric>`` (so name the evaluation sets by the
recorder's splits, ``train``, ``val`` and ``test``: the split is read up to the first ``_``, and a set
named otherwise, e.g. ``train_subset``, is not recorded and the recorder warns), and the callback records them at
``state.global_step`` (:meth:`~mtlens.training.recorder.Recorder.log_metrics`).  After every
optimizer step it calls ``rec.step(step)`` (probes when due; ``rec.step(0)`` when training
starts), from ``on_optimizer_step``: the ``Trainer`` calls it right after ``optimizer.step()``,
before it clears the gradients and counts the step (``step = global_step + 1``, the step
``on_step_end`` then reports), so the probes see the updated parameters and the gradients the
optimizer used (the conflict probe's ``update_cosine``/``update_norm``), as in a plain loop.  A
training resumed from a ``Trainer`` checkpoint resumes the
recorded run at its step; rows are written before the ``Trainer`` saves a checkpoint (at the step or
epoch end, and after the evaluation, whose save is due; ``on_save`` comes after the checkpoint is
written, so a kill in between would lose rows the checkpoint is past).  The ``with`` block ends
the run: finished, or failed on an exception; a non-finite loss ends it diverged (the Recorder's
rule) and stops the ``Trainer``.
"""

from __future__ import annotations

from typing import Any

try:
    from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
except ImportError as err:
    raise ModuleNotFoundError(
        f"mtlens.integrations.huggingface needs transformers ({err.name} is missing): pip install 'mtlens[hf]'",
        name=err.name,
    ) from None

from mtlens.training.recorder import Recorder


class RecorderTrainerCallback(TrainerCallback):
    """Feeds ``recorder`` from a Hugging Face ``Trainer``; see the module docstring."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.global_step > 0:
            self.recorder.resume_from(state.global_step)
        else:
            self.recorder.step(0)

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.recorder.step(state.global_step + 1)  # the step this optimizer step completes

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        flat = {}
        for key, value in (metrics or {}).items():
            split, _, rest = key.removeprefix("eval_").partition("_")
            flat[f"{split}/{rest}" if key.startswith("eval_") and rest else key] = value
        self.recorder.log_metrics(state.global_step, flat)
        if self.recorder.diverged is not None:  # a non-finite loss ended the run diverged: stop training
            control.should_training_stop = True
        elif control.should_save or (args.save_strategy == "best" and state.global_step > 0):
            self.recorder.flush()  # the Trainer writes its checkpoint next

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        if control.should_save:  # rows (probes) before the checkpoint the Trainer writes after this hook
            self.recorder.flush()

    def on_epoch_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if control.should_save:
            self.recorder.flush()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        self.recorder.flush()
