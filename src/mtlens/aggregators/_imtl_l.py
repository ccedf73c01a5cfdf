"""IMTL-L: loss balance (Liu et al. 2021).

The formula, defaults and cost are the class docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlens.aggregators._weighting import (
    LearnedObjective,
)


class IMTLL(LearnedObjective):
    r"""IMTL-L (Liu et al., ICLR 2021, "Towards Impartial Multi-task Learning", loss
    balance): objective ``sum_k exp(s_k) L_k - s_k`` with learned ``s_k`` (start 0), whose
    optimum makes every scaled loss ``exp(s_k) L_k`` equal to 1; loss weights ``exp(s_k)``.
    ``lr``: Adam learning rate of ``s`` (default 1e-3).
    """

    def objective(self, params: Tensor, values: Tensor) -> Tensor:
        return (torch.exp(params) * values - params).sum()

    def loss_weights(self, params: Tensor) -> Tensor:
        return torch.exp(params)
