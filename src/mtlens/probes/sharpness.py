"""Adaptive sharpness (Andriushchenko et al. 2023) and its first-order SAM estimate.

For a batch ``B`` with mean loss ``L_B`` on the probe parameters ``theta``, write the
perturbation in the rescaled variable ``u = delta / |theta|`` (elementwise), so
``delta = |theta| * u`` and entries with ``theta = 0`` are never perturbed:

* adaptive worst-case m-sharpness, averaged over the batches::

      S_B = max_{||u||_2 <= rho} L_B(theta + |theta| * u) - L_B(theta)

  found by projected gradient ascent in ``u`` started at the SAM point
  ``u_0 = rho * v / ||v||`` with ``v = |theta| * grad L_B(theta)``.  With ``step_size=None``
  each step maximizes the linearization over the ball, ``u <- rho * d / ||d||`` with
  ``d = grad_u L_B(theta + |theta| * u) = |theta| * grad L_B(.)`` (for a convex loss every
  such step does not decrease the objective); with a number, ``u <- Proj(u + step_size * d / ||d||)``.
  The largest value seen, including ``u = 0``, is reported, so ``S_B >= 0`` and ``S_B`` is a
  lower bound of the true maximum.
* SAM's first-order estimate ``S_B ~ rho * || |theta| * grad L_B(theta) ||_2``.

Batches are consecutive runs of ``batch_size`` inputs (the last may be shorter);
batch values are averaged with weights ``|B|/N`` (a plain mean when ``batch_size``
divides ``N``).  Weights are perturbed functionally (:func:`torch.func.functional_call`
with perturbed tensors), never in place; the model runs in eval mode (batch norm uses
its running statistics) and its train/eval flags are restored.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

import torch
from pydantic import Field
from torch import Tensor
from torch.func import grad_and_value

from mtlens.probes.base import ProbeContext, register_probe
from mtlens.probes.per_example import (
    Params,
    detached_parameters,
    eval_mode,
    summed_loss,
)
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import SHARPNESS, SHARPNESS_SAM
from mtlens.tasks import Task


def _norm(tensors: Params) -> Tensor:
    return torch.sqrt(cast(Tensor, sum(t.pow(2).sum() for t in tensors.values())))  # not empty: not sum's 0


def _scaled(tensors: Params, factor: Tensor | float) -> Params:
    return {name: t * factor for name, t in tensors.items()}


def _batches(inputs: Tensor, targets: Tensor, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    if len(inputs) != len(targets) or len(inputs) == 0:
        raise ValueError(f"need as many targets as inputs (>= 1), got {len(inputs)} and {len(targets)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for start in range(0, len(inputs), batch_size):
        yield inputs[start : start + batch_size], targets[start : start + batch_size]


def _perturbed_loss_and_gradient(
    model: ProbedModule, task: Task, params: Params, inputs: Tensor, targets: Tensor, u: Params
) -> tuple[Params, Tensor]:
    """``(grad_u f(u), f(u))`` for ``f(u) = L_B(theta + |theta| * u)`` (mean loss over the batch)."""
    loss = summed_loss(model, task)
    n = len(inputs)

    def perturbed(v: Params) -> Tensor:
        return loss({name: p + p.abs() * v[name] for name, p in params.items()}, inputs, targets) / n

    return grad_and_value(perturbed)(u)


def _batch_sharpness(
    model, task, params: Params, x: Tensor, y: Tensor, rho: float, steps: int | None, step_size: float | None
) -> tuple[float, float]:
    """``(worst-case S_B, SAM estimate)`` for one batch; ``steps=None`` skips the ascent (worst-case 0)."""
    zero = {name: torch.zeros_like(p) for name, p in params.items()}
    direction, base = _perturbed_loss_and_gradient(model, task, params, x, y, zero)
    sam = rho * float(_norm(direction))
    best, u = 0.0, zero
    for step in range(0 if steps is None else steps + 1):  # the SAM point, then `steps` ascent steps
        norm = _norm(direction)
        if float(norm) == 0.0:
            break
        if step == 0 or step_size is None:
            u = _scaled(direction, rho / norm)
        else:
            u = {name: u[name] + direction[name] * (step_size / norm) for name in u}
            u = _scaled(u, torch.clamp(rho / _norm(u), max=1.0))
        direction, value = _perturbed_loss_and_gradient(model, task, params, x, y, u)
        best = max(best, float(value - base))
    return best, sam


def sharpness_measures(
    model: ProbedModule,
    task: Task,
    inputs: Tensor,
    targets: Tensor,
    rho: float = 1e-3,
    batch_size: int = 128,
    steps: int | None = 10,
    step_size: float | None = None,
) -> dict[str, float]:
    """``{"sharpness": mean_B S_B, "sharpness_sam": mean_B rho * || |theta| * grad L_B ||_2}``.

    Both come from the same gradients: the SAM estimate is the first step of the ascent.
    ``steps=None`` computes only the SAM estimate (one gradient per batch; ``"sharpness"``
    is then absent); otherwise each batch costs ``steps + 2`` gradient evaluations.
    """
    if rho <= 0 or (steps is not None and steps < 0):
        raise ValueError(f"need rho > 0 and steps >= 0, got rho={rho}, steps={steps}")
    worst, sam = 0.0, 0.0
    with eval_mode(model):
        params = detached_parameters(model, task.name)
        for x, y in _batches(inputs, targets, batch_size):
            batch_worst, batch_sam = _batch_sharpness(model, task, params, x, y, rho, steps, step_size)
            worst += batch_worst * len(x) / len(inputs)
            sam += batch_sam * len(x) / len(inputs)
    return {"sharpness_sam": sam} if steps is None else {"sharpness": worst, "sharpness_sam": sam}


Positive = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


@register_probe("sharpness", quantities=(SHARPNESS,))
def sharpness_probe(
    context: ProbeContext, task: Task, rho: Positive = 1e-3, batch_size: PositiveInt = 128, steps: PositiveInt = 10
) -> dict[str, float]:
    """The probe ``sharpness``: adaptive worst-case sharpness (:func:`sharpness_measures`, ``steps``
    ascent steps) on the task's probe sample."""
    inputs, targets = context.samples[task.name]
    measured = sharpness_measures(context.model, task, inputs, targets, rho=rho, batch_size=batch_size, steps=steps)
    return {"sharpness": measured["sharpness"]}


@register_probe("sharpness_sam", quantities=(SHARPNESS_SAM,))
def sharpness_sam_probe(
    context: ProbeContext, task: Task, rho: Positive = 1e-3, batch_size: PositiveInt = 128
) -> dict[str, float]:
    """The probe ``sharpness_sam``: SAM's first-order sharpness estimate (one gradient per batch)."""
    inputs, targets = context.samples[task.name]
    return sharpness_measures(context.model, task, inputs, targets, rho=rho, batch_size=batch_size, steps=None)
