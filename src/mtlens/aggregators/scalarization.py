"""Linear scalarization: the plain sum of task losses."""

from __future__ import annotations

import torch
from torch import Tensor

from mtlens.aggregators.base import UpdateMethod
from mtlens.models import MultiTaskModel


class LinearScalarization(UpdateMethod):
    """``grad = nabla_theta sum_t L_t`` (the losses arrive already scaled by ``C * s_t``).

    With one task this is ordinary single-task training, so STL and MTL share one code path.
    """

    def backward(self, losses: dict[str, Tensor], model: MultiTaskModel) -> dict[str, float]:
        del model
        torch.stack(list(losses.values())).sum().backward()
        return {}
