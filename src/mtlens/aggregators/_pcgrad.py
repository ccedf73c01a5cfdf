"""PCGrad: projecting conflicting gradients (Yu et al. 2020).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import numpy as np
import torch

from mtlens.aggregators._aggregator import GramianAggregator, RandomAggregator


class PCGrad(RandomAggregator, GramianAggregator):
    r"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning", Alg. 1).

    For each task ``i``: ``g_i^PC = g_i``; for ``j != i`` in random order, if
    ``g_i^PC . g_j < 0`` then ``g_i^PC -= (g_i^PC . g_j / ||g_j||^2) g_j``.  Update
    ``sum_i g_i^PC``.  No hyperparameters.  Computed in Gram space: ``g_i^PC = sum_k C_ik g_k``
    so ``g_i^PC . g_j = (C M)_ij``; the weights are ``1^T C``.  Without conflicts (all
    ``M_ij >= 0``) it equals the sum.  Zero gradients never conflict.  For each ``i`` the
    order is ``torch.randperm(K, generator)`` with ``i`` skipped (the convention of torchjd,
    so both agree for equal seeds).  The order is drawn by task index, so reordering the
    tasks changes which order a task gets (not permutation-invariant for a given generator).
    """

    permutation_invariant = False

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        k = gram.shape[0]
        total = np.zeros(k)
        for i in range(k):
            row = np.zeros(k)
            row[i] = 1.0
            for j in torch.randperm(k, generator=self.generator).tolist():
                if j == i:
                    continue
                inner = row @ gram[:, j]
                if inner < 0.0:
                    row[j] -= inner / gram[j, j]
            total += row
        return total
