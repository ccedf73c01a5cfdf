"""MGDA-UB: MGDA weights from the gradients of the shared representation (Sener & Koltun 2018)."""

from __future__ import annotations

from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from mtlens.aggregators._aggregator import check_gradient_matrix
from mtlens.aggregators._gradient_aggregation import set_head_gradients, weight_diagnostics
from mtlens.aggregators._mgda import MGDA
from mtlens.aggregators.base import UpdateMethod
from mtlens.gradients import assign_flat_gradient, flatten
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options


class MGDAUpperBound(UpdateMethod):
    r"""MGDA-UB (Sener & Koltun, NeurIPS 2018, Sec. 3.3): MGDA weights from the gradients
    with respect to the shared representation.

    With ``Z`` the encoder outputs of the step (one tensor per input source, concatenated),
    ``alpha = argmin_{alpha in simplex} ||sum_k alpha_k nabla_Z L_k||^2`` — the minimiser of an
    upper bound of MGDA's objective, since ``||sum_k alpha_k nabla_theta L_k|| <=
    ||dZ/dtheta|| ||sum_k alpha_k nabla_Z L_k||`` — then one backward pass of
    ``sum_k alpha_k L_k`` through the encoder; heads get their own task's gradient.
    ``normalization`` as in :class:`~mtlens.aggregators.MGDA` (default ``"none"``).

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
