"""FAMO: fast adaptive multitask optimization (Liu et al. 2023).

The formula, defaults and cost are the class docstring.
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import NonNegativeFloat, PositiveFloat
from torch import Tensor

from mtlens.aggregators._gradient_aggregation import weight_diagnostics
from mtlens.aggregators._weighting import (
    LOG_EPS,
    LearnedWeights,
    require_positive_losses,
)
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options


class FAMO(LearnedWeights):
    r"""FAMO (Liu et al., NeurIPS 2023, "FAMO: Fast Adaptive Multitask Optimization").

    Logits ``xi`` (start 0), ``z = softmax(xi)``.  The model gets the gradient of
    ``sum_k z_k log(L_k + 1e-8) / c`` with ``c = sum_k z_k / (L_k + 1e-8)`` (held constant),
    i.e. loss weights ``z_k / (c (L_k + 1e-8))``; the shared gradient is then clipped to
    norm ``max_norm`` (``0`` disables).  The logits take an Adam step (``w_lr``, weight
    decay ``gamma``) on ``J_softmax(xi)^T delta`` with ``delta_k = log L_k(before) -
    log L_k(after)`` — the decrease of log-loss over one update.  The authors measure
    "after" on the same batch with an extra forward pass; here it is the next step's
    loss on the next batch (no extra pass; an approximation noted in ``docs/methods.md``).
    Minimum losses are taken as 0 (the authors' default).  Defaults ``w_lr = 0.025``,
    ``gamma = 0.01``, ``max_norm = 1.0`` (the authors' ``famo.py``).  Cost: one backward.
    """

    @validate_options
    def __init__(
        self, w_lr: PositiveFloat = 0.025, gamma: NonNegativeFloat = 0.01, max_norm: NonNegativeFloat = 1.0
    ) -> None:
        super().__init__(w_lr, weight_decay=gamma)
        self.max_norm = max_norm
        self.previous_losses: Tensor | None = None

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        tasks, values = self._bind(losses)
        assert self.params is not None and self.optimizer is not None
        require_positive_losses(values, tasks, "famo")
        current = values.detach()
        if self.previous_losses is not None:
            decrease = torch.log(self.previous_losses + LOG_EPS) - torch.log(current + LOG_EPS)
            with torch.enable_grad():
                (gradient,) = torch.autograd.grad(
                    torch.softmax(self.params, dim=0), self.params, grad_outputs=decrease.to(self.params.dtype)
                )
            self.params.grad = gradient
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.previous_losses = current.clone()
        z = torch.softmax(self.params.detach(), dim=0).to(values.dtype)
        shifted = values + LOG_EPS
        normalizer = (z / shifted.detach()).sum()
        (z * torch.log(shifted) / normalizer).sum().backward()
        shared = model.shared_parameters()
        if self.max_norm > 0 and shared:
            torch.nn.utils.clip_grad_norm_(shared, self.max_norm)
        return weight_diagnostics(tasks, z / (normalizer * shifted.detach()))

    def _state(self) -> dict[str, Any]:
        return {**super()._state(), "previous_losses": self.previous_losses}

    def _load(self, state: dict[str, Any]) -> None:
        super()._load(state)
        self.previous_losses = state["previous_losses"]
