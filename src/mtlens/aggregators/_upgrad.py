"""UPGrad: the mean projection onto the dual cone (Quinton & Rey 2024).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import numpy as np
from pydantic import NonNegativeFloat

from mtlens.aggregators._aggregator import GramianAggregator
from mtlens.aggregators.solvers import dual_cone_weights
from mtlens.registry import validate_options


class UPGrad(GramianAggregator):
    r"""UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization"):
    the mean of the projections of every ``g_k`` onto the dual cone ``{x : G x >= 0}``,
    ``(1/K) sum_k pi(g_k)``, so the update has a non-negative inner product with every
    task gradient.

    Projection weights: ``v_k = argmin_{v >= e_k / K} v^T M' v`` (Prop. 1), solved exactly by
    NNLS (:func:`~mtlens.aggregators.solvers.dual_cone_weights`); weights ``w = sum_k v_k``.
    As in torchjd (the reference implementation) the Gram matrix is normalised and
    regularised, ``M' = M / tr(M) + reg_eps I``, which makes the weights independent of the
    gradients' scale.  Guarantee (from the KKT conditions ``M' v_k >= 0``): every task gets
    ``g_j . update >= -reg_eps w_j tr(M)`` — no conflict with ``reg_eps = 0`` (the exact
    projection), a conflict of at most ``reg_eps w_j`` in units of ``tr(M)`` with the
    default ``reg_eps = 1e-4`` (torchjd's).  ``norm_eps``: torchjd's absolute threshold
    (there ``1e-4``) below which ``tr(M)`` is treated as 0 and ``M' = reg_eps I``, which
    turns UPGrad into the plain mean — conflicting, and not scale-equivariant — for
    gradients with ``sum_k ||g_k||^2 < norm_eps``, i.e. late in training; the default 0
    applies the normalisation whenever ``tr(M) > 0`` (all-zero gradients give a zero update).
    """

    @validate_options
    def __init__(self, norm_eps: NonNegativeFloat = 0.0, reg_eps: NonNegativeFloat = 1e-4):
        self.norm_eps, self.reg_eps = norm_eps, reg_eps

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        k = gram.shape[0]
        trace = np.trace(gram)
        normalized = gram / trace if trace >= self.norm_eps and trace > 0 else np.zeros_like(gram)
        regularized = normalized + self.reg_eps * np.eye(k)
        weights = np.zeros(k)
        for i in range(k):
            weights = weights + dual_cone_weights(regularized, np.eye(k)[i] / k)
        return weights

    def conflict_bound(self, gram: np.ndarray, weights: np.ndarray | None) -> np.ndarray | None:
        if np.trace(gram) < self.norm_eps:
            return None  # below norm_eps UPGrad is the mean, which may conflict
        assert weights is not None
        return -self.reg_eps * np.trace(gram) * weights
