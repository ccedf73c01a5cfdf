"""GradNorm: gradient normalization (Chen et al. 2018).

The formula, defaults and cost are the class docstring.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import NonNegativeFloat, PositiveFloat
from torch import Tensor

from mtlens.aggregators._aggregator import check_gradient_matrix
from mtlens.aggregators._gradient_aggregation import set_head_gradients, shared_gradient_matrix, weight_diagnostics
from mtlens.aggregators._weighting import (
    LearnedWeights,
)
from mtlens.gradients import assign_flat_gradient
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options


class GradNorm(LearnedWeights):
    r"""GradNorm (Chen et al., ICML 2018, "GradNorm: Gradient Normalization for Adaptive
    Loss Balancing in Deep Multitask Networks").

    The model gets ``nabla sum_k w_k L_k``.  Then, with ``G_k = w_k ||g_k||`` (``g_k`` the
    gradient of ``L_k`` on all shared parameters, LibMTL's choice for the paper's "last
    shared layer"), ``r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0))`` (``L_k(0)`` the first
    step's losses) and the target ``mean_j(G_j) r_k^alpha`` held constant, ``w`` takes one Adam
    step on ``sum_k |G_k - target_k|`` and is renormalised to ``sum_k w_k = K`` (negative
    weights are clipped to 0 first — our choice; the paper does not say).  Start ``w = 1``.
    ``alpha = 1.5`` (the paper's NYUv2 value, LibMTL's default); ``lr``: Adam learning rate
    of ``w`` (default 1e-3).  Cost: K backward passes for the task gradients.
    """

    initial_value = 1.0

    @validate_options
    def __init__(self, alpha: NonNegativeFloat = 1.5, lr: PositiveFloat = 1e-3) -> None:
        super().__init__(lr)
        self.alpha = alpha
        self.initial_losses: Tensor | None = None

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        tasks, values = self._bind(losses)
        assert self.params is not None and self.optimizer is not None
        shared = model.shared_parameters()
        matrix = shared_gradient_matrix(list(values.unbind()), shared)
        check_gradient_matrix(matrix, tasks)
        weights = self.params.detach().clone()
        if shared:
            assign_flat_gradient(shared, weights.to(matrix.dtype) @ matrix)
        set_head_gradients(list(values.unbind()), tasks, model, weights)

        current = values.detach()
        if self.initial_losses is None:
            self.initial_losses = current.clone()
        ratio = current / self.initial_losses.clamp_min(torch.finfo(current.dtype).tiny)
        relative_rate = ratio / ratio.mean().clamp_min(torch.finfo(current.dtype).tiny)
        scaled_norms = self.params * matrix.norm(dim=1).to(self.params.dtype)
        target = (scaled_norms.mean() * relative_rate**self.alpha).detach()
        self.params.grad = torch.autograd.grad((scaled_norms - target).abs().sum(), self.params)[0]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            self.params.clamp_(min=0.0)
            total = self.params.sum()
            if total > 0:
                self.params.mul_(len(tasks) / total)
            else:
                self.params.fill_(1.0)
        return weight_diagnostics(tasks, weights)

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "initial_losses": self.initial_losses}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self.initial_losses = state["initial_losses"]
