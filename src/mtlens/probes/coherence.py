"""Gradient coherence (Chatterjee 2020; Chatterjee & Zielinski 2022).

With per-example gradients ``g_1..g_m`` of the task loss on the probe parameters::

    alpha = ||(1/m) sum_i g_i||^2 / ((1/m) sum_i ||g_i||^2)        in [0, 1]
    m-coherence = m * alpha                                        in [0, m]

``m-coherence`` is 0 when the mean gradient vanishes, 1 when the gradients are pairwise
orthogonal with equal norms and ``m`` when they are all identical.  Computed in eval mode
(see :mod:`mtlens.probes.per_example`).
"""

from __future__ import annotations

from torch import Tensor

from mtlens.probes.base import ProbeContext, register_probe
from mtlens.probes.per_example import per_example_gradient_moments
from mtlens.probes.protocol import ProbedModule
from mtlens.quantities import GRAD_COHERENCE, M_COHERENCE
from mtlens.tasks import Task


def gradient_coherence(
    model: ProbedModule, task: Task, inputs: Tensor, targets: Tensor, chunk_size: int = 256
) -> dict[str, float]:
    """``{"grad_coherence": alpha, "m_coherence": m * alpha}`` over the ``m = len(inputs)`` examples."""
    total, sum_sq, m = per_example_gradient_moments(model, task, inputs, targets, chunk_size)
    mean_sq = float(sum_sq) / m
    alpha = float(total.pow(2).sum()) / m**2 / mean_sq if mean_sq > 0 else float("nan")
    return {"grad_coherence": alpha, "m_coherence": m * alpha}


@register_probe("coherence", quantities=(GRAD_COHERENCE, M_COHERENCE))
def coherence_probe(context: ProbeContext, task: Task) -> dict[str, float]:
    """The probe ``coherence``: :func:`gradient_coherence` on the task's probe sample."""
    inputs, targets = context.samples[task.name]
    return gradient_coherence(context.model, task, inputs, targets)
