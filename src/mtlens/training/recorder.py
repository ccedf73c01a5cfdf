"""The recorder: the trainer's trajectory rows, written from a training loop you wrote.

::

    with Recorder(
        store,
        setting="my_setting",
        tasks=["a", "b"],
        seed=0,
        hyperparameters={"lr": 1e-3, "batch_size": 32},
        steps_per_epoch=100,
    ) as rec:
        for step in range(1, total + 1):
            ...  # your forward, backward, optimizer step
            rec.step(step)  # runs the probes scheduled at this step
            if step % 100 == 0:
                rec.log(step, "train", {"a": train_loss_a, "b": train_loss_b})
                rec.log(step, "val", {"a": {"loss": ..., "error": ...}, "b": {...}})
                rec.log(step, "test", {...})

**Rows.**  ``rec.log(step, split, values)`` records ``{task: {metric: value}}`` (a bare number is
the ``loss``) as rows ``task, quantity="<split>/<metric>", value`` at ``step`` with
``epoch = step / steps_per_epoch`` (or the ``epoch`` given).  They are written through the
trainer's own :class:`~mtlens.training.handle.RunHandle`, so a recorded run has the trainer's
columns, quantities and status, and ``mtlens report`` reads it unchanged.  The report's
analyses read, per task, ``train/loss`` (measured on a fixed training subset, as the trainer
does: :func:`~mtlens.training.evaluate.train_eval_rows`), ``val/<metric>`` and ``test/<metric>``
at the same steps, the validation ``selection_metric`` choosing each task's checkpoint.

**Identity.**  The run id is :func:`~mtlens.training.config.make_run_id` of the description
(setting, tasks, method, seed, ``hyperparameters``, probe settings, ``steps_per_epoch``), so
reopening the same description reopens the same run and a different one never mixes rows.  The
stored config is the description plus ``"source": "recorder"``.

**Buffering, checkpoints and resume.**  Rows are buffered per step by the run's handle
(:meth:`~mtlens.training.handle.RunHandle.record`) and written (one part per step, atomically) at
:meth:`Recorder.flush`, :meth:`Recorder.checkpoint`, when the run fails, and whenever 64 steps are
pending; when the run ends normally the buffered rows go straight into its merged trajectory (one
file written: the run's whole fixed cost is a few small file writes).
:meth:`Recorder.checkpoint` saves your state dict (plus torch's CPU random state) after flushing;
:meth:`Recorder.restore` loads it and discards every row recorded after its step.  If you
checkpoint yourself, call :meth:`Recorder.flush` when you do and :meth:`Recorder.resume_from` with
the step you resume from.  Rows are keyed by ``(step, task, quantity)``: recording a value again
replaces it.  Rows of later steps left by an interrupted session are discarded after the restore
point the session resumes from (:meth:`Recorder.restore`, :meth:`Recorder.resume_from`), or, in a
session that does not resume, after the first step it records -- once it records a later step,
writes (:meth:`Recorder.flush`, :meth:`Recorder.checkpoint`) or finishes, so an evaluation logged
at step 0 before a resume (a library's ``validate``/``evaluate`` first) discards nothing.  A
resumed run never has duplicated rows.

**Files.**  The run's :class:`~mtlens.training.handle.RunHandle` owns its files: opening locks the
run, removes what interrupted sessions left, verifies every file and heals damage (a finished run
whose rows cannot be trusted is reset, so your loop trains it again from scratch and
:meth:`Recorder.restore` returns ``None``; a checkpoint that does not verify is never restored).

**State.**  The run is ``running`` while open, ``finished`` (rows merged into its trajectory) when
the ``with`` block ends normally or :meth:`Recorder.close` is called, ``failed`` (rows kept,
resumable) when it ends with an exception, and ``diverged`` with ``close("diverged", message)``.
A non-finite loss (a ``<split>/loss`` value: NaN or infinite) ends the run ``diverged`` at once, as
the trainer does (:meth:`~mtlens.training.handle.RunHandle.diverge`): the rows of that step and
later ones are not kept, later calls record nothing (:attr:`Recorder.diverged` says at which step it
diverged, so a loop can stop), and the run never enters an analysis of finished runs.
A finished or diverged run cannot be reopened (:class:`RecordedRunFinishedError`); :meth:`Recorder.done`
says so beforehand, so that a loop over several runs, run again after a crash, skips the complete runs and
resumes the others.

**Probes.**  With ``probes=`` (:class:`RecorderProbes`), :meth:`Recorder.step` runs the probes on
your model at the steps of their schedule (call it after the optimizer step, and once with step 0
before training), with the trainer's guarantees: parameters, buffers, gradients, optimizer state
and torch's random streams are left as they were (:func:`~mtlens.probes.measure_probes`).
"""

from __future__ import annotations

import json
import math
import operator
import os
import re
import traceback
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Strict
from torch import nn

from mtlens.errors import MtlensError
from mtlens.gradients import flatten
from mtlens.probes import PROBES, ProbeContext, measure_probes, validate_probe_options
from mtlens.probes.loss_model import (
    PREDICTIVE_PROBES,
    Batch,
    LossModel,
    ModelOutputs,
    PerExampleLosses,
    batch_size_of,
    loss_task,
)
from mtlens.quantities import check_task_name
from mtlens.registry import PositiveCount, Seed, check_name, check_value
from mtlens.store import RunState, RunStore
from mtlens.tasks import Task
from mtlens.training.config import make_run_id
from mtlens.training.handle import Checkpoint, RunHandle, RunIdentity, task_info

RESERVED_SPLITS = ("probe", "method")
"""Quantity prefixes the recorder writes itself (probe rows; the trainer's method diagnostics)."""

DESCRIPTION_KEYS = (
    "setting",
    "tasks",
    "method",
    "seed",
    "source",
    "steps_per_epoch",
    "probes",
    "probe_options",
    "probe_sample_size",
    "probe_steps",
    "probe_batch_size",
)
"""Config keys the recorder writes itself (hyperparameters may not use them)."""

CLOSING_STATES = (RunState.FINISHED, RunState.DIVERGED, RunState.FAILED)
"""The states :meth:`Recorder.close` ends a run in."""


DATALOADER_SUFFIX = re.compile(r"/dataloader_idx_\d+$")
"""The suffix Lightning appends to a key logged in a validation loop over several loaders."""


def _is_boolean(value: Any) -> bool:
    """Whether ``value`` is a boolean (Python's, NumPy's or a boolean tensor): never taken for a number."""
    return isinstance(value, bool | np.bool_) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool)


def _integer(value: Any) -> Any:
    """``value`` as an ``int`` if it is an integer other than a boolean -- a NumPy integer or an integer tensor
    of one element too (``operator.index``) -- else ``value`` itself, for the caller's check to refuse; a
    float is never rounded (``4.0`` computed by a loop is a bug in the loop)."""
    if _is_boolean(value):
        return value
    try:
        return operator.index(value)
    except TypeError:
        return value


def _step(value: Any, name: str = "step") -> int:
    """``value`` as a step: an integer >= 0 (:func:`_integer`), else a one-line ValueError naming ``name``."""
    step = _integer(value)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(
            f"{name}={value!r}: expected an integer step >= 0 (an int, a NumPy integer or an integer tensor)"
        )
    return step


class UnrecordedMetricsWarning(UserWarning):
    """Metrics handed to the recorder were not recorded (keys it cannot read, or a run with no rows)."""


class RecordedRunFinishedError(MtlensError):
    """The described run is already finished (or diverged) in the store."""


@dataclass(frozen=True)
class RecorderProbes:
    """Probes on a user's model; see :mod:`mtlens.probes.loss_model` for the first four arguments.

    ``steps`` is the schedule (e.g. :func:`mtlens.training.probe_runner.probe_steps`), any iterable of integers
    >= 0 (a generator too): read once, when the probes are made, into a sorted tuple of ints; ``probes`` the
    registered probes to run and ``options`` their options (``{probe: {option: value}}``, as a
    config's ``probe_options``); ``batch_size`` is the training batch size (the alignment probe's
    batches).  ``outputs(batch) -> {task: outputs}`` (e.g. logits) makes the probes of
    :data:`~mtlens.probes.loss_model.PREDICTIVE_PROBES` (``fisher``) available; they also need the
    recorder's tasks as :class:`~mtlens.tasks.Task` objects whose ``loss`` is the negative
    log-likelihood of those outputs and ``sample_labels`` draws from it (e.g.
    ``classification_task(name, n_classes)`` for softmax logits).
    """

    model: nn.Module
    shared: Iterable[nn.Parameter | str]
    losses: PerExampleLosses
    sample: Batch
    steps: Iterable[int]
    probes: Sequence[str] = ("coherence", "sharpness_sam", "conflict", "alignment")
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    batch_size: int = 32
    outputs: ModelOutputs | None = None

    def __post_init__(self) -> None:
        # read here, once: the run's description and the recorder's schedule both read it later
        object.__setattr__(self, "steps", tuple(sorted({_step(step, "steps") for step in self.steps})))

    def validated_options(self) -> dict[str, dict[str, Any]]:
        """Every probe's options with its defaults filled in; raises naming a probe a user's model lacks."""
        if not self.probes or len(set(self.probes)) != len(self.probes):
            raise ValueError(
                f"probes {list(self.probes)} must be distinct registered probes; "
                f"registered: {', '.join(PROBES.names())}"
            )
        predictive = sorted(set(self.probes) & set(PREDICTIVE_PROBES))
        if predictive and self.outputs is None:
            raise ValueError(
                f"probes {predictive} need labels drawn from the model: pass outputs=(batch -> {{task: outputs}}, "
                "e.g. logits) to RecorderProbes and the tasks as Task objects with that likelihood "
                "(e.g. classification_task(name, n_classes))"
            )
        unknown = sorted(set(self.options) - set(self.probes))
        if unknown:
            raise ValueError(f"options given for probes {unknown} that are not run ({list(self.probes)})")
        return {name: validate_probe_options(name, self.options.get(name)) for name in self.probes}

    def description(self) -> dict[str, Any]:
        """The probe settings that go into the run's identity."""
        return {
            "probes": list(self.probes),
            "probe_options": self.validated_options(),
            "probe_sample_size": batch_size_of(self.sample),
            "probe_steps": list(self.steps),
            "probe_batch_size": self.batch_size,
        }


@dataclass
class _ProbeSetup:
    """The probes on the loss view (``model``, ``tasks``: losses as outputs) and those of
    :data:`~mtlens.probes.loss_model.PREDICTIVE_PROBES` on the predictive view (``predictive``,
    ``likelihoods``: the user's outputs and tasks)."""

    model: LossModel
    steps: set[int]
    tasks: list[Task]
    names: list[str]
    options: dict[str, dict[str, Any]]
    batch_size: int
    predictive: LossModel | None
    likelihoods: list[Task]
    predictive_names: list[str]


class Recorder:
    """Records a user's training loop as an mtlens run; see the module docstring.

    Args:
        store: the run store (or its directory).
        setting: the name of the problem the tasks come from (runs of one setting are compared).
        tasks: task names, or :class:`~mtlens.tasks.Task` objects (whose metric directions and
            selection metric then go into the store); one task is an STL run, several an MTL run.
        seed: the seed, an integer in ``[0, 2**63 - 1]`` (:data:`~mtlens.registry.Seed`); an MTL run and the
            STL runs of the same seed are paired.
        method: the MTL update method's name (``"sum"``: the plain sum of task losses).
        hyperparameters: anything else that defines the run (lr, optimizer, batch size, steps, ...);
            JSON values.  STL and MTL runs compared with each other must have the same ones.
        steps_per_epoch: an integer >= 1 that converts steps to epochs for the rows (else pass ``epoch=`` to
            :meth:`log`).
        lower_is_better: for task names, metric -> whether smaller is better (``loss`` always is;
            default for other metrics: larger is better, except ``error``).
        selection_metric: for task names, the validation metric choosing each task's checkpoint.
        probes: probes on the user's model (:class:`RecorderProbes`), or ``None``.
    """

    def __init__(
        self,
        store: RunStore | str | os.PathLike[str],
        setting: str,
        tasks: Sequence[str | Task],
        seed: Seed,
        method: str = "sum",
        hyperparameters: Mapping[str, Any] | None = None,
        steps_per_epoch: int | None = None,
        lower_is_better: Mapping[str, bool] | None = None,
        selection_metric: str = "loss",
        probes: RecorderProbes | None = None,
    ):
        if isinstance(tasks, str) or not isinstance(tasks, Sequence):
            one = f" (one task: [{tasks!r}])" if isinstance(tasks, str) else ""
            raise ValueError(f"tasks={tasks!r}: expected a list of task names or Task objects{one}")
        seed = _integer(seed)
        check_value("Recorder", "seed", seed, Annotated[Seed, Strict()])
        if steps_per_epoch is not None:
            steps_per_epoch = _integer(steps_per_epoch)
            check_value("Recorder", "steps_per_epoch", steps_per_epoch, Annotated[PositiveCount, Strict()])
        check_name("setting", setting)  # both are parts of the run id, the name of the run's directory
        check_name("method", method)
        self.store = store if isinstance(store, RunStore) else RunStore(store)
        names = [t.name if isinstance(t, Task) else t for t in tasks]
        for name in names:
            if not isinstance(name, str) or not name:
                check_task_name(name)  # refused; the characters of a name are checked once the run id is known
        if not names or len(set(names)) != len(names):
            raise ValueError(f"tasks {names}: expected one or more distinct task names")
        hyperparameters = dict(hyperparameters or {})
        clash = sorted(set(hyperparameters) & set(DESCRIPTION_KEYS))
        if clash:
            raise ValueError(f"hyperparameters {clash} clash with the recorder's own description keys")
        self.config: dict[str, Any] = {
            "setting": setting,
            "tasks": names,
            "method": method,
            "seed": int(seed),
            "source": "recorder",
            "steps_per_epoch": steps_per_epoch,
            **hyperparameters,
        }
        if probes is not None:
            self.config.update(probes.description())
        try:
            json.dumps(self.config)
        except TypeError as err:
            raise ValueError(f"hyperparameters must be JSON values (numbers, strings, lists, dicts): {err}") from None
        self.identity = RunIdentity(
            make_run_id(setting, names, method, int(seed), self.config), setting, tuple(names), method, int(seed)
        )
        self._check_task_names(names, probes is not None)
        self.task_info = self._task_info(tasks, lower_is_better or {}, selection_metric)
        self.steps_per_epoch = steps_per_epoch
        self.handle = RunHandle(self.store, self.identity, self.config, self.task_info)
        self._probes = self._probe_setup(probes, tasks)
        self._first_step: int | None = None
        self._restart: int | None = None  # the first step of a session that has not resumed (see _settle)
        self._last_step = 0
        self._diverged: int | None = None

    @property
    def diverged(self) -> int | None:
        """The step at which a non-finite loss ended the run ``diverged`` in this session, else ``None``."""
        return self._diverged

    @property
    def run_id(self) -> str:
        return self.identity.run_id

    def done(self) -> RunState | None:
        """The run's state if it is already complete in the store (``finished`` or ``diverged``: opening it
        raises :class:`RecordedRunFinishedError`), else ``None`` (a new run, a ``failed`` or ``interrupted``
        one, or the run this recorder has open).  A loop over several runs skips the complete ones with it, so
        that running it again after a crash trains only what is left::

            rec = Recorder(store, ...)
            if rec.done():
                continue
            with rec:
                ...

        A stored run is checked as :meth:`open` checks it (locked, verified, healed, then released): a
        complete run whose rows are damaged is reset and is ``None``, to be trained again.  So, as :meth:`open`
        does, it raises :class:`~mtlens.store.RunLockedError` (``from mtlens import RunLockedError``) while
        another process is training the run (or another recorder of it is open in this one): a loop sharing
        its store with other processes catches it to skip that run."""
        if self.handle.is_open or not self.store.run_dir(self.run_id).exists():
            return None
        done = self.handle.open()
        if done is None:
            self.handle.close()
        return done

    # -- opening and closing ---------------------------------------------------------------
    def open(self) -> Recorder:
        """Open the run (lock, clean, verify, heal: :meth:`RunHandle.open`); raise :class:`RecordedRunFinishedError`
        if it is already complete, :class:`~mtlens.store.RunLockedError` if another process is training it."""
        if self.handle.is_open:
            raise RuntimeError(f"recorder of run {self.run_id} is already open")
        done = self.handle.open()
        if done is not None:
            raise RecordedRunFinishedError(
                f"run {self.run_id} is already {done} in {self.store.root}; "
                "remove its directory to record it again, or change its description"
            )
        try:
            self._last_step = self.handle.opened_step
            self.handle.mark_running(self._last_step)
        except BaseException:
            self.handle.close()
            raise
        return self

    def close(self, state: str = RunState.FINISHED, message: str = "") -> None:
        """Write the pending rows and end the run as ``finished`` or ``diverged`` (rows merged), or
        ``failed`` (rows kept as parts so the run can resume).  Another ``state`` is refused before anything
        is written or closed."""
        if state not in CLOSING_STATES:
            raise ValueError(f"state must be one of {[s.value for s in CLOSING_STATES]}, got {state!r}")
        if not self.handle.is_open:
            return
        try:
            if self._diverged is not None:  # already ended diverged
                return
            if state == RunState.FAILED:
                self.handle.fail(self._last_step, message)
            else:
                self._settle()
                if not self.handle.has_rows:
                    warnings.warn(
                        f"run {self.run_id} ends {state} with no rows recorded: nothing of it can be analysed; "
                        "log '<split>/<task>/<metric>' values (rec.log or the callbacks' logged metrics)",
                        UnrecordedMetricsWarning,
                        stacklevel=3,
                    )
                self.handle.finish(RunState(state), self._last_step, message)
        finally:
            self.handle.close()

    def __enter__(self) -> Recorder:
        return self.open()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if error is None or self._diverged is not None:
            self.close(RunState.FINISHED)
        elif isinstance(error, KeyboardInterrupt):
            self.interrupt()
        else:
            self.close(RunState.FAILED, "".join(traceback.format_exception(kind, error, tb, limit=5)))

    def interrupt(self) -> None:
        """End this session interrupted (Ctrl-C, ``kill``): write the pending rows and release the run, which
        keeps its ``running`` status (the index shows it ``interrupted``) and resumes from its last
        checkpoint.  The ``with`` block does this on ``KeyboardInterrupt``; the Lightning callback when
        Lightning turns an interruption into ``SystemExit``."""
        if not self.handle.is_open:
            return
        try:
            if self._diverged is None:
                self.handle.flush()
        finally:
            self.handle.close()

    # -- rows ----------------------------------------------------------------------------
    def log(
        self, step: int, split: str, values: Mapping[str, Mapping[str, Any] | Any], epoch: float | None = None
    ) -> None:
        """Record ``values = {task: {metric: value}}`` (or ``{task: loss}``) as ``<split>/<metric>``
        rows at ``step`` (an integer >= 0); tensors are read with ``float()``, a boolean is refused."""
        step = _step(step)
        if not split or "/" in split or split in RESERVED_SPLITS:
            raise ValueError(
                f"split {split!r} must be a name without '/' other than {RESERVED_SPLITS} "
                "(the report reads 'train', 'val' and 'test')"
            )
        unknown = sorted(set(values) - set(self.identity.tasks))
        if unknown:
            raise KeyError(f"tasks {unknown} are not tasks of run {self.run_id} ({list(self.identity.tasks)})")
        rows = {}
        for task, metrics in values.items():
            items = metrics.items() if isinstance(metrics, Mapping) else [("loss", metrics)]
            for name, value in items:
                if _is_boolean(value):  # stored as 1.0 or 0.0, it would pass for a metric's value
                    raise ValueError(f"{split}/{task}/{name}={value!r}: expected a number, not a boolean")
                rows[(task, f"{split}/{name}")] = float(value)
        nonfinite = {
            f"{task}/{quantity}": value
            for (task, quantity), value in rows.items()
            if quantity == f"{split}/loss" and not math.isfinite(value)
        }
        self._add(step, rows, epoch, nonfinite)

    def log_metrics(self, step: int, metrics: Mapping[str, Any], epoch: float | None = None) -> int:
        """Record the entries of a flat metrics dict whose keys read ``<split>/<task>/<metric>`` for a
        task of this run (how the Lightning and Hugging Face callbacks pass logged metrics), also with
        Lightning's ``/dataloader_idx_<n>`` suffix (dropped, unless two loaders logged the same key: those
        are not recorded, with a warning); other keys are ignored.  An :class:`UnrecordedMetricsWarning`
        says so when nothing of a non-empty ``metrics`` was recorded.  Returns the number of values recorded."""
        step = _step(step)
        by_split: dict[str, dict[str, dict[str, Any]]] = {}
        sources: dict[str, list[str]] = {}
        for key, value in metrics.items():
            name = DATALOADER_SUFFIX.sub("", key)
            parts = name.split("/")
            if len(parts) == 3 and parts[1] in self.identity.tasks and parts[0] not in RESERVED_SPLITS:
                sources.setdefault(name, []).append(key)
                by_split.setdefault(parts[0], {}).setdefault(parts[1], {})[parts[2]] = value
        ambiguous = {name: keys for name, keys in sources.items() if len(keys) > 1}
        if ambiguous:
            warnings.warn(
                f"run {self.run_id}: not recording {sorted(ambiguous)} at step {step}: logged by several "
                f"loaders ({ambiguous}); name the split in the key (e.g. 'val/<task>/loss')",
                UnrecordedMetricsWarning,
                stacklevel=2,
            )
            for name in ambiguous:
                split, task, metric = name.split("/")
                del by_split[split][task][metric]
        recorded = sum(len(m) for values in by_split.values() for m in values.values())
        if metrics and not recorded:
            warnings.warn(
                f"run {self.run_id}: none of the metrics {sorted(metrics)} at step {step} was recorded; keys must "
                f"read '<split>/<task>/<metric>' with a task of {list(self.identity.tasks)}",
                UnrecordedMetricsWarning,
                stacklevel=2,
            )
        for split, values in by_split.items():
            values = {task: m for task, m in values.items() if m}
            if values:
                self.log(step, split, values, epoch)
        return recorded

    def _add(
        self,
        step: int,
        rows: Mapping[tuple[str, str], float],
        epoch: float | None,
        nonfinite: Mapping[str, float] | None = None,
    ) -> None:
        self._require_open()
        if self._diverged is not None:  # the run ended diverged: nothing after it is recorded
            return
        if nonfinite:
            self._diverged = step
            self.handle.diverge(step, nonfinite)
            warnings.warn(
                f"run {self.run_id} diverged: non-finite loss at step {step} ({dict(nonfinite)}); it is marked "
                "diverged, the rows of that step and later ones are not kept, and nothing more is recorded",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        if epoch is None:
            if self.steps_per_epoch is None:
                raise ValueError("pass epoch= to log, or steps_per_epoch= to the Recorder")
            epoch = step / self.steps_per_epoch
        if self._first_step is None:  # rows of later steps may be left from an interrupted session
            self._first_step = self._restart = step
        elif self._restart is not None and step > self._restart:
            self._settle()
        self.handle.record(step, float(epoch), rows)
        self._last_step = max(self._last_step, step)

    def flush(self) -> None:
        """Write every pending step's rows (one atomic part per step; :meth:`RunHandle.flush`)."""
        self._require_open()
        if self._diverged is None:
            self._settle()
            self.handle.flush()

    # -- checkpoints and resume -------------------------------------------------------------
    def checkpoint(self, step: int, state: Mapping[str, Any]) -> None:
        """Write the pending rows, then save ``state`` (your model and optimizer state dicts, ...) with
        torch's CPU random state as the run's checkpoint at ``step`` (nothing, once the run diverged)."""
        step = _step(step)
        self._require_open()
        if self._diverged is not None:
            return
        self._settle()
        self.handle.save_checkpoint(Checkpoint(step, dict(state), torch.get_rng_state()))
        self._last_step = max(self._last_step, step)

    def restore(self, map_location: str | torch.device | None = None) -> tuple[int, dict[str, Any]] | None:
        """``(step, state)`` of the last :meth:`checkpoint` (torch's CPU random state restored, rows
        after ``step`` discarded), or ``None`` for a run without one -- or whose checkpoint or rows
        did not verify (:meth:`RunHandle.resume`: the run was reset, train it from scratch)."""
        self._require_live()
        checkpoint = self.handle.resume(map_location=map_location)
        if checkpoint is None:
            return None
        torch.set_rng_state(checkpoint.torch_rng.cpu())
        self.resume_from(checkpoint.step)
        return checkpoint.step, checkpoint.state

    def resume_from(self, step: int) -> None:
        """Discard every row recorded after ``step`` (your loop resumes from there)."""
        step = _step(step)
        self._require_live()
        self.handle.discard_after(step)
        self._first_step, self._restart = step, None
        self._last_step = step
        self.handle.mark_running(step)

    # -- probes -----------------------------------------------------------------------------
    def step(self, step: int) -> None:
        """Call after optimizer step ``step`` (and with 0 before training): runs the probes scheduled then."""
        step = _step(step)
        if self._probes is not None and step in self._probes.steps and self._diverged is None:
            self.probe(step)

    def probe(self, step: int, epoch: float | None = None) -> None:
        """Run the probes now and record their rows at ``step`` (whatever the schedule).  The update
        direction (conflict probe) is the shared parameters' ``.grad``: none at step 0 or when they
        hold no gradient."""
        step = _step(step)
        if self._probes is None:
            raise RuntimeError("this recorder has no probes; pass probes=RecorderProbes(...)")
        setup = self._probes
        shared = setup.model.shared_parameters()
        grads = [p.grad for p in shared]
        update = None if step == 0 or all(g is None for g in grads) else flatten(grads, shared).detach().clone()
        rows = []
        for model, tasks, names in (
            (setup.model, setup.tasks, setup.names),
            (setup.predictive, setup.likelihoods, setup.predictive_names),
        ):
            if model is not None and names:
                context = ProbeContext(
                    model,
                    tasks,
                    model.probe_samples(),
                    step=step,
                    seed=self.identity.seed,
                    batch_size=setup.batch_size,
                    update=update,
                )
                rows += measure_probes(context, names, setup.options)
        self._add(step, {(r["task"], r["quantity"]): float(r["value"]) for r in rows}, epoch)

    @staticmethod
    def _probe_setup(probes: RecorderProbes | None, tasks: Sequence[str | Task]) -> _ProbeSetup | None:
        if probes is None:
            return None
        names = [t.name if isinstance(t, Task) else t for t in tasks]
        options = probes.validated_options()
        predictive_names = [p for p in probes.probes if p in PREDICTIVE_PROBES]
        model = LossModel(probes.model, probes.shared, probes.losses, probes.sample, names, probes.outputs)
        if predictive_names and not all(isinstance(t, Task) for t in tasks):
            raise ValueError(
                f"probes {predictive_names} need every task as a Task object whose loss is the negative "
                "log-likelihood of the model's outputs and whose sample_labels draws from it (e.g. "
                f"classification_task(name, n_classes)); got task names {[t for t in tasks if isinstance(t, str)]}"
            )
        return _ProbeSetup(
            model,
            set(probes.steps),
            [loss_task(t) for t in names],
            [p for p in probes.probes if p not in PREDICTIVE_PROBES],
            options,
            probes.batch_size,
            model.predictive() if predictive_names else None,
            [t for t in tasks if isinstance(t, Task)],
            predictive_names,
        )

    # -- helpers ------------------------------------------------------------------------------
    def _check_task_names(self, names: Sequence[str], probes: bool) -> None:
        """Refuse a task name holding a character of :data:`~mtlens.quantities.TASK_NAME_FORBIDDEN` in a new
        run (:func:`~mtlens.quantities.check_task_name`).  A run stored before those characters were
        refused reopens (its rows name tasks in the ``task`` column, as the rows it holds do), unless it has
        probes: they join task names into rows of pairs (``a|b``, ``a>b``), so that one is refused in one
        line naming the task and the run."""
        stored = self.store.has_run(self.run_id)
        if stored and not probes:
            return
        for name in names:
            try:
                check_task_name(name)
            except ValueError as err:
                if not stored:
                    raise
                raise ValueError(
                    f"run {self.run_id} in {self.store.root} cannot be reopened with probes (their rows of task pairs "
                    f"join task names): {err}; record it again under new task names"
                ) from None

    def _require_open(self) -> None:
        if not self.handle.is_open:
            raise RuntimeError(f"recorder of run {self.run_id} is not open; use it in a `with` block or call open()")

    def _settle(self) -> None:
        """A session that did not resume trains on from its first step: discard the rows of later steps an
        interrupted session left (before this session's rows of a later step join them, or anything is
        written).  Deferred until then, so that an evaluation logged at step 0 before resuming discards
        nothing; :meth:`resume_from` cancels it."""
        if self._restart is not None:
            self.handle.discard_after(self._restart)
            self._restart = None

    def _require_live(self) -> None:
        self._require_open()
        if self._diverged is not None:
            raise RuntimeError(f"run {self.run_id} diverged at step {self._diverged}; it cannot be resumed")

    @staticmethod
    def _task_info(
        tasks: Sequence[str | Task], lower_is_better: Mapping[str, bool], selection_metric: str
    ) -> dict[str, dict[str, Any]]:
        """Task info from Task objects, or from the directions given for task names."""
        info = task_info([t for t in tasks if isinstance(t, Task)])
        directions = {"loss": True, "error": True, **lower_is_better}
        if not directions["loss"]:
            raise ValueError("loss is always lower-is-better")
        for name in (t for t in tasks if isinstance(t, str)):
            info[name] = {"selection_metric": selection_metric, "lower_is_better": dict(directions)}
        return info
