"""CAGrad: conflict-averse gradient descent (Liu et al. 2021).

The formula, defaults and degenerate cases are the class docstring.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import NonNegativeFloat

from mtlens.aggregators._aggregator import GramianAggregator
from mtlens.aggregators.solvers import cagrad_dual_weights
from mtlens.registry import validate_options


class CAGrad(GramianAggregator):
    r"""CAGrad (Liu et al., NeurIPS 2021, "Conflict-Averse Gradient Descent for Multi-task
    Learning", Alg. 1).

    ``d = argmax_d min_k g_k . d  s.t.  ||d - g_0|| <= c ||g_0||`` with ``g_0`` the mean
    gradient, via the dual ``w = argmin_{w in simplex} g_w . g_0 + c ||g_0|| ||g_w||``
    (``g_w = G^T w``): ``d = g_0 + (c ||g_0|| / ||g_w||) g_w``, then divided by
    ``1 + c^2`` (``rescale = 1``, the authors' default), ``1 + c`` (``rescale = 2``) or
    not (``rescale = 0``, torchjd's CAGrad).  ``c = 0.5`` (the authors' default); ``c = 0``
    gives the mean.  If ``g_w`` vanishes (0 in the hull) the update is ``g_0`` rescaled.
    The dual is solved on ``M / tr M`` (so the update is scale-equivariant) and certified by
    its duality gap (:func:`~mtlens.aggregators.solvers.cagrad_dual_weights`, which raises
    :class:`~mtlens.aggregators.solvers.SolverError` rather than return an uncertified
    update).
    """

    @validate_options
    def __init__(self, c: NonNegativeFloat = 0.5, rescale: Literal[0, 1, 2] = 1):
        self.c, self.rescale = c, rescale

    def weights(self, gram: np.ndarray, eps: float) -> np.ndarray:
        k = gram.shape[0]
        weights = np.full(k, 1.0 / k)
        mean_norm = math.sqrt(max(weights @ gram @ weights, 0.0))
        if self.c > 0 and mean_norm > 0:
            dual = cagrad_dual_weights(gram, self.c)
            dual_norm = math.sqrt(max(dual @ gram @ dual, 0.0))
            if dual_norm > 1e-12 * mean_norm:
                weights = weights + (self.c * mean_norm / dual_norm) * dual
        return weights / {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
