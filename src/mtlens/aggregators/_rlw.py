"""Random loss weighting (Lin et al. 2022).

The formula, defaults and cost are the class docstring.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtlens.aggregators._gradient_aggregation import weight_diagnostics
from mtlens.aggregators._weighting import (
    LossWeighting,
)
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options


class RLW(LossWeighting):
    r"""Random loss weighting (Lin et al., TMLR 2022, "Reasonable Effectiveness of Random
    Weighting: A Litmus Test for Multi-Task Learning", Alg. 1): ``w = softmax(z)``,
    ``z ~ N(0, I_K)`` drawn from ``generator`` every step; back-propagates ``sum_k w_k L_k``.
    No hyperparameters (the paper's default normal distribution).  Cost: one backward.
    """

    @validate_options
    def __init__(self, generator: torch.Generator) -> None:
        super().__init__()
        self.generator = generator

    def _init_state(self, values: Tensor) -> None:
        del values

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        del model
        tasks, values = self._bind(losses)
        z = torch.randn(len(tasks), generator=self.generator, dtype=torch.float64)
        weights = torch.softmax(z, dim=0).to(values.dtype).to(values.device)
        (weights * values).sum().backward()
        return weight_diagnostics(tasks, weights)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(), **super().state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.generator.set_state(state["generator"].cpu())
            super().load_state_dict({k: v for k, v in state.items() if k != "generator"})

    def _state(self) -> dict[str, Any]:
        return {}

    def _load(self, state: dict[str, Any]) -> None:
        del state
