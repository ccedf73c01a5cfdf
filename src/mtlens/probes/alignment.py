"""Intra-task gradient alignment (Elich et al. 2023), on the scale of inter-task conflict.

Elich et al. compare the cosine between *different tasks'* gradients with the cosine between
gradients of *one task* on different data; if the two are alike, "conflict" between tasks is
no more than the disagreement of one task with itself.  Both measures here use the shared
(encoder) parameters, like :mod:`mtlens.probes.conflict`, and batches of the training batch size:

* ``intra_cosine_subbatch``: a batch of ``B`` examples of the task's probe sample is split into two
  disjoint halves (the first and second ``B // 2`` rows of a fixed random order);
  ``cos(g_half1, g_half2)`` of their mean-loss gradients, averaged over ``n_batches`` batches;
* ``intra_cosine_classgroup`` (tasks with integer class labels only): classes are split into
  ``n_groups`` fixed groups by ``label mod n_groups`` (even vs. odd labels by default); per batch the
  mean pairwise cosine between the groups' mean-loss gradients (groups absent from the batch are
  skipped), averaged over the batches where at least two groups occur.

The batches are consecutive slices of a permutation of the probe sample drawn with ``generator``.

The intra-task cosine of two half-batch gradients is pulled towards 0 by their sampling noise, which the
conflict probe's inter-task cosine (gradients over the whole probe sample) hardly has, so the two are not
comparable.  Its like, the probe ``inter_alignment`` (opt-in: name it in ``probes``), measures the
inter-task cosine at the same noise:

* ``inter_cosine_subbatch`` (per task pair ``a|b``): per batch, ``(cos(g_a(H_1), g_b(H_2)) + cos(g_a(H_2),
  g_b(H_1))) / 2`` with ``g_t(H)`` task ``t``'s mean-loss gradient over the half ``H`` of the batch, halves and
  batches built as for ``intra_cosine_subbatch`` (tasks that read the same inputs take their halves from the
  same rows, so ``H_1`` and ``H_2`` are disjoint for every pair); averaged over the batches.  For two tasks
  that are one and the same (same data, same head) it is ``intra_cosine_subbatch`` on the same batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from mtlens.gradients import flatten
from mtlens.probes.base import ProbeContext, Row, register_probe
from mtlens.probes.conflict import gradient_cosine
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import INTER_COSINE_SUBBATCH, INTRA_COSINE_CLASSGROUP, INTRA_COSINE_SUBBATCH, TASK_PAIR
from mtlens.seeding import derived_seed
from mtlens.tasks import Task

MIN_BATCH_SIZE = 2
"""The smallest batch that splits into two non-empty halves (declared with the probe: configs are checked
against it before training)."""


def intra_task_alignment(
    model: ProbedModule,
    task: Task,
    inputs: Tensor,
    targets: Tensor,
    batch_size: int,
    n_batches: int,
    generator: torch.Generator,
    n_groups: int = 2,
) -> dict[str, float]:
    """``{"intra_cosine_subbatch": ..., "intra_cosine_classgroup": ...}`` (the second only for
    classification targets: 1-D integer labels); see the module docstring."""
    if batch_size < MIN_BATCH_SIZE:
        raise ValueError(f"batch size {batch_size} cannot be split into two halves")
    n = len(inputs)
    batch_size = min(batch_size, n)
    order = torch.randperm(n, generator=generator).to(inputs.device)
    subbatch, classgroup = [], []
    classified = targets.ndim == 1 and not torch.is_floating_point(targets)
    for k in range(min(n_batches, n // batch_size)):
        rows = order[k * batch_size : (k + 1) * batch_size]
        losses = task.loss(model(inputs[rows], [task.name])[task.name], targets[rows])
        half = batch_size // 2
        masks = [
            torch.arange(batch_size, device=inputs.device) < half,
            (torch.arange(batch_size, device=inputs.device) >= half)
            & (torch.arange(batch_size, device=inputs.device) < 2 * half),
        ]
        if classified:
            labels = targets[rows] % n_groups
            masks += [labels == group for group in range(n_groups)]
        means = [losses[mask].mean() if mask.any() else None for mask in masks]
        grads = _gradients(model, means)
        first, second = grads[0], grads[1]
        assert first is not None and second is not None  # the two half-batches are not empty
        subbatch.append(gradient_cosine(first, second))
        present = [g for g in grads[2:] if g is not None]
        if len(present) >= 2:
            classgroup.append(
                sum(gradient_cosine(a, b) for a, b in combinations(present, 2))
                / (len(present) * (len(present) - 1) / 2)
            )
    result = {"intra_cosine_subbatch": _mean(subbatch)}
    if classified:
        result["intra_cosine_classgroup"] = _mean(classgroup)
    return result


def _gradients(model: ProbedModule, losses: list[Tensor | None]) -> list[Tensor | None]:
    params = model.shared_parameters()
    present = [(k, loss) for k, loss in enumerate(losses) if loss is not None]
    out: list[Tensor | None] = [None] * len(losses)
    for j, (k, loss) in enumerate(present):
        grads = torch.autograd.grad(loss, params, retain_graph=j < len(present) - 1, allow_unused=True)
        out[k] = flatten(grads, params)
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


@register_probe("alignment", quantities=(INTRA_COSINE_SUBBATCH, INTRA_COSINE_CLASSGROUP), min_batch_size=MIN_BATCH_SIZE)
def alignment_probe(context: ProbeContext, task: Task, batches: Annotated[int, Field(gt=0)] = 4) -> dict[str, float]:
    """The probe ``alignment``: :func:`intra_task_alignment` over ``batches`` batches of the training
    batch size, drawn with a generator seeded from the task alone."""
    inputs, targets = context.samples[task.name]
    generator = torch.Generator().manual_seed(derived_seed(0, "alignment", task.name))
    return intra_task_alignment(context.model, task, inputs, targets, context.batch_size, batches, generator)


def inter_task_alignment(
    model: ProbedModule,
    tasks: Sequence[Task],
    samples: Mapping[str, tuple[Tensor, Tensor]],
    batch_size: int,
    n_batches: int,
    generator: torch.Generator,
) -> dict[tuple[str, str], float]:
    """``{(a, b): inter_cosine_subbatch}`` for every pair of ``tasks`` (``a`` before ``b``); see the module
    docstring.  One permutation per inputs tensor of ``samples`` (drawn with ``generator`` in task order), batches
    of ``min(batch_size, smallest sample)`` rows, at most ``n_batches`` of them.  Holds two gradients of the
    shared parameters per task at a time (the conflict probe holds one)."""
    if batch_size < MIN_BATCH_SIZE:
        raise ValueError(f"batch size {batch_size} cannot be split into two halves")
    orders: dict[int, Tensor] = {}
    for task in tasks:
        inputs = samples[task.name][0]
        if id(inputs) not in orders:
            orders[id(inputs)] = torch.randperm(len(inputs), generator=generator).to(inputs.device)
    n = min(len(samples[t.name][0]) for t in tasks)
    batch_size = min(batch_size, n)
    half = batch_size // 2
    pairs = list(combinations([t.name for t in tasks], 2))
    cosines: dict[tuple[str, str], list[float]] = {pair: [] for pair in pairs}
    for k in range(min(n_batches, n // batch_size)):
        halves: dict[str, list[Tensor | None]] = {}
        for task in tasks:
            inputs, targets = samples[task.name]
            rows = orders[id(inputs)][k * batch_size : (k + 1) * batch_size]
            losses = task.loss(model(inputs[rows], [task.name])[task.name], targets[rows])
            halves[task.name] = _gradients(model, [losses[:half].mean(), losses[half : 2 * half].mean()])
        for a, b in pairs:
            (a1, a2), (b1, b2) = halves[a], halves[b]
            assert a1 is not None and a2 is not None and b1 is not None and b2 is not None  # halves are not empty
            cosines[(a, b)].append((gradient_cosine(a1, b2) + gradient_cosine(a2, b1)) / 2)
    return {pair: _mean(values) for pair, values in cosines.items()}


@register_probe(
    "inter_alignment",
    per_task=False,
    quantities=(INTER_COSINE_SUBBATCH,),
    task_quantities=(),
    min_batch_size=MIN_BATCH_SIZE,
)
def inter_alignment_probe(context: ProbeContext, batches: Annotated[int, Field(gt=0)] = 4) -> list[Row]:
    """The probe ``inter_alignment``: :func:`inter_task_alignment` over ``batches`` batches of the training batch
    size (the ``alignment`` probe's default), one row per task pair ``a|b``; none in a run of one task."""
    if len(context.tasks) < 2:
        return []
    generator = torch.Generator().manual_seed(derived_seed(0, "inter_alignment"))
    values = inter_task_alignment(context.model, context.tasks, context.samples, context.batch_size, batches, generator)
    return [
        {"task": f"{a}{TASK_PAIR}{b}", "quantity": INTER_COSINE_SUBBATCH, "value": v} for (a, b), v in values.items()
    ]
