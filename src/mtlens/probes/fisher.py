"""Trace of the (true) Fisher information (Jastrzebski et al. 2021).

``Tr F = E_x E_{y_hat ~ p_theta(.|x)} ||grad_theta log p_theta(y_hat | x)||^2`` on the probe
parameters.  ``task.loss`` is the negative log-likelihood, so with labels drawn from the
model ``grad loss(x, y_hat) = -grad log p_theta(y_hat | x)``; write ``g_i`` for it.  Labels are
drawn once for all inputs, ``y_hat = task.sample_labels(outputs, generator)`` with the
model's eval-mode outputs, so a given generator state gives a reproducible estimate.

Estimators over the ``N`` inputs, split into consecutive batches ``B_1, B_2, ...`` of
``batch_size`` (the last one may be shorter):

* ``"batch"`` (the paper's, ``|B| = 16``):
  ``T = sum_k (|B_k|/N) * |B_k| * ||(1/|B_k|) sum_{i in B_k} g_i||^2``
  (a plain mean over batches when ``batch_size`` divides ``N``).  One gradient per batch.
* ``"exact"``: ``T_exact = (1/N) sum_i ||g_i||^2`` from per-example gradients.

What they estimate.  Expand one batch term:
``|B| ||mean_B g||^2 = (1/|B|) sum_{i in B} ||g_i||^2 + (1/|B|) sum_{i != j in B} <g_i, g_j>``.
For i.i.d. gradients this has expectation ``E||g||^2 + (|B| - 1) ||E g||^2``: the batch
estimator is biased upward by ``(|B|-1) ||E g||^2`` whenever the gradients have a
non-zero mean, e.g. with the data's labels (empirical Fisher).  With labels sampled from
the model, though, the score has zero mean for every input:
``E_{y_hat ~ p(.|x_i)} [grad log p(y_hat | x_i)] = grad sum_y p(y|x_i) = grad 1 = 0``, and the
labels of different examples are drawn independently, so conditionally on the inputs
``E[<g_i, g_j>] = <E g_i, E g_j> = 0`` for ``i != j``.  Hence, for the given inputs,
``E_{y_hat}[T] = E_{y_hat}[T_exact] = (1/N) sum_i Tr F(x_i)``: both are unbiased
estimates of the Fisher trace averaged over the inputs (and of ``Tr F`` when the inputs
are a sample of the data).  The exact estimator has the smaller variance (no cross terms).
This relies on ``task.sample_labels`` drawing from the distribution whose NLL is
``task.loss`` (true for the built-in classification, binary and Gaussian-regression tasks).

Computed in eval mode (see :mod:`mtlens.probes.per_example`); the generator must live
on the model's device; torch's global random state is not used.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from mtlens.probes.base import ProbeContext, register_probe
from mtlens.probes.per_example import eval_mode, gradient_moments
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import FISHER_TRACE
from mtlens.seeding import derived_seed
from mtlens.tasks import Task

ESTIMATORS = ("batch", "exact")


def sample_model_labels(
    model: ProbedModule, task: Task, inputs: Tensor, generator: torch.Generator, chunk_size: int = 256
) -> Tensor:
    """``y_hat = task.sample_labels(outputs, generator)`` with the eval-mode outputs on all inputs."""
    with eval_mode(model), torch.no_grad():
        outputs = torch.cat(
            [model(inputs[i : i + chunk_size], [task.name])[task.name] for i in range(0, len(inputs), chunk_size)]
        )
    return task.sample_labels(outputs, generator)


def fisher_trace(
    model: ProbedModule,
    task: Task,
    inputs: Tensor,
    generator: torch.Generator,
    batch_size: int = 16,
    estimator: str = "batch",
    chunk_size: int = 256,
) -> dict[str, float]:
    """Fisher-trace estimate with labels sampled from the model.

    Returns ``{"fisher_trace": T}`` for ``estimator="batch"``; for ``estimator="exact"``
    ``{"fisher_trace": T_exact, "fisher_trace_exact": T_exact}`` (see the module docstring
    for both formulas and why they are unbiased).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if len(inputs) == 0:
        raise ValueError("the Fisher trace needs at least one input")
    labels = sample_model_labels(model, task, inputs, generator, chunk_size)
    group = 1 if estimator == "exact" else batch_size
    # sum_k (|B_k|/N) |B_k| ||mean_{B_k} g||^2 = sum_k ||sum_{B_k} g||^2 / N
    _, total, _ = gradient_moments(model, task, inputs, labels, group, chunk_size)
    trace = float(total) / len(inputs)
    return {"fisher_trace": trace, "fisher_trace_exact": trace} if estimator == "exact" else {"fisher_trace": trace}


@register_probe("fisher", quantities=(FISHER_TRACE,))
def fisher_probe(context: ProbeContext, task: Task, batch_size: Annotated[int, Field(gt=0)] = 16) -> dict[str, float]:
    """The probe ``fisher``: :func:`fisher_trace` on the task's probe inputs, labels drawn with a
    generator seeded from ``(run seed, task, step)`` (so a resumed run redraws the same labels)."""
    inputs, _ = context.samples[task.name]
    generator = torch.Generator(device=inputs.device).manual_seed(
        derived_seed(context.seed, "fisher", task.name, str(context.step))
    )
    return fisher_trace(context.model, task, inputs, generator, batch_size=batch_size)
