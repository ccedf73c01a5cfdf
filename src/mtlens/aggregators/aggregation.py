"""Update methods that aggregate per-task gradients of the shared parameters.

:class:`GradientAggregation` turns any :class:`~mtlens.aggregators.matrix.Aggregator` into
an :class:`~mtlens.aggregators.base.UpdateMethod`: from the one forward pass of the step it
computes ``G (K, P)`` on the shared (encoder) parameters with K backward passes
(:func:`mtlens.gradients.task_gradients`), writes the aggregated update into their
``.grad``, and gives every task head its own task's gradient (one more backward pass
through the heads only).  :class:`MGDAUpperBound` instead weighs the tasks by MGDA on the
gradients with respect to the shared representation ``z = encoder(x)`` and needs a single
backward pass through the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from mtlens.aggregators.base import UpdateMethod
from mtlens.aggregators.matrix import MGDA, Aggregator, check_gradient_matrix
from mtlens.gradients import assign_flat_gradient, flatten, task_gradients
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options


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


class MGDAUpperBound(UpdateMethod):
    r"""MGDA-UB (Sener & Koltun, NeurIPS 2018, Sec. 3.3): MGDA weights from the gradients
    with respect to the shared representation.

    With ``Z`` the encoder outputs of the step (one tensor per input source, concatenated),
    ``alpha = argmin_{alpha in simplex} ||sum_k alpha_k nabla_Z L_k||^2`` — the minimiser of an
    upper bound of MGDA's objective, since ``||sum_k alpha_k nabla_theta L_k|| <=
    ||dZ/dtheta|| ||sum_k alpha_k nabla_Z L_k||`` — then one backward pass of
    ``sum_k alpha_k L_k`` through the encoder; heads get their own task's gradient.
    ``normalization`` as in :class:`~mtlens.aggregators.matrix.MGDA` (default ``"none"``).

    Cost per step: K backward passes through the heads only, one through the whole model.
    The encoder's output is read by a forward hook that :meth:`attach` registers (the
    trainer calls it before training); only outputs computed with gradients enabled in
    training mode are recorded, and they are released at every :meth:`backward`.
    """

    @validate_options
    def __init__(self, normalization: Literal["none", "l2"] = "none"):
        self.mgda = MGDA(normalization)
        self._features: list[Tensor] = []
        self._hook: torch.utils.hooks.RemovableHandle | None = None

    def attach(self, model: MultiTaskModel) -> None:
        if self._hook is not None:
            self._hook.remove()
        self._features = []
        self._hook = model.encoder.register_forward_hook(self._record)

    def _record(self, module: nn.Module, inputs: Any, output: Any) -> None:
        del inputs
        if isinstance(output, Tensor) and output.requires_grad and module.training and torch.is_grad_enabled():
            self._features.append(output)

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        features, self._features = self._features, []
        if self._hook is None or not features:
            raise RuntimeError(
                "mgda_ub found no recorded shared representation: call method.attach(model) once before "
                "the forward pass (the trainer does), and run the encoder with gradients enabled in train mode"
            )
        tasks = list(losses)
        values = [losses[t] for t in tasks]
        rows = [
            flatten(torch.autograd.grad(loss, features, retain_graph=True, allow_unused=True), features)
            for loss in values
        ]
        matrix = torch.stack(rows)
        check_gradient_matrix(matrix, tasks)
        weights = cast(Tensor, self.mgda.aggregate(matrix).weights)
        shared = model.shared_parameters()
        if shared:
            weighted = (weights.detach() * torch.stack(values)).sum()
            grads = torch.autograd.grad(weighted, shared, retain_graph=True, allow_unused=True)
            assign_flat_gradient(shared, flatten(grads, shared))
        set_head_gradients(values, tasks, model)
        return weight_diagnostics(tasks, weights)
