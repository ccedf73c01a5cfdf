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
the steps since the previous evaluation record (probe-only steps do not record them) and recorded as rows ``task=<task>, quantity=
"method/weight"`` (a key without ``/<task>`` gets task ``"*"``); the running sums are
part of the checkpoint.

A non-finite training loss ends the run with state ``diverged`` (recorded rows are
kept); a finished or diverged run is never trained again.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from tqdm.auto import tqdm

from mtlens.aggregators import make_method
from mtlens.models import MultiTaskModel, build_model
from mtlens.seeding import derived_seed
from mtlens.training.probe_runner import ProbeRunner, probe_steps
from mtlens.settings import Setting
from mtlens.store import RunStore, atomic_write
from mtlens.tasks import Task, selection_scores
from mtlens.training.batches import BatchStream
from mtlens.training.config import RunConfig, load_configured_setting, resolve_config
from mtlens.training.evaluate import evaluate_task, train_eval_rows
from mtlens.training.run_writer import RunIdentity, RunWriter, task_info


def make_optimizer(config: RunConfig, model: MultiTaskModel) -> torch.optim.Optimizer:
    """Adam (default betas/eps) or SGD with ``config.momentum``, at the constant ``config.lr``."""
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum)


def configure_determinism() -> None:
    """Make CPU (and, where possible, CUDA) kernels deterministic."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def train_run(config: RunConfig, store: RunStore, setting: Setting | None = None,
              progress: bool = True) -> str:
    """Train (or resume, or skip if complete) the run of ``config``; return its final state."""
    setting = setting or load_configured_setting(config)
    config = resolve_config(config, setting)
    run_id = config.run_id
    if store.is_done(run_id):
        return store.status(run_id)["state"]
    with store.lock(run_id):
        if store.is_done(run_id):  # another process finished it before we took the lock
            return store.status(run_id)["state"]
        writer = RunWriter(store, trainer_identity(config))
        writer.open(config.to_dict(), task_info(setting.select(config.tasks)), ignore=("device",))
        return _Run(config, setting, writer).train(progress)


def trainer_identity(config: RunConfig) -> RunIdentity:
    """The row identity of a resolved config's run."""
    return RunIdentity(config.run_id, config.setting, tuple(config.tasks or ()), config.method, config.seed)


class _Run:
    """The state of one run being trained."""

    def __init__(self, config: RunConfig, setting: Setting, writer: RunWriter):
        configure_determinism()
        self.config, self.setting, self.writer, self.store = config, setting, writer, writer.store
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
        self.diagnostics: dict[str, Any] = {"sums": {}, "steps": 0}
        self.selected: dict[str, tuple[float, int]] = {}  # task -> (selection score, step), if saved
        self.scales = {t: config.loss_scale * config.task_loss_scales.get(t, 1.0) for t in config.tasks}
        self.probes = ProbeRunner(config, setting, self.tasks, self.device) if config.probes else None
        self.probe_steps = set(probe_steps(self.total_steps, self.steps_per_epoch, config.probe_first_epoch,
                                           config.probe_growth)) if config.probes else set()

    # -- the loop -------------------------------------------------------------------------
    def train(self, progress: bool) -> str:
        step = self._restore()
        bar = tqdm(total=self.total_steps, initial=step, desc=self.run_id, disable=None if progress else True,
                   leave=False, dynamic_ncols=True)
        with bar:
            while step < self.total_steps:
                step += 1
                losses = self._losses()
                bad = {t: v.item() for t, v in losses.items() if not math.isfinite(v.item())}
                if bad:
                    self.writer.finish("diverged", step, f"non-finite loss at step {step}: {bad}")
                    return "diverged"
                self.optimizer.zero_grad(set_to_none=True)
                self._accumulate(self.method.backward({t: self.scales[t] * v for t, v in losses.items()}, self.model))
                self.optimizer.step()
                bar.update(1)
                if self._is_record_step(step) or step in self.probe_steps:
                    self._record(step)
                    self._checkpoint(step)
        self.writer.finish("finished", step)
        return "finished"

    def _losses(self) -> dict[str, torch.Tensor]:
        self.model.train()
        losses = {}
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16,
                                  enabled=self.config.mixed_precision == "bf16")
        for batch in self.stream.next().values():
            with autocast:
                outputs = self.model(batch.inputs, list(batch.targets))
                for task_name, targets in batch.targets.items():
                    losses[task_name] = self.setting.task(task_name).loss(outputs[task_name], targets).float().mean()
        return losses

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
        for task in self.tasks if self._is_record_step(step) else []:
            data = self.setting.data[task.name]
            for split_name, rows in (("train", self.train_rows[task.name]), ("val", None), ("test", None)):
                scores = evaluate_task(self.model, task, data.split(split_name), self.device, rows,
                                       batch_size=self.setting.defaults.eval_batch_size)
                if split_name == "val" and self.config.save_selected_models:
                    self._save_if_selected(task, scores, step)
                records += [
                    {"task": task.name, "quantity": f"{split_name}/{name}", "value": value}
                    for name, value in scores.items()
                ]
        if self._is_record_step(step):
            records += self._method_records()
        if self.probes is not None and step in self.probe_steps:
            records += self.probes.rows(self.model, step)
        self.writer.write_step(step, step / self.steps_per_epoch, records)

    def _save_if_selected(self, task: Task, val_scores: dict[str, float], step: int) -> None:
        """Save the weights when the task's validation selection score strictly improves
        (:func:`~mtlens.tasks.selection_scores`, the rule the analyses select checkpoints by)."""
        metric = task.selection_metric
        score = float(selection_scores(val_scores[metric], task.is_lower_better(metric)))
        if task.name in self.selected and not score < self.selected[task.name][0]:
            return
        self.selected[task.name] = (score, step)
        atomic_write(self.store.selected_model_path(self.run_id, task.name, step),
                     lambda tmp: torch.save(self.model.state_dict(), tmp))

    def _accumulate(self, diagnostics: dict[str, float]) -> None:
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
            records.append({"task": task or "*", "quantity": f"method/{quantity}", "value": total / steps})
        self.diagnostics = {"sums": {}, "steps": 0}
        return records

    # -- checkpoints ------------------------------------------------------------------------
    def _checkpoint(self, step: int) -> None:
        state = {
            "step": step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "method": self.method.state_dict(),
            "method_diagnostics": self.diagnostics,
            "stream": self.stream.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else None,
            "selected": self.selected,
        }
        atomic_write(self.store.checkpoint_path(self.run_id), lambda tmp: torch.save(state, tmp))
        self.store.keep_selected_models(self.run_id, {task: step for task, (_, step) in self.selected.items()})
        self.writer.mark_running(step)

    def _restore(self) -> int:
        """Load the last checkpoint (returning its step), or record step 0 of a fresh run."""
        path = self.store.checkpoint_path(self.run_id)
        if not path.exists():
            self.writer.discard_after(-1)
            self.store.keep_selected_models(self.run_id, {})
            self._record(0)
            self._checkpoint(0)
            return 0
        state = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.method.load_state_dict(state["method"])
        self.diagnostics = state["method_diagnostics"]
        self.stream.load_state_dict(state["stream"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if state["cuda_rng"] is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
        self.selected = state["selected"]
        self.writer.discard_after(state["step"])
        self.store.keep_selected_models(self.run_id, {task: step for task, (_, step) in self.selected.items()})
        return int(state["step"])
