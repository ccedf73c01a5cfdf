"""Linear scalarization: the plain sum of task losses."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from mtlens.aggregators.base import UpdateMethod
from mtlens.models import MultiTaskModel
from mtlens.registry import validate_options


class LinearScalarization(UpdateMethod):
    """``grad = nabla_theta sum_t L_t`` (the losses arrive already scaled by ``C * s_t``), or
    of the mean ``(1/K) sum_t L_t`` with ``reduction="mean"``.  One backward pass.

    With one task this is ordinary single-task training, so STL and MTL share one code path.
    """

    @validate_options
    def __init__(self, reduction: Literal["sum", "mean"] = "sum"):
        self.reduction = reduction

    def objective(self, losses: dict[str, Tensor]) -> Tensor:
        """The scalar whose gradient the update is: ``sum_t L_t``, or ``(1/K) sum_t L_t`` (a pack of runs,
        :mod:`mtlens.training.pack`, back-propagates the sum of its members' objectives at once)."""
        stacked = torch.stack(list(losses.values()))
        return stacked.sum() if self.reduction == "sum" else stacked.mean()

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        del model
        self.objective(losses).backward()
        return {}
