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
"""

from __future__ import annotations

from itertools import combinations
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from mtlens.gradients import flatten
from mtlens.probes.base import ProbeContext, register_probe
from mtlens.probes.conflict import gradient_cosine
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import INTRA_COSINE_CLASSGROUP, INTRA_COSINE_SUBBATCH
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
