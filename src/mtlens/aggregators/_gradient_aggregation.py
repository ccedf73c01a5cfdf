"""Gradient aggregators as update methods: :class:`GradientAggregation` turns any aggregator into an
:class:`~mtlens.aggregators.base.UpdateMethod`.

From the one forward pass of the step it computes ``G (K, P)`` on the shared (encoder) parameters with K
backward passes (:func:`mtlens.gradients.task_gradients`), writes the aggregated update into their ``.grad``,
and gives every task head its own task's gradient (one more backward pass through the heads only).  The
helpers here are shared with the loss weightings that need ``G`` (GradNorm, DB-MTL) and with MGDA-UB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mtlens.aggregators._aggregator import Aggregator, check_gradient_matrix
from mtlens.aggregators.base import UpdateMethod
from mtlens.gradients import assign_flat_gradient, task_gradients
from mtlens.models import MultiTaskModel


def shared_gradient_matrix(losses: Sequence[Tensor], params: Sequence[nn.Parameter]) -> Tensor:
    """``G (K, P)`` of ``losses`` on ``params``, keeping the graph (the heads still need it);
    ``(K, 0)`` when there are no trainable shared parameters."""
    if not params:
        return torch.zeros(len(losses), 0, dtype=losses[0].dtype, device=losses[0].device)
    return task_gradients(losses, params, retain_graph=True)


def set_head_gradients(
    losses: Sequence[Tensor], tasks: Sequence[str], model: MultiTaskModel, weights: Tensor | None = None
) -> None:
    """Set ``.grad`` of each task's head to ``w_t * nabla_head_t L_t`` (``w_t = 1`` without
    ``weights``): one backward pass of ``sum_t w_t L_t`` restricted to head parameters, which
    frees the graph.  Heads of other tasks do not depend on ``L_t``."""
    params = [p for task in tasks for p in model.head_parameters(task)]
    if not params:
        return
    total = torch.stack(list(losses)) if weights is None else weights.detach() * torch.stack(list(losses))
    grads = torch.autograd.grad(total.sum(), params, allow_unused=True)
    for param, grad in zip(params, grads):
        param.grad = torch.zeros_like(param) if grad is None else grad


def weight_diagnostics(tasks: Sequence[str], weights: Tensor | None) -> dict[str, float]:
    """``{"weight/<task>": w_t}`` for diagnostics, or ``{}`` without weights."""
    if weights is None:
        return {}
    return {f"weight/{task}": value for task, value in zip(tasks, weights.detach().cpu().tolist())}


class GradientAggregation(UpdateMethod):
    """Shared parameters get ``aggregator(G)``; each head gets its own task's gradient.

    Cost per step: one forward pass, K backward passes for ``G`` plus one through the
    heads, the aggregator's ``O(K^2 P)`` Gram product (if it uses one) and its small
    K x K solve.  Returns the task weights as diagnostics where the aggregator has them.
    """

    def __init__(self, aggregator: Aggregator):
        self.aggregator = aggregator

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        tasks = list(losses)
        values = [losses[t] for t in tasks]
        shared = model.shared_parameters()
        matrix = shared_gradient_matrix(values, shared)
        check_gradient_matrix(matrix, tasks)
        result = self.aggregator.aggregate(matrix)
        if shared:
            assign_flat_gradient(shared, result.update)
        set_head_gradients(values, tasks, model)
        return weight_diagnostics(tasks, result.weights)

    def state_dict(self) -> dict[str, Any]:
        return self.aggregator.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.aggregator.load_state_dict(state)
