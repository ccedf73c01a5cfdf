"""MGDA: the minimum-norm point of the gradients' convex hull (Désidéri 2012; Sener & Koltun 2018).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mtlens.aggregators._aggregator import GramianAggregator
from mtlens.aggregators.solvers import min_norm_weights
from mtlens.registry import validate_options


class MGDA(GramianAggregator):
    r"""MGDA (Désidéri 2012; Sener & Koltun, NeurIPS 2018, "Multi-Task Learning as
    Multi-Objective Optimization"): the minimum-norm point of the convex hull of the
    gradients, ``w = argmin_{w in simplex} ||G^T w||^2``, update ``G^T w``.

    Solved exactly (NNLS reformulation, :func:`~mtlens.aggregators.solvers.min_norm_weights`)
    rather than by the paper's Frank-Wolfe iterations.  ``normalization``: ``"none"``
    (default, the algorithm as stated) or ``"l2"`` (rows scaled to unit norm first, one of
    the options of the authors' code; the update is then a combination of unit gradients).
    The update is zero whenever 0 is in the hull (a zero gradient, or opposite gradients):
    the point is Pareto-stationary.  The update ``d`` never conflicts: ``g_k . d >= ||d||^2``
    for every task (optimality of the projection of 0 onto the hull).  With ``"l2"`` it is
    unchanged when a task's gradient is scaled (and so of scale degree 0).
    """

    @validate_options
    def __init__(self, normalization: Literal["none", "l2"] = "none"):
        self.normalization = normalization
        self.task_scale_invariant = normalization == "l2"
        self.scale_degree = 0 if normalization == "l2" else 1

    def conflict_bound(self, gram: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        return np.zeros(gram.shape[0])

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        if self.normalization == "none":
            return min_norm_weights(gram)
        norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return min_norm_weights(gram * np.outer(scale, scale)) * scale
