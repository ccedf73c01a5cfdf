"""Inter-task gradient conflict on the shared parameters.

For each task ``t`` of the run, ``g_t = nabla_theta_s L_t`` is the gradient of the task's mean
loss over its fixed probe sample with respect to the shared (encoder) parameters ``theta_s``.
Per pair ``(a, b)`` (``a`` before ``b`` in the setting's task order):

* ``conflict_cosine = <g_a, g_b> / (||g_a|| ||g_b||)``;
* ``magnitude_similarity = 2 ||g_a|| ||g_b|| / (||g_a||^2 + ||g_b||^2)`` (1 for equal norms, -> 0 as
  they diverge; Yu et al. 2020);
* ``magnitude_ratio = ||g_a|| / ||g_b||``;

per task ``grad_norm = ||g_t||`` and, given the update direction ``d`` of the training step,
``update_cosine = <g_t, d> / (||g_t|| ||d||)``; per run ``conflict_fraction`` (the fraction of pairs
with ``conflict_cosine < 0``) and ``update_norm = ||d||``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import torch
from torch import Tensor

from mtlens.gradients import task_gradients
from mtlens.probes.base import ProbeContext, Row, register_probe
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import (
    CONFLICT_COSINE,
    CONFLICT_FRACTION,
    GRAD_NORM,
    MAGNITUDE_RATIO,
    MAGNITUDE_SIMILARITY,
    RUN_ROW,
    TASK_PAIR,
    UPDATE_COSINE,
    UPDATE_NORM,
)
from mtlens.tasks import Task


def mean_task_gradients(
    model: ProbedModule, tasks: Sequence[Task], samples: Mapping[str, tuple[Tensor, Tensor]], chunk_size: int = 512
) -> dict[str, Tensor]:
    """``{t: g_t (P,)}``: the gradient of ``mean_i loss_t(x_i, y_i)`` over task ``t``'s sample
    ``samples[t] = (inputs (N, ...), targets (N, ...))`` on ``model.shared_parameters()``.

    Tasks whose samples have the same inputs object share one forward pass per chunk (one
    backward pass per task).  The model is used as it is (train or eval mode is the caller's choice).
    """
    params = model.shared_parameters()
    groups: dict[int, list[Task]] = {}
    for task in tasks:
        groups.setdefault(id(samples[task.name][0]), []).append(task)
    gradients: dict[str, Tensor] = {}
    for group in groups.values():
        inputs = samples[group[0].name][0]
        n = len(inputs)
        width = sum(p.numel() for p in params)
        total = torch.zeros(len(group), width, dtype=params[0].dtype, device=inputs.device)
        for start in range(0, n, chunk_size):
            outputs = model(inputs[start : start + chunk_size], [t.name for t in group])
            losses = [t.loss(outputs[t.name], samples[t.name][1][start : start + chunk_size]).sum() / n for t in group]
            total += task_gradients(losses, params)
        gradients.update({t.name: total[k] for k, t in enumerate(group)})
    return gradients


def conflict_measures(gradients: Mapping[str, Tensor], update: Tensor | None = None) -> list[dict[str, object]]:
    """Rows ``{"task", "quantity", "value"}`` of the measures in the module docstring.

    ``gradients`` maps task names (in the setting's order) to ``g_t``; ``update`` is the applied
    update direction ``d`` on the same parameters, or ``None`` (step 0: no update yet), in which
    case the update rows are left out.  Pair rows need at least two tasks.
    """
    rows: list[dict[str, object]] = []
    norms = {t: g.norm().item() for t, g in gradients.items()}
    for task, g in gradients.items():
        rows.append({"task": task, "quantity": GRAD_NORM, "value": norms[task]})
        if update is not None:
            rows.append({"task": task, "quantity": UPDATE_COSINE, "value": gradient_cosine(g, update)})
    pairs = list(combinations(gradients, 2))
    cosines = []
    for a, b in pairs:
        cosine = gradient_cosine(gradients[a], gradients[b])
        cosines.append(cosine)
        na, nb = norms[a], norms[b]
        similarity = 2 * na * nb / (na**2 + nb**2) if na**2 + nb**2 > 0 else float("nan")
        ratio = na / nb if nb > 0 else float("nan")
        rows += [
            {"task": f"{a}{TASK_PAIR}{b}", "quantity": CONFLICT_COSINE, "value": cosine},
            {"task": f"{a}{TASK_PAIR}{b}", "quantity": MAGNITUDE_SIMILARITY, "value": similarity},
            {"task": f"{a}{TASK_PAIR}{b}", "quantity": MAGNITUDE_RATIO, "value": ratio},
        ]
    if pairs:
        rows.append(
            {"task": RUN_ROW, "quantity": CONFLICT_FRACTION, "value": sum(c < 0 for c in cosines) / len(cosines)}
        )
    if update is not None:
        rows.append({"task": RUN_ROW, "quantity": UPDATE_NORM, "value": update.norm().item()})
    return rows


def gradient_cosine(a: Tensor, b: Tensor) -> float:
    """``<a, b> / (||a|| ||b||)`` in float64; NaN when either vector is zero."""
    a, b = a.double(), b.double()
    denominator = a.norm() * b.norm()
    return (a @ b / denominator).item() if denominator > 0 else float("nan")


@register_probe(
    "conflict",
    per_task=False,
    quantities=(
        GRAD_NORM,
        UPDATE_COSINE,
        CONFLICT_COSINE,
        MAGNITUDE_SIMILARITY,
        MAGNITUDE_RATIO,
        CONFLICT_FRACTION,
        UPDATE_NORM,
    ),
    task_quantities=(GRAD_NORM, UPDATE_COSINE),
)
def conflict_probe(context: ProbeContext) -> list[Row]:
    """The probe ``conflict``: :func:`conflict_measures` of the tasks' mean gradients on their probe
    samples and the step's update."""
    return conflict_measures(mean_task_gradients(context.model, context.tasks, context.samples), context.update)
