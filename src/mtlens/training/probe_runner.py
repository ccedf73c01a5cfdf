"""Running the probes during training: the fixed probe samples, the schedule, and the rows.

**Probe sample.**  Each input source (see :class:`~mtlens.settings.base.TaskData`) gets one
fixed sample of ``min(probe_sample_size, n_train)`` training rows, drawn once with a seed that
depends only on the source's name (:func:`probe_rows`): the same examples in STL and MTL runs
and for every seed, and tasks that read the same inputs are probed on the same examples.

**Schedule.**  Probes run at step 0, at the epochs ``probe_first_epoch * probe_growth**k``
(``k = 0, 1, ...``, rounded to steps) and at the last step: dense early, geometrically sparser
later (:func:`probe_steps`).

**No side effects.**  :meth:`ProbeRunner.rows` runs inside ``torch.random.fork_rng`` (CPU and the
run's CUDA device), with the model in eval mode (so batch norm uses, and never updates, its
running statistics, and dropout is off) and every parameter's ``.grad`` put back afterwards; it
never touches the optimizer.  Random probes draw from their own generators, seeded from
``(run seed, task, step)`` (Fisher labels) or from the task alone (alignment batches), so a
resumed run reproduces them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
from torch import Tensor

from mtlens.gradients import flatten
from mtlens.models import MultiTaskModel
from mtlens.seeding import derived_seed
from mtlens.probes.alignment import intra_task_alignment
from mtlens.probes.coherence import gradient_coherence
from mtlens.probes.conflict import conflict_measures, mean_task_gradients
from mtlens.probes.fisher import fisher_trace
from mtlens.probes.sharpness import sharpness_measures
from mtlens.settings import Setting
from mtlens.settings.base import Split
from mtlens.tasks import Task

if TYPE_CHECKING:
    from mtlens.training.config import RunConfig


def probe_rows(split: Split, size: int, source: str) -> Tensor:
    """``min(size, len(split))`` sorted row indices of ``split``, drawn with a seed of ``source`` only."""
    n = len(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(0, "probe-sample", source)))
    return order[: min(size, n)].sort().values


def probe_steps(total_steps: int, steps_per_epoch: int, first_epoch: float, growth: float) -> list[int]:
    """Step 0, ``round(first_epoch * growth**k * steps_per_epoch)`` for ``k = 0, 1, ...`` up to
    ``total_steps``, and ``total_steps``; sorted, without duplicates."""
    steps = {0, total_steps}
    epoch = first_epoch
    while epoch * steps_per_epoch <= total_steps:
        steps.add(max(1, round(epoch * steps_per_epoch)))
        epoch *= growth
    return sorted(s for s in steps if s <= total_steps)


class ProbeRunner:
    """Measures the config's probes for every task of a run; see the module docstring."""

    def __init__(self, config: RunConfig, setting: Setting, tasks: Sequence[Task], device: torch.device):
        self.config, self.tasks, self.device = config, list(tasks), device
        by_source: dict[str, Tensor] = {}
        self.samples: dict[str, tuple[Tensor, Tensor]] = {}
        for task in self.tasks:
            data = setting.data[task.name]
            rows = probe_rows(data.train, config.probe_sample_size, data.source)
            if data.source not in by_source:
                by_source[data.source] = data.train.inputs[rows].to(device)
            self.samples[task.name] = (by_source[data.source], data.train.targets[rows].to(device))

    def rows(self, model: MultiTaskModel, step: int) -> list[dict[str, Any]]:
        """Rows ``{"task", "quantity", "value"}`` of every probe at ``step``, read after the step's
        optimizer update (whose direction is the shared parameters' ``.grad``; none at step 0)."""
        params = list(model.parameters())
        saved_grads = [p.grad for p in params]
        shared = model.shared_parameters()
        update = None if step == 0 else flatten([p.grad for p in shared], shared).detach().clone()
        was_training = model.training
        devices = [self.device] if self.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices):
                model.eval()
                return self._measure(model, step, update)
        finally:
            model.train(was_training)
            for p, grad in zip(params, saved_grads):
                p.grad = grad

    def _measure(self, model: MultiTaskModel, step: int, update: Tensor | None) -> list[dict[str, Any]]:
        config, rows = self.config, []
        probes = set(config.probes)
        for task in self.tasks:
            inputs, targets = self.samples[task.name]
            values: dict[str, float] = {}
            if "coherence" in probes:
                values.update(gradient_coherence(model, task, inputs, targets))
            if "fisher" in probes:
                generator = torch.Generator(device=inputs.device).manual_seed(
                    derived_seed(config.seed, "fisher", task.name, str(step)))
                values.update(fisher_trace(model, task, inputs, generator, batch_size=config.fisher_batch_size))
            sharpness = {"sharpness", "sharpness_sam"} & probes
            if sharpness:  # one pass gives both: the SAM estimate is the ascent's first step
                measured = sharpness_measures(model, task, inputs, targets, rho=config.sharpness_rho,
                                              batch_size=config.sharpness_batch_size,
                                              steps=config.sharpness_steps if "sharpness" in probes else None)
                values.update({name: measured[name] for name in sorted(sharpness)})
            if "alignment" in probes:
                generator = torch.Generator().manual_seed(derived_seed(0, "alignment", task.name))
                values.update(intra_task_alignment(model, task, inputs, targets, config.batch_size,
                                                   config.alignment_batches, generator))
            rows += [{"task": task.name, "quantity": f"probe/{name}", "value": float(value)}
                     for name, value in values.items()]
        if "conflict" in probes:
            rows += conflict_measures(mean_task_gradients(model, self.tasks, self.samples), update)
        return rows
