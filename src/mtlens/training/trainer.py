"""The trainer: STL and MTL runs under identical steps, optimizer and data order.

One optimizer step draws a batch per input source (:class:`BatchStream`), runs the
encoder once per source, computes every task's mean loss ``L_t`` and hands the scaled
losses ``C * s_t * L_t`` to the run's update method (``sum`` by default), then steps
the optimizer (Adam, or SGD with optional momentum; constant learning rate).

Recording and checkpoints.  At step 0, at the end of every epoch and every
``eval_every_steps`` steps (until ``eval_dense_until_epoch`` if set), each task of the
run is evaluated on its fixed training subset and on its validation and test splits;
the rows are written to the store and then a checkpoint is written.  A run killed at any moment resumes from its last
checkpoint: rows recorded after it are discarded and recomputed, and because the
batch order, the model and every RNG stream are restored, the resumed trajectory is
identical to an uninterrupted one.  With ``save_selected_models``, a task's weights are
saved whenever its validation selection metric improves (the best score and step are part of
the checkpoint; the file of an older selection is deleted only once a checkpoint names a
newer one).

Probes.  At the steps of the probe schedule (:func:`mtlens.probes.probe_steps`) the config's
probes run after the step's optimizer update (:class:`mtlens.probes.ProbeRunner`); their rows
(quantities ``probe/<name>``) go into the same part as the step's evaluation rows, before the
checkpoint.  Probes change no parameter, buffer, gradient, optimizer state or RNG stream of
training, so a run with probes has exactly the trajectory of the same run without them.

The update method's per-step diagnostics (``{"weight/<task>": w_t}``) are averaged over
the steps since the previous evaluation record (probe-only steps do not record them) and recorded
as rows ``task=<task>, quantity="method/weight"`` (a key without ``/<task>`` gets task ``"*"``); the running sums are
part of the checkpoint.

A non-finite training loss ends the run with state ``diverged`` at the first such step
(recorded rows are kept).  The losses are checked on the device, without a host
synchronisation per step; the check is read at the next record or probe step, before
anything is written, so no row or checkpoint after the first non-finite step is kept (the
steps in between are computed and thrown away).  A finished or diverged run is never
trained again.

Threads.  The run trains under ``config.threads`` torch intra-op threads (set for the run and
restored after it); the count is recorded in the status and the checkpoint, and resuming under
another count raises :class:`ThreadCountError` (rerun with the recorded count) instead of mixing
rows computed under both.

Files.  Every file of the run is written, verified, healed and restored by its
:class:`~mtlens.training.handle.RunHandle` (lock, cleaning, damaged files, the versioned
:class:`~mtlens.training.handle.Checkpoint`, rows, states); the trainer holds training state only.
"""

from __future__ import annotations

import math
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from mtlens.aggregators import make_method
from mtlens.errors import MtlensError
from mtlens.models import MultiTaskModel, build_model
from mtlens.quantities import RUN_ROW
from mtlens.seeding import derived_seed
from mtlens.settings import Setting, Split
from mtlens.settings.base import SPLITS
from mtlens.store import RunLockedError, RunState, RunStore
from mtlens.tasks import Task, selection_scores
from mtlens.training.batches import BatchStream, SourceBatch
from mtlens.training.config import (
    RUN_ENVIRONMENT_KEYS,
    ConfigError,
    ResolvedRunConfig,
    RunConfig,
    load_configured_setting,
    resolve_config,
    same_run_config,
)
from mtlens.training.evaluate import evaluate_tasks, train_eval_rows
from mtlens.training.handle import Checkpoint, DamagedRunWarning, RunHandle, RunIdentity, task_info
from mtlens.training.probe_runner import ProbeRunner, probe_steps

__all__ = ["DamagedRunWarning", "ThreadCountError", "TrainingRun", "open_run", "train_run"]


class ThreadCountError(MtlensError):
    """A run was resumed under another torch thread count than it was trained under."""


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the body under ``count`` torch intra-op threads, restoring the previous count after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def make_optimizer(config: ResolvedRunConfig, model: MultiTaskModel) -> torch.optim.Optimizer:
    """Adam (default betas/eps) or SGD with ``config.momentum``, at the constant ``config.lr``."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)


def configure_determinism() -> None:
    """Make CPU (and, where possible, CUDA) kernels deterministic."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def train_run(config: RunConfig, store: RunStore, setting: Setting | None = None, progress: bool = True) -> str:
    """Train (or resume, or skip if complete) the run of ``config``; return its final state.

    A run that raises is marked ``failed`` with its error (:func:`mark_failed`, once its lock is released;
    it resumes from its last checkpoint) and the error is raised; a config refused before anything is
    trained (:class:`~mtlens.errors.ConfigError`, :class:`ThreadCountError`), a run another process holds
    (:class:`~mtlens.store.RunLockedError`) and Ctrl-C (``interrupted``) are not failures."""
    resolved: RunConfig = config  # the run's id is the resolved config's (tasks filled in)
    try:
        setting = setting or load_configured_setting(config)
        resolved = resolve_config(config, setting)
        with ExitStack() as held:
            opened = open_run(resolved, store, setting, held)
            if isinstance(opened, str):
                return opened
            with torch_threads(resolved.threads):
                return TrainingRun(resolved, setting, opened).train(progress)
    except (ConfigError, RunLockedError, ThreadCountError):  # refused before training: nothing failed
        raise
    except Exception as err:
        mark_failed(store, resolved, failure_message(err))
        raise


def failure_message(err: BaseException) -> str:
    """What a failed run's status says: ``Type: message`` and the innermost 5 frames of its traceback, where
    it was raised (a user's training step under Lightning, not the framework's outer frames)."""
    return f"{type(err).__name__}: {err}\n" + "".join(traceback.format_exception(err, limit=-5))


def mark_failed(store: RunStore, config: RunConfig, message: str) -> None:
    """Record ``config``'s run as ``failed`` with ``message`` through its run handle
    (:meth:`~mtlens.training.handle.RunHandle.record_failure`: it stays resumable, failed is not done).

    A store that cannot be written (e.g. read-only) raises :class:`MtlensError` naming the file: one
    line for the user, not the write error chained to the run's own.
    """
    identity = RunIdentity(config.run_id, config.setting, tuple(config.tasks or ()), config.method, config.seed)
    handle = RunHandle(store, identity, config.to_dict(), ignore=RUN_ENVIRONMENT_KEYS, same_config=same_run_config)
    handle.record_failure(message)


def open_run(config: ResolvedRunConfig, store: RunStore, setting: Setting, held: ExitStack) -> RunHandle | RunState:
    """Open the run's :class:`RunHandle` (its lock held until ``held`` closes;
    :class:`~mtlens.store.RunLockedError` if another process holds it): the handle if the run is to be
    trained, or its final state if it is already complete (then nothing is trained)."""
    handle = RunHandle(
        store,
        trainer_identity(config),
        config.to_dict(),
        task_info(setting.select(config.tasks)),
        ignore=RUN_ENVIRONMENT_KEYS,
        same_config=same_run_config,
    )
    handle.status_extra = {"threads": config.threads}
    done = handle.open()
    if done is not None:
        return done
    held.callback(handle.close)
    return handle


def task_losses(
    setting: Setting, forward: Callable[[Tensor, list[str]], dict[str, Tensor]], batches: Mapping[str, SourceBatch]
) -> dict[str, Tensor]:
    """``{t: L_t}``, each task's mean loss on one step's batches: per source, one ``forward(inputs, tasks)``
    (the model, or a functional call of it) for all the tasks reading it."""
    losses = {}
    for batch in batches.values():
        outputs = forward(batch.inputs, list(batch.targets))
        for task_name, targets in batch.targets.items():
            losses[task_name] = setting.task(task_name).loss(outputs[task_name], targets).float().mean()
    return losses


def trainer_identity(config: ResolvedRunConfig) -> RunIdentity:
    """The row identity of a resolved config's run."""
    return RunIdentity(config.run_id, config.setting, tuple(config.tasks or ()), config.method, config.seed)


class TrainingRun:
    """The state of one run being trained.

    :meth:`train` is the loop of an unpacked run; a pack of runs
    (:class:`mtlens.training.pack.RunPack`) drives the same pieces -- :meth:`start`, a step's
    :meth:`batch_losses` or its own, :meth:`watch_divergence`, :meth:`end_step`, :meth:`finish` --
    for several runs at once."""

    def __init__(self, config: ResolvedRunConfig, setting: Setting, handle: RunHandle):
        configure_determinism()
        self.config, self.setting, self.handle = config, setting, handle
        self.run_id = config.run_id
        self.device = torch.device(config.device)
        self.tasks = setting.select(config.tasks)
        torch.manual_seed(derived_seed(config.seed, "torch"))
        self.model = build_model(setting.encoder, setting.feature_dim, self.tasks, config.seed).to(self.device)
        self.optimizer = make_optimizer(config, self.model)
        self.method = make_method(config.method, config.method_options, config.seed)
        self.method.attach(self.model)
        self.stream = BatchStream(setting, config.tasks, config.batch_size, config.seed, self.device)
        self.steps_per_epoch = setting.steps_per_epoch(config.batch_size)
        self.total_steps = config.epochs * self.steps_per_epoch
        self.train_rows = {
            t.name: train_eval_rows(setting.data[t.name].train, config.train_eval_size, t.name) for t in self.tasks
        }
        self.eval_passes = self._evaluation_passes()
        # The first step with a non-finite loss (0: none yet) and its losses, kept on the device.
        self.first_nonfinite = torch.zeros((), dtype=torch.long, device=self.device)
        self.nonfinite_losses = torch.zeros(len(self.tasks), device=self.device)
        self.diagnostics: dict[str, Any] = {"sums": {}, "steps": 0}
        self.selected: dict[str, tuple[float, int]] = {}  # task -> (selection score, step), if saved
        self.scales = {t: config.loss_scale * config.task_loss_scales.get(t, 1.0) for t in config.tasks}
        self.probes = ProbeRunner(config, setting, self.tasks, self.device) if config.probes else None
        self._pack_size = 1
        self.probe_steps = (
            set(probe_steps(self.total_steps, self.steps_per_epoch, config.probe_first_epoch, config.probe_growth))
            if config.probes
            else set()
        )

    # -- the loop -------------------------------------------------------------------------
    def train(self, progress: bool) -> str:
        step = self.start()
        bar = tqdm(
            total=self.total_steps,
            initial=step,
            desc=self.run_id,
            disable=None if progress else True,
            leave=False,
            dynamic_ncols=True,
        )
        with bar:
            while step < self.total_steps:
                step += 1
                try:
                    losses = self.batch_losses()
                    self.watch_divergence(losses, step)
                    self.optimizer.zero_grad(set_to_none=True)
                    self.accumulate(self.method.backward(self.scaled(losses), self.model))
                    self.optimizer.step()
                except Exception:
                    if self.finalize_if_diverged():  # e.g. a method's solver refusing non-finite losses
                        return RunState.DIVERGED
                    raise
                bar.update(1)
                if self.end_step(step) == RunState.DIVERGED:
                    return RunState.DIVERGED
        return self.finish()

    @property
    def pack_size(self) -> int:
        """The number of runs trained together with this one (set by a pack, :mod:`mtlens.training.pack`;
        recorded in the status when larger than 1)."""
        return self._pack_size

    @pack_size.setter
    def pack_size(self, size: int) -> None:
        self._pack_size = size
        self.handle.status_extra = {"threads": self.config.threads, **({"pack_size": size} if size > 1 else {})}

    def end_step(self, step: int) -> str | None:
        """After the optimizer update of ``step``: at record and probe steps, check for divergence
        (``"diverged"``: the run is finalized as such and must stop) and otherwise write the step's
        rows and a checkpoint."""
        if self._is_record_step(step) or step in self.probe_steps:
            if self.finalize_if_diverged():
                return RunState.DIVERGED
            try:
                self._record(step)
            except Exception:
                if self.finalize_if_model_diverged(step):
                    return RunState.DIVERGED
                raise
            self._checkpoint(step)
        return None

    def finish(self) -> str:
        """Mark the run ``finished`` (after its last step) and return that state."""
        return self.handle.finish(RunState.FINISHED, self.total_steps)

    def scaled(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """``{t: C * s_t * L_t}``: the losses the update method receives."""
        return {t: self.scales[t] * v for t, v in losses.items()}

    def watch_divergence(self, losses: dict[str, torch.Tensor], step: int) -> None:
        """Note the first step with a non-finite task loss, on the device (no host synchronisation):
        ``first_nonfinite`` becomes ``step`` and ``nonfinite_losses`` that step's losses."""
        values = torch.stack([losses[t].detach().float() for t in self.config.tasks])
        first = (self.first_nonfinite == 0) & ~torch.isfinite(values).all()
        self.first_nonfinite = torch.where(first, step, self.first_nonfinite)
        self.nonfinite_losses = torch.where(first, values, self.nonfinite_losses)

    def finalize_if_diverged(self) -> bool:
        """At record steps (one host synchronisation): if a loss went non-finite since the last check,
        mark the run ``diverged`` at that step and return True.  The rows recorded so far all
        precede that step (records are only written after this check), so none are dropped."""
        step = int(self.first_nonfinite)
        if step == 0:
            return False
        bad = {t: v for t, v in zip(self.config.tasks, self.nonfinite_losses.tolist()) if not math.isfinite(v)}
        self.handle.diverge(step, bad)
        return True

    def finalize_if_model_diverged(self, step: int) -> bool:
        """Where recording ``step`` raised although the step's losses were finite: if the update of ``step``
        made a parameter non-finite, or the training-split evaluation's loss non-finite, mark the run ``diverged``
        at ``step + 1`` (the first step whose loss cannot be finite) and return True; otherwise False (the error
        is the caller's to raise).  Before, the probes then raised on the non-finite outputs (a label sampled
        from NaN probabilities) and the run ended ``failed``: a sweep grid's too-large learning rate failed the
        sweep on every rerun (audit E, 2026-12-06).  Only called on an error: a healthy run pays nothing."""
        bad = {name: math.nan for name, p in self.model.named_parameters() if not bool(torch.isfinite(p).all())}
        cause = "non-finite parameters after the update"
        if not bad:
            cause = "non-finite training-split loss after the update"
            for split_name, rows, pairs in self.eval_passes:
                if split_name == "train":
                    scores = evaluate_tasks(self.model, pairs, self.device, rows, self.setting.defaults.eval_batch_size)
                    bad |= {t: v["loss"] for t, v in scores.items() if not math.isfinite(v.get("loss", 0.0))}
        if not bad:
            return False
        self.handle.diverge(step + 1, dict(list(bad.items())[:3]), cause)
        return True

    def batch_losses(self) -> dict[str, torch.Tensor]:
        """The next batch's mean task losses ``{t: L_t}`` (the stream advances by one step)."""
        self.model.train()
        with self.autocast():
            return task_losses(self.setting, self.model, self.stream.next())

    def autocast(self) -> torch.autocast:
        """The training forward's autocast: bfloat16 with ``mixed_precision: bf16``, else disabled."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.mixed_precision == "bf16")

    def _is_record_step(self, step: int) -> bool:
        """Every epoch end, and every ``eval_every_steps`` steps up to ``eval_dense_until_epoch``
        (or for the whole run when that is unset): dense early, where the gap tends to open."""
        every, until = self.config.eval_every_steps, self.config.eval_dense_until_epoch
        dense = every is not None and step % every == 0 and (until is None or step <= until * self.steps_per_epoch)
        return step % self.steps_per_epoch == 0 or dense

    # -- recording ------------------------------------------------------------------------
    def _record(self, step: int) -> None:
        """Write one part with the step's evaluation rows (at record steps) and probe rows (at probe steps)."""
        records: list[dict[str, Any]] = []
        if self._is_record_step(step):
            scores: dict[tuple[str, str], dict[str, float]] = {}
            for split_name, rows, pairs in self.eval_passes:
                evaluated = evaluate_tasks(
                    self.model, pairs, self.device, rows, batch_size=self.setting.defaults.eval_batch_size
                )
                scores.update({(task, split_name): values for task, values in evaluated.items()})
            for task in self.tasks:
                for split_name in SPLITS:
                    if split_name == "val" and self.config.save_selected_models:
                        self._save_if_selected(task, scores[task.name, split_name], step)
                    records += [
                        {"task": task.name, "quantity": f"{split_name}/{name}", "value": value}
                        for name, value in scores[task.name, split_name].items()
                    ]
            records += self._method_records()
        if self.probes is not None and step in self.probe_steps:
            records += self.probes.rows(self.model, step)
        self.handle.write_step(step, step / self.steps_per_epoch, records)

    def _evaluation_passes(self) -> list[tuple[str, Tensor | None, list[tuple[Task, Split]]]]:
        """``(split name, rows, [(task, split), ...])`` per evaluation pass: one per input source
        and split, shared by every task reading that source (one encoder forward per batch
        for all of their heads).  On the training split, tasks of one source share a pass only
        when their fixed training subsets (:func:`train_eval_rows`, drawn per task) coincide."""
        passes: list[tuple[str, Tensor | None, list[tuple[Task, Split]]]] = []
        for split_name in SPLITS:
            for task in self.tasks:
                data = self.setting.data[task.name]
                rows = self.train_rows[task.name] if split_name == "train" else None
                for name, shared_rows, pairs in passes:
                    same_rows = rows is None or (shared_rows is not None and torch.equal(rows, shared_rows))
                    if name == split_name and self.setting.data[pairs[0][0].name].source == data.source and same_rows:
                        pairs.append((task, data.split(split_name)))
                        break
                else:
                    passes.append((split_name, rows, [(task, data.split(split_name))]))
        return passes

    def _save_if_selected(self, task: Task, val_scores: dict[str, float], step: int) -> None:
        """Save the weights when the task's validation selection score strictly improves
        (:func:`~mtlens.tasks.selection_scores`, the rule the analyses select checkpoints by)."""
        metric = task.selection_metric
        score = float(selection_scores(val_scores[metric], task.is_lower_better(metric)))
        if task.name in self.selected and not score < self.selected[task.name][0]:
            return
        self.selected[task.name] = (score, step)
        self.handle.save_selected(task.name, step, self.model.state_dict())

    def accumulate(self, diagnostics: dict[str, float]) -> None:
        sums = self.diagnostics["sums"]
        for name, value in diagnostics.items():
            sums[name] = sums.get(name, 0.0) + float(value)
        self.diagnostics["steps"] += 1

    def _method_records(self) -> list[dict[str, Any]]:
        """Rows of the method's diagnostics averaged since the last record; resets the sums."""
        sums, steps = self.diagnostics["sums"], self.diagnostics["steps"]
        records = []
        for name, total in sums.items():
            quantity, _, task = name.partition("/")
            records.append({"task": task or RUN_ROW, "quantity": f"method/{quantity}", "value": total / steps})
        self.diagnostics = {"sums": {}, "steps": 0}
        return records

    # -- checkpoints ------------------------------------------------------------------------
    def _checkpoint(self, step: int) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "method_diagnostics": self.diagnostics,
            "stream": self.stream.state_dict(),
            "selected": self.selected,
            "threads": self.config.threads,
        }
        cuda_rng = torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None
        self.handle.save_checkpoint(
            Checkpoint(step, state, torch.get_rng_state(), cuda_rng),
            keep_selected={task: at for task, (_, at) in self.selected.items()},
        )

    def start(self) -> int:
        """Resume from the last checkpoint the handle trusts, or record step 0 of a fresh run; the step
        to go on from."""
        checkpoint = self.handle.resume(self._expected_parts, map_location=self.device)
        if checkpoint is None:
            self.handle.start_fresh()
            self._record(0)
            self._checkpoint(0)
            return 0
        state = checkpoint.state
        recorded = state.get("threads")  # absent in checkpoints of earlier versions: unknown, accepted
        if recorded is not None and recorded != self.config.threads:
            raise ThreadCountError(
                f"run {self.run_id} was trained under {recorded} torch threads up to step {checkpoint.step}; "
                f"resuming it under {self.config.threads} would mix results computed both ways. Rerun with "
                f"--threads {recorded} (config key threads: {recorded})."
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        # absent in checkpoints of earlier versions (before the method diagnostics and the selected models):
        # nothing accumulated, nothing selected yet
        self.diagnostics = state.get("method_diagnostics", {"sums": {}, "steps": 0})
        self.stream.load_state_dict(state["stream"])
        torch.set_rng_state(checkpoint.torch_rng.cpu())
        if checkpoint.cuda_rng is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in checkpoint.cuda_rng])
        self.selected = state.get("selected", {})
        self.handle.keep_selected({task: at for task, (_, at) in self.selected.items()})
        return checkpoint.step

    def _expected_parts(self, step: int) -> list[int]:
        """The steps with a row part up to ``step``: 0, the record steps and the probe steps."""
        return [s for s in range(step + 1) if s == 0 or self._is_record_step(s) or s in self.probe_steps]
