"""Running the probes during training: the fixed probe samples, the schedule, and the rows.

**Probe sample.**  Each input source (see :class:`~mtlens.settings.base.TaskData`) gets one
fixed sample of ``min(probe_sample_size, n_train)`` training rows, drawn once with a seed that
depends only on the source's name (:func:`probe_rows`): the same examples in STL and MTL runs
and for every seed, and tasks that read the same inputs are probed on the same examples.

**Schedule.**  Probes run at step 0, at the epochs ``probe_first_epoch * probe_growth**k``
(``k = 0, 1, ...``, rounded to steps) and at the last step: dense early, geometrically sparser
later (:func:`probe_steps`).

**No side effects.**  :meth:`ProbeRunner.rows` builds a :class:`~mtlens.probes.ProbeContext`
(model, tasks, samples, step, seed, training batch size, the step's update) and measures the
config's probes with their ``probe_options`` through :func:`~mtlens.probes.measure_probes`, which
runs inside ``torch.random.fork_rng``, with the model in eval mode (so batch norm uses, and never
updates, its running statistics, and dropout is off) and every parameter's ``.grad`` put back
afterwards; it never touches the optimizer.  Random probes draw from their own generators, seeded
from ``(run seed, task, step)`` (Fisher labels) or from the task alone (alignment batches), so a
resumed run reproduces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import torch
from torch import Tensor

from mtlens.gradients import flatten
from mtlens.models import MultiTaskModel
from mtlens.probes import ProbeContext, measure_probes
from mtlens.registry import Interval, PositiveCount, check_option_values
from mtlens.seeding import derived_seed
from mtlens.settings import Setting
from mtlens.settings.base import Split
from mtlens.tasks import Task
from mtlens.training.config import ProbeFirstEpoch, ProbeGrowth, RunConfig


def probe_rows(split: Split, size: int, source: str) -> Tensor:
    """``min(size, len(split))`` sorted row indices of ``split``, drawn with a seed of ``source`` only."""
    n = len(split)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derived_seed(0, "probe-sample", source)))
    return order[: min(size, n)].sort().values


def probe_steps(
    total_steps: Annotated[int, Interval(ge=0)],
    steps_per_epoch: PositiveCount,
    first_epoch: ProbeFirstEpoch,
    growth: ProbeGrowth,
) -> list[int]:
    """Step 0, ``round(first_epoch * growth**k * steps_per_epoch)`` for ``k = 0, 1, ...`` up to
    ``total_steps``, and ``total_steps``; sorted, without duplicates.  Arguments outside their declared
    ranges (those of :class:`RunConfig`'s ``probe_first_epoch`` and ``probe_growth``; a schedule that would
    never end) raise one-line :class:`~mtlens.errors.ConfigError`."""
    check_option_values(
        "probe_steps",
        probe_steps,
        {"total_steps": total_steps, "steps_per_epoch": steps_per_epoch, "first_epoch": first_epoch, "growth": growth},
    )
    steps = {0, total_steps}
    epoch = first_epoch
    while epoch * steps_per_epoch <= total_steps:
        steps.add(max(1, round(epoch * steps_per_epoch)))
        epoch *= growth
    return sorted(s for s in steps if s <= total_steps)


class ProbeRunner:
    """Measures the config's probes for every task of a run; see the module docstring."""

    def __init__(self, config: RunConfig, setting: Setting, tasks: Sequence[Task], device: torch.device):
        self.config, self.tasks = config, list(tasks)
        self.options = {name: config.probe_settings(name) for name in config.probes}
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
        shared = model.shared_parameters()
        update = None if step == 0 else flatten([p.grad for p in shared], shared).detach().clone()
        context = ProbeContext(
            model,
            self.tasks,
            self.samples,
            step=step,
            seed=self.config.seed,
            batch_size=self.config.batch_size or 1,
            update=update,
            lr=self.config.lr,
        )
        return measure_probes(context, self.config.probes, self.options)
