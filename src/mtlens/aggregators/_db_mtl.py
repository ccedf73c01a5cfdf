"""DB-MTL: dual balancing (Lin et al. 2023).

The formula, defaults and cost are the class docstring.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import NonNegativeFloat
from torch import Tensor

from mtlens.aggregators._aggregator import check_gradient_matrix
from mtlens.aggregators._gradient_aggregation import set_head_gradients, shared_gradient_matrix, weight_diagnostics
from mtlens.aggregators._weighting import (
    LOG_EPS,
    LossWeighting,
    require_positive_losses,
)
from mtlens.gradients import assign_flat_gradient
from mtlens.models import MultiTaskModel
from mtlens.registry import UnitInterval, validate_options


class DBMTL(LossWeighting):
    r"""DB-MTL (Lin et al. 2023, "Dual-Balancing for Multi-Task Learning").

    Loss-scale balance: task gradients of ``log(L_k + 1e-8)``.  Gradient-magnitude balance:
    an EMA ``h_k <- g_k + beta_t (h_k - g_k)`` (``h = 0`` at the start,
    ``beta_t = beta / t^beta_sigma`` at step ``t``), then the shared update
    ``sum_k (max_j ||h_j|| / (||h_k|| + 1e-8)) h_k``; heads get ``nabla log(L_k + 1e-8)``.
    ``beta = 0.9``, ``beta_sigma = 0`` (the authors' LibMTL defaults).  State: the
    (K x P) buffer ``h``.  Cost: K backward passes.  Diagnostics: the scale factors.
    """

    @validate_options
    def __init__(self, beta: UnitInterval = 0.9, beta_sigma: NonNegativeFloat = 0.0) -> None:
        super().__init__()
        self.beta, self.beta_sigma = beta, beta_sigma
        self.buffer: Tensor | None = None
        self.steps = 0

    def _init_state(self, values: Tensor) -> None:
        del values

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        tasks, values = self._bind(losses)
        require_positive_losses(values, tasks, "db_mtl")
        log_losses = list(torch.log(values + LOG_EPS).unbind())
        shared = model.shared_parameters()
        matrix = shared_gradient_matrix(log_losses, shared)
        check_gradient_matrix(matrix, tasks)
        self.steps += 1
        decay = self.beta / self.steps**self.beta_sigma
        previous = torch.zeros_like(matrix) if self.buffer is None else self.buffer
        self.buffer = matrix + decay * (previous - matrix)
        norms = self.buffer.norm(dim=1)
        scales = norms.max() / (norms + LOG_EPS)
        if shared:
            assign_flat_gradient(shared, scales @ self.buffer)
        set_head_gradients(log_losses, tasks, model)
        return weight_diagnostics(tasks, scales)

    def _state(self) -> dict[str, Any]:
        return {"buffer": self.buffer, "steps": self.steps}

    def _load(self, state: dict[str, Any]) -> None:
        self.buffer, self.steps = state["buffer"], int(state["steps"])
