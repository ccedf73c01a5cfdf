"""Uncertainty weighting (Kendall, Gal & Cipolla 2018).

The formula, defaults and cost are the class docstring.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mtlens.aggregators._weighting import (
    LearnedObjective,
)


class UncertaintyWeighting(LearnedObjective):
    r"""Uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018, "Multi-Task Learning
    Using Uncertainty to Weigh Losses for Scene Geometry and Semantics").

    Objective ``sum_k exp(-s_k) L_k / 2 + s_k / 2`` with learned ``s_k = log sigma_k^2``
    (start 0), i.e. the Gaussian-likelihood form for every task (as LibMTL); loss
    weights ``exp(-s_k) / 2``.  ``lr``: Adam learning rate of ``s`` (default 1e-3).
    """

    def objective(self, params: Tensor, values: Tensor) -> Tensor:
        return (0.5 * torch.exp(-params) * values + 0.5 * params).sum()

    def loss_weights(self, params: Tensor) -> Tensor:
        return 0.5 * torch.exp(-params)
